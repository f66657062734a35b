"""The method registry and :func:`attribute`, the one entry point for every method."""

from __future__ import annotations

from ..errors import MethodError
from .cam import cam, cam_impl, grad_cam, grad_cam_impl, guided_grad_cam, guided_grad_cam_impl
from .core import SaliencyMaps, check_options
from .gradients import (deconvnet, deconvnet_impl, gradient, gradient_impl, gradient_x_input,
                        gradient_x_input_impl, guided_backprop, guided_backprop_impl)
from .integrated import integrated_gradients, integrated_gradients_impl
from .occlusion import occlusion, occlusion_impl
from .smooth import smoothgrad, smoothgrad_impl, vargrad, vargrad_impl

#: method name -> public function ``fn(model, x, targets=None, top_k=5, *, return_attributions=False,
#: max_batch=None, **options) -> SaliencyMaps``.
METHODS = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "vargrad": vargrad,
    "integrated_gradients": integrated_gradients,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "cam": cam,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "occlusion": occlusion,
}

#: method name -> implementation ``impl(net, x, targets, top_k, need_attr, max_batch, **options)``
#: working on a validated input inside the model guard (used by SmoothGrad for its base).
IMPLS = {
    "gradient": gradient_impl,
    "gradient_x_input": gradient_x_input_impl,
    "smoothgrad": smoothgrad_impl,
    "vargrad": vargrad_impl,
    "integrated_gradients": integrated_gradients_impl,
    "guided_backprop": guided_backprop_impl,
    "deconvnet": deconvnet_impl,
    "cam": cam_impl,
    "grad_cam": grad_cam_impl,
    "guided_grad_cam": guided_grad_cam_impl,
    "occlusion": occlusion_impl,
}


def attribute(model, x, targets=None, method: str = "gradient", top_k: int = 5, *,
              return_attributions: bool = False, max_batch: int | None = None, **options) -> SaliencyMaps:
    """Saliency maps of a batch of images for K target classes each.

    Args:
        model: a :class:`wsloc.models.Classifier` or an ``nn.Module`` returning logits
            ``[N, Cl]``. It is left exactly as it was (eval mode is used during the call and
            the previous mode restored; no hooks, flags or gradients are left behind, also
            when an error is raised).
        x: float ``[N, C, H, W]`` preprocessed images (moved to the model's device).
        targets: None (the ``top_k`` classes of the method's own forward pass, best
            first), an int (one class for all), or int ``[N]`` / ``[N, K]``.
        method: one of :data:`METHODS`.
        top_k: K when ``targets`` is None.
        return_attributions: also return the signed attribution ``[N, K, C, H, W]``
            (methods that have one).
        max_batch: most images through the network at once (memory cap; None: 16 on the
            CPU, 64 on an accelerator). The
            result does not depend on it.
        options: the method's options (e.g. ``n_samples``, ``sigma``, ``base``, ``seed``,
            ``baseline``, ``steps``, ``rule``, ``layer``, ``patch``, ``stride``, ``fill``,
            ``reduce``, ``engine``); unknown ones raise MethodError.

    Returns:
        :class:`SaliencyMaps` with maps float32 ``[N, K, H, W]`` on the model's device.
    """
    if method not in METHODS:
        raise MethodError(f"unknown saliency method {method!r}; known: {', '.join(METHODS)}")
    fn = METHODS[method]
    check_options(method, fn, options)  # smoothgrad / vargrad check the base's options themselves
    return fn(model, x, targets, top_k, return_attributions=return_attributions, max_batch=max_batch, **options)
