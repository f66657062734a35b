"""Saliency maps of an image classifier: the whole gradient / CAM / occlusion family, batched.

One calling convention for every method (see :func:`attribute`)::

    maps = attribute(classifier, x, method="gradient", top_k=5)   # SaliencyMaps
    maps.maps          # float32 [N, K, H, W]
    maps.targets       # int64 [N, K], the top-5 classes of the method's own forward pass

All K target classes of an image share one forward pass; their backward passes are
batched (see :mod:`.tape` and :mod:`.gradients`).

Adding a method takes one file: write its hook and register it (:mod:`.methods`)::

    from wsloc.saliency import SaliencyMaps, forward_logits, register, resolve_targets

    @register("constant")
    def constant(net, x, targets, top_k, need_attr, max_batch, *, value=1.0):
        '''Every pixel gets ``value``: maps float32 [N, K, H, W].'''
        logits = forward_logits(net, x, max_batch)
        t = resolve_targets(targets, logits, top_k)
        maps = x.new_full((x.shape[0], t.shape[1], *x.shape[-2:]), value).float()
        return SaliencyMaps(maps=maps, targets=t, scores=logits.gather(1, t).float(), logits=logits)

Importing that file makes ``attribute(..., method="constant")``, ``LocalizerConfig().with_(**{"saliency.method": "constant"})``
and ``wsloc localize --method constant`` work; ``constant(model, x, top_k=3, value=2.0)`` is its
public function. A method built on another takes it as an option (``smoothgrad(base="grad_cam")``).
"""

# The method modules register their methods on import, in this order (that of METHODS).
from .gradients import ENGINES, deconvnet, gradient, gradient_x_input, guided_backprop, input_gradients  # isort: skip
from .integrated import IG_RULES, integrated_gradients, quadrature  # isort: skip
from .smooth import smoothgrad, vargrad  # isort: skip
from .cam import cam, grad_cam, guided_grad_cam  # isort: skip
from .layercam import layer_cam  # isort: skip
from .occlusion import occlusion  # isort: skip
from .core import (DEFAULT_MAX_BATCH, REDUCTIONS, SaliencyMaps, forward_logits, preserve_model,  # isort: skip
                   reduce_channels, resolve_targets, upsample_maps)
from .methods import METHODS, Method, attribute, get_method, register, unregister  # isort: skip
from .multiscale import multiscale  # isort: skip

__all__ = ["DEFAULT_MAX_BATCH", "ENGINES", "IG_RULES", "METHODS", "REDUCTIONS", "Method", "SaliencyMaps",
           "attribute", "cam", "deconvnet", "forward_logits", "get_method", "grad_cam", "gradient", "gradient_x_input",
           "guided_backprop", "guided_grad_cam", "input_gradients", "integrated_gradients", "layer_cam", "multiscale",
           "occlusion", "preserve_model", "quadrature", "reduce_channels", "register",
           "resolve_targets", "smoothgrad", "unregister", "upsample_maps", "vargrad"]
