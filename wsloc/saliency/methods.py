"""The method protocol: one registry of saliency methods, and :func:`attribute`, the one entry point.

A method is one function, its *hook*, registered under a name with :func:`register`::

    @register("gradient")
    def gradient(net, x, targets, top_k, need_attr, max_batch, *, reduce="max_abs", engine="auto"):
        '''Docstring of the public function.'''
        ...
        return SaliencyMaps(...)

The hook works on a validated input inside the model guard; its keyword-only parameters are the
method's options (with their defaults). The decorator returns a :class:`Method`, which is the
public function ``gradient(model, x, targets=None, top_k=5, *, return_attributions=False,
max_batch=None, reduce="max_abs", engine="auto")``: it validates the model and the input, guards
the model (:func:`.core.preserve_model`) and calls the hook. :data:`METHODS` holds every
registered method, by name; :func:`attribute` and ``wsloc localize --method`` read it.

Hook arguments:
    net: :class:`.core.Net` in eval mode (``net.module`` maps ``[N, C, H, W]`` to logits ``[N, Cl]``).
    x: float ``[N, C, H, W]`` on ``net.device``, detached.
    targets: None (the ``top_k`` classes of the method's own forward pass), an int, or int
        ``[N]`` / ``[N, K]`` (resolve with :func:`.core.resolve_targets`).
    top_k: K when ``targets`` is None.
    need_attr: whether the caller asked for the signed attribution ``[N, K, C, H, W]``.
    max_batch: most rows through the network at once (an int, already resolved).

A method built on another one (SmoothGrad's ``base``, Guided Grad-CAM's ``base`` and ``cam``)
takes the other's name or :class:`Method` as an option and calls its :attr:`Method.compute`
(see :func:`get_method`); it never imports the other's module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ..errors import MethodError
from .core import SaliencyMaps, as_net, batch_limit, check_input, check_options, preserve_model

#: The hook's leading positional parameters, in order (its options follow as keyword-only ones).
HOOK_ARGS = ("net", "x", "targets", "top_k", "need_attr", "max_batch")

_PUBLIC_ARGS = (
    inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("targets", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
    inspect.Parameter("top_k", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=5),
    inspect.Parameter("return_attributions", inspect.Parameter.KEYWORD_ONLY, default=False),
    inspect.Parameter("max_batch", inspect.Parameter.KEYWORD_ONLY, default=None),
)


class Method:
    """A registered saliency method: its name, its hook, and the public function that calls it.

    Attributes:
        name: the name in :data:`METHODS` (and ``SaliencyMaps.method``).
        compute: the hook ``compute(net, x, targets, top_k, need_attr, max_batch, **options)
            -> SaliencyMaps`` (see the module docstring).
        expands: the method sends several network inputs per image (integrated gradients'
            steps, occlusion's windows): a method wrapping it feeds it an image batch at a time.
    """

    def __init__(self, name: str, compute: Callable[..., SaliencyMaps], expands: bool = False):
        params = list(inspect.signature(compute).parameters.values())
        if tuple(p.name for p in params[:len(HOOK_ARGS)]) != HOOK_ARGS or any(
                p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[len(HOOK_ARGS):]):
            raise MethodError(f"register({name!r}): the hook must be ({', '.join(HOOK_ARGS)}, *, options...), "
                              f"got {compute.__name__}{inspect.signature(compute)}")
        self.name = name
        self.compute = compute
        self.expands = bool(expands)
        self.__name__ = self.__qualname__ = compute.__name__
        self.__module__ = compute.__module__
        self.__doc__ = compute.__doc__
        self.__signature__ = inspect.Signature(list(_PUBLIC_ARGS) + params[len(HOOK_ARGS):],
                                               return_annotation=SaliencyMaps)

    def __repr__(self) -> str:
        return f"<saliency method {self.name!r}>"

    def options(self) -> dict:
        """The method's options: name -> default (``inspect.Parameter.empty`` if none), in order."""
        params = list(inspect.signature(self.compute).parameters.values())[len(HOOK_ARGS):]
        return {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}

    def check_options(self, options: dict, label: str | None = None) -> None:
        """MethodError naming the first keyword of ``options`` that the method does not take."""
        check_options(label or self.name, self.compute, options)

    def __call__(self, model, x, targets=None, top_k=5, *, return_attributions=False, max_batch=None,
                 **options) -> SaliencyMaps:
        self.check_options(options)
        net = as_net(model)
        x = check_input(x, net)
        max_batch = batch_limit(max_batch, x.device)
        with preserve_model(net.module):
            return self.compute(net, x, targets, top_k, bool(return_attributions), max_batch, **options)


#: name -> :class:`Method`, in registration order. Each value is the public function of the method
#: (``fn(model, x, targets=None, top_k=5, *, return_attributions=False, max_batch=None, **options)
#: -> SaliencyMaps``).
METHODS: dict[str, Method] = {}


def register(name: str, *, expands: bool = False) -> Callable[[Callable[..., SaliencyMaps]], Method]:
    """Decorator: register a hook as the method ``name``; returns its :class:`Method`.

    ``expands``: see :attr:`Method.expands`. MethodError if ``name`` is taken (see :func:`unregister`).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise MethodError(f"register: a method name must be an identifier, got {name!r}")
    if name in METHODS:
        raise MethodError(f"register: a saliency method named {name!r} exists already")

    def decorate(compute: Callable[..., SaliencyMaps]) -> Method:
        method = Method(name, compute, expands)
        METHODS[name] = method
        return method
    return decorate


def unregister(name: str) -> None:
    """Remove the method ``name`` from :data:`METHODS` (nothing happens if there is none)."""
    METHODS.pop(name, None)


def get_method(method: str | Method, what: str = "method") -> Method:
    """The :class:`Method` of a name (or the method itself); MethodError naming the known ones."""
    if isinstance(method, Method):
        return method
    if isinstance(method, str) and method in METHODS:
        return METHODS[method]
    raise MethodError(f"unknown saliency {what} {method!r}; known: {', '.join(METHODS)}")


def attribute(model, x, targets=None, method: str | Method = "gradient", top_k: int = 5, *,
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
        method: a name in :data:`METHODS` (or a :class:`Method`).
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
    fn = get_method(method)
    return fn(model, x, targets, top_k, return_attributions=return_attributions, max_batch=max_batch, **options)
