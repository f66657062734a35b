"""Saliency maps of an image classifier: the whole gradient / CAM / occlusion family, batched.

One calling convention for every method (see :func:`attribute`)::

    maps = attribute(classifier, x, method="gradient", top_k=5)   # SaliencyMaps
    maps.maps          # float32 [N, K, H, W]
    maps.targets       # int64 [N, K], the top-5 classes of the method's own forward pass

All K target classes of an image share one forward pass; their backward passes are
batched (see :mod:`.tape` and :mod:`.gradients`).
"""

from .cam import cam, grad_cam, guided_grad_cam
from .core import DEFAULT_MAX_BATCH, REDUCTIONS, SaliencyMaps, preserve_model, reduce_channels
from .gradients import ENGINES, deconvnet, gradient, gradient_x_input, guided_backprop, input_gradients
from .integrated import IG_RULES, integrated_gradients, quadrature
from .methods import METHODS, attribute
from .multiscale import multiscale, normalise_maps
from .occlusion import occlusion
from .smooth import smoothgrad, vargrad

__all__ = ["DEFAULT_MAX_BATCH", "ENGINES", "IG_RULES", "METHODS", "REDUCTIONS", "SaliencyMaps", "attribute",
           "cam", "deconvnet", "grad_cam", "gradient", "gradient_x_input", "guided_backprop", "guided_grad_cam",
           "input_gradients", "integrated_gradients", "multiscale", "normalise_maps", "occlusion", "preserve_model", "quadrature",
           "reduce_channels", "smoothgrad", "vargrad"]
