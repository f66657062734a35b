"""Loading a classifier and recording what the later stages need to know about it."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ModelError
from .efficientnet_lite import LITE_MEAN, LITE_PACKAGES, LITE_STD, efficientnet_lite, lite_from_file
from .ensemble import lite_ensemble
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .weights import hub_cache_path, load_state_dict, safe_torchvision_weights

_POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)


@dataclass
class Classifier:
    """A classifier in eval mode with its preprocessing and the facts later stages need.

    Attributes:
        model: ``nn.Module`` mapping ``[N, 3, H, W]`` float32 -> ``[N, num_classes]`` logits (pre-softmax).
        preprocess: uint8 RGB image -> normalised input tensor.
        name: a label for reports.
        device: where ``model`` lives.
        input_size: (height, width) of the input.
        num_classes: number of logits.
        last_conv: qualified name of the module whose output is the last spatial feature
            map (the default Grad-CAM layer), or None if the model has none.
        fc: name of the final ``nn.Linear`` when the model ends in global average pooling
            followed by that layer alone (CAM applies), else None.
        gap_linear: ``fc is not None``.
        class_names: names of the classes (ImageNet's 1000 short names for ImageNet models).
        tokens: for a vision transformer, ``(prefix, grid_h, grid_w)``: ``last_conv`` outputs
            tokens ``[N, prefix + grid_h * grid_w, C]`` (class/distillation tokens first, then
            the patches row by row), which Grad-CAM reshapes to a ``[N, C, grid_h, grid_w]``
            map; None for maps that are already ``[N, C, h, w]``.
    """

    model: nn.Module
    preprocess: Preprocess
    name: str = "model"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    input_size: tuple[int, int] = (224, 224)
    num_classes: int = 1000
    last_conv: str | None = None
    fc: str | None = None
    class_names: tuple[str, ...] | None = None
    tokens: tuple[int, int, int] | None = None
    _sizes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def gap_linear(self) -> bool:
        return self.fc is not None

    def accepts_size(self, size: tuple[int, int]) -> bool:
        """Whether the model runs on an input of ``size`` (H, W) other than its own: one forward pass of a
        zero image, remembered. False for models with a fixed input size (torchvision's ViT, MaxViT)."""
        size = (int(size[0]), int(size[1]))
        if size == tuple(self.input_size):
            return True
        if size not in self._sizes:
            try:
                with torch.no_grad():
                    self.model(torch.zeros(1, 3, *size, device=self.device))
                self._sizes[size] = True
            except torch.OutOfMemoryError:
                raise
            except Exception:  # AssertionError (ViT), RuntimeError (shape mismatches), ...
                self._sizes[size] = False
        return self._sizes[size]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k of a batch ``[N, 3, H, W]``: (logits ``[N, k]`` float32, classes ``[N, k]`` int64), best first."""
        logits = self.model(x.to(self.device))
        return logits.topk(min(k, logits.shape[1]), dim=1)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; anything else as given.

    Raises:
        ModelError: an unknown device string, or a CUDA device this machine does not have
            (no CUDA at all, or an index beyond the GPUs present).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ModelError(f"--device {device!r}: not a device (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"--device {device}: CUDA is not available on this machine "
                             f"(no GPU or no CUDA build of torch); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), numbered from 0")
    return dev


#: Class / distillation / register tokens a vision transformer may put before its patch tokens.
MAX_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class LayerInfo:
    """What :func:`layer_info` finds out about a model (see :class:`Classifier` for the fields)."""

    last_conv: str | None
    fc: str | None
    num_classes: int
    tokens: tuple[int, int, int] | None = None


def describe_layers(model: nn.Module, input_size: tuple[int, int]) -> tuple[str | None, str | None, int]:
    """(last_conv, fc, num_classes) of :func:`layer_info`."""
    info = layer_info(model, input_size)
    return info.last_conv, info.fc, info.num_classes


def layer_info(model: nn.Module, input_size: tuple[int, int]) -> LayerInfo:
    """Find the last spatial feature layer and whether the model ends in GAP + Linear.

    Runs one forward pass of a small random batch with temporary forward hooks on every
    leaf module (removed before returning) and reads the execution order:

    * ``last_conv`` is the last executed non-pooling module whose output is a 4-D map
      with more than one spatial position, lifted to the outermost enclosing module with
      the same output (ResNet's ``layer4`` rather than its reused ``layer4.1.relu``), so
      that a hook on it fires once per forward pass;
    * vision transformers: when leaf modules after that map (the patch embedding, ``h x w``)
      output tokens ``[N, p + h*w, C]`` with ``p <= MAX_PREFIX_TOKENS``, ``last_conv`` is the
      last of them whose patch tokens still reach the logits (one backward pass decides:
      in torchvision's ViT the last block's ``ln_1``, the input of the last attention; after
      it only the class token is read), and ``tokens = (p, h, w)``;
    * the model is GAP + linear when the last executed module is an ``nn.Linear`` that
      produced the model's output and whose input equals the spatial mean of that map.

    Raises:
        ModelError: the model does not return logits; the model's own exception when it fails on
            a ``[2, 3, *input_size]`` input (:func:`load_classifier` turns that into a ModelError).
    """
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor) and inputs and isinstance(inputs[0], torch.Tensor):
            calls.append((names[module], module, inputs[0].detach().clone(), output.detach().clone()))

    # Hooks fire when a module finishes, so containers come after their children.
    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *input_size, generator=gen).to(device)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ModelError(f"the model must return logits [N, classes], got {type(out).__name__}"
                         f"{'' if not isinstance(out, torch.Tensor) else ' of shape ' + str(tuple(out.shape))}")
    leaf_calls = [c for c in calls if not list(c[1].children())]
    last_conv, feature, at = None, None, -1
    for i, (name, module, _, output) in enumerate(calls):
        if (not list(module.children()) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1
                and not isinstance(module, _POOLING)):
            last_conv, feature, at = name, output, i
    for name, module, _, output in calls[at + 1:]:
        if feature is not None and output.shape == feature.shape and torch.equal(output, feature):
            last_conv = name
    fc = None
    if leaf_calls and feature is not None:
        name, module, inp, output = leaf_calls[-1]
        if (isinstance(module, nn.Linear) and output.shape == out.shape and torch.allclose(output, out)
                and inp.shape == (x.shape[0], feature.shape[1])
                and torch.allclose(inp, feature.mean(dim=(2, 3)), atol=1e-5, rtol=1e-4)):
            fc = name
    tokens = None
    if feature is not None and fc is None and leaf_calls:
        found = _token_layer(model, x, calls[at + 1:], tuple(feature.shape[2:]), leaf_calls[-1][1])
        if found is not None:
            last_conv, tokens = found
    return LayerInfo(last_conv, fc, int(out.shape[1]), tokens)


def _token_layer(model: nn.Module, x: torch.Tensor, calls: list, grid: tuple[int, int], head: nn.Module):
    """The last leaf module of ``calls`` whose output is tokens ``[N, p + h*w, C]`` on the patch ``grid`` and whose
    patch tokens the logits depend on: ``(name, (p, h, w))``, or None (see :func:`layer_info`).

    The dependence is read from the gradient of the input of ``head`` (the module computing the logits), not of
    the logits themselves: torchvision initialises ViT's head to zero, which would hide it in random models."""
    gh, gw = grid
    counts: dict = {}
    for _, module, _, _ in calls:
        counts[module] = counts.get(module, 0) + 1
    candidates = {module: name for name, module, _, output in calls
                  if not list(module.children()) and counts[module] == 1 and output.ndim == 3
                  and output.shape[0] == x.shape[0] and 0 <= output.shape[1] - gh * gw <= MAX_PREFIX_TOKENS}
    if not candidates:
        return None
    seen: dict = {}
    head_in: list = []

    def keep(module, inputs, output):
        seen[module] = output

    def keep_input(module, inputs, output):
        if inputs and isinstance(inputs[0], torch.Tensor):
            head_in.append(inputs[0])

    handles = [m.register_forward_hook(keep) for m in candidates] + [head.register_forward_hook(keep_input)]
    try:
        with torch.enable_grad():
            out = model(x.detach().clone().requires_grad_(True))
            target = head_in[-1] if head_in and head_in[-1].requires_grad else out
            # A random direction, not the sum: a LayerNorm output (ViT's encoder.ln) sums to zero.
            direction = torch.randn(target.shape, generator=torch.Generator().manual_seed(1)).to(target)
            mods = [m for m in candidates if m in seen and seen[m].requires_grad]
            grads = (torch.autograd.grad((target * direction).sum(), [seen[m] for m in mods], allow_unused=True)
                     if mods else [])
    finally:
        for h in handles:
            h.remove()
    best = None
    order = {name: i for i, (name, _, _, _) in enumerate(calls)}
    for module, g in zip(mods, grads):
        prefix = seen[module].shape[1] - gh * gw
        if g is not None and bool(g[:, prefix:].abs().amax() > 0):
            name = candidates[module]
            if best is None or order[name] > order[best[0]]:
                best = (name, (int(prefix), int(gh), int(gw)))
    return best


def _lite_model(name: str, weights) -> nn.Module:
    """EfficientNet-Lite with ``weights``: "DEFAULT" (the package file), None (random) or a state dict file."""
    if weights is None:
        return efficientnet_lite(name, pretrained=False)
    if weights in ("DEFAULT", "default", True):
        return efficientnet_lite(name)
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return lite_from_file(name, weights)
    raise ModelError(f"{name}: weights {os.fspath(weights) if isinstance(weights, os.PathLike) else weights!r} "
                     f"is not a file; {name} takes DEFAULT (the package's weights), a state dict file of the "
                     f"same architecture, or none (random)")


def _torchvision_model(name: str, weights) -> tuple[nn.Module, Preprocess]:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        known = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
        raise ModelError(f"unknown classifier {name!r}; known: efficientnet_lite0/1/2, ensembles of them joined "
                         f"by '+' (efficientnet_lite0+efficientnet_lite1), {known}") from None
    path = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights) else None
    if weights is None or path is not None:
        model = builder(weights=None)
        if path is not None:
            state = load_state_dict(path, name)  # weights_only=True: a file cannot run code
            try:
                model.load_state_dict(state)
            except Exception as exc:
                raise ModelError(f"{path}: cannot load weights for {name}: {exc}") from None
        return model, Preprocess((224, 224), IMAGENET_MEAN, IMAGENET_STD)
    try:
        enum = torchvision.models.get_model_weights(name)
        w = enum.DEFAULT if weights in ("DEFAULT", "default", True) else (
            weights if not isinstance(weights, str) else enum[weights.split(".")[-1]])
    except (KeyError, ValueError):
        raise ModelError(f"{name}: unknown weights {weights!r}; choose one of "
                         f"{[w.name for w in torchvision.models.get_model_weights(name)]}, a file, or None") from None
    try:
        with safe_torchvision_weights(type(w)):  # wsloc reads the hub file: weights_only, hash checked
            model = builder(weights=w)
    except ModelError:
        raise
    except Exception as exc:  # download failures: URLError, socket errors, HTTP errors
        cache = hub_cache_path(w.url)
        raise ModelError(f"{name}: the weights {w} are not in the local cache and could not be downloaded "
                         f"({type(exc).__name__}: {exc}). Put the file at {cache}, or pass a local state "
                         f"dict path as weights") from None
    crop = w.transforms().crop_size[0] if hasattr(w.transforms(), "crop_size") else 224
    meta_mean = getattr(w.transforms(), "mean", IMAGENET_MEAN)
    meta_std = getattr(w.transforms(), "std", IMAGENET_STD)
    return model, Preprocess((crop, crop), tuple(meta_mean), tuple(meta_std))


def load_classifier(name: str | nn.Module = "efficientnet_lite0", device: str | torch.device | None = "cpu",
                    weights="DEFAULT", preprocess: Preprocess | None = None,
                    input_size: tuple[int, int] | None = None,
                    class_names: tuple[str, ...] | None = None) -> Classifier:
    """Load a classifier in eval mode with its preprocessing.

    Args:
        name: ``"efficientnet_lite0"`` (also lite1/lite2 when their PyPI weight packages
            are installed), an ensemble of those joined by '+' (``"efficientnet_lite0+efficientnet_lite1"``:
            :class:`wsloc.models.ensemble.LiteEnsemble`, the mean of the members' logits, at the first
            member's input size), any torchvision classification model name (``"resnet50"``,
            ``"vgg16"``, ...), or an ``nn.Module`` of the user's own returning logits.
        device: "cpu", "cuda", "cuda:1", "auto" (CUDA if available) or a ``torch.device``.
        weights: for torchvision models, ``"DEFAULT"``, a weights enum or its name
            (``"IMAGENET1K_V2"``), a path to a local state dict, or ``None`` for random
            weights; for Lite and Lite ensembles, ``None`` gives random weights. Offline, a torchvision
            weights download fails with a ``ModelError`` saying where to put the file.
        preprocess: required for a user's module (how images become its input);
            overrides the default for named models.
        input_size: (height, width) of the input; defaults to the preprocessing's size.
        class_names: class names for reports; ImageNet's when the model has 1000 outputs.

    Returns:
        a :class:`Classifier` whose parameters have ``requires_grad=False`` (saliency
        needs gradients with respect to the input only). A user's module is deep-copied
        first: the caller's module keeps its training mode, ``requires_grad`` flags, device,
        memory format and hooks, and later changes to it do not reach the classifier.
    """
    dev = resolve_device(device)
    if isinstance(name, nn.Module):
        if preprocess is None:
            raise ModelError("a user's nn.Module needs preprocess=Preprocess(size, mean, std)")
        try:  # the caller's module stays as it is (mode, requires_grad, device, hooks): work on a copy
            model = copy.deepcopy(name)
        except Exception as exc:
            raise ModelError(f"{type(name).__name__}: cannot copy the module ({type(exc).__name__}: {exc}); "
                             f"wsloc works on a copy so that the caller's module is never changed") from None
        label = type(name).__name__
    elif name in LITE_PACKAGES:
        model = _lite_model(name, weights)
        size = LITE_PACKAGES[name][2]
        preprocess = preprocess or Preprocess((size, size), LITE_MEAN, LITE_STD)
        label = name
    elif isinstance(name, str) and "+" in name:
        model = lite_ensemble(name, weights)
        size = LITE_PACKAGES[model.names[0]][2]  # every member sees the first one's size
        preprocess = preprocess or Preprocess((size, size), LITE_MEAN, LITE_STD)
        label = name
    elif isinstance(name, str):
        model, default = _torchvision_model(name, weights)
        preprocess = preprocess or default
        label = name
    else:
        raise ModelError(f"classifier must be a name or an nn.Module, got {type(name).__name__}")
    if input_size is not None:
        preprocess = Preprocess(tuple(input_size), preprocess.mean, preprocess.std)
    model = model.eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        info = layer_info(model, preprocess.size)
    except (ModelError, torch.OutOfMemoryError):
        raise
    except Exception as exc:  # e.g. ViT's "Wrong image height!" assertion
        h, w = preprocess.size
        raise ModelError(f"{label} does not run on a {h}x{w} input ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); a model with a fixed input size "
                         f"(ViT) needs input_size / Preprocess of that size") from None
    if class_names is None and info.num_classes == 1000:
        from .. import imagenet

        class_names = imagenet.names()
    return Classifier(model=model, preprocess=preprocess, name=label, device=dev,
                      input_size=preprocess.size, num_classes=info.num_classes, last_conv=info.last_conv,
                      fc=info.fc, class_names=class_names, tokens=info.tokens)
