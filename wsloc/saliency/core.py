"""What every saliency method shares: the result type, the model, the input, the targets,
the channel reductions, map upsampling, batching of rows, and leaving the model exactly as it was.

Shapes: ``N`` images, ``K`` target classes per image, ``C`` input channels (3),
``H x W`` the network input size, ``Cl`` the number of classes.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodError

#: Images that go through the network at once when ``max_batch`` is None, on an accelerator.
#: Forward passes of the expanded methods (IG steps, SmoothGrad samples, occlusion windows)
#: and the batched backward passes (images x classes) are cut to this size.
DEFAULT_MAX_BATCH = 64

#: The same on the CPU, where large batches spill out of the caches: on Lite0 (2 threads,
#: 8 images) SmoothGrad with 10 samples took 3.6 s in chunks of 16 and 12.2 s in chunks of 64,
#: integrated gradients with 16 steps 4.0 s and 18.9 s, and 5 gradient maps per image
#: 1.6 s and 1.8 s (1 thread).
CPU_MAX_BATCH = 16

#: Input pixels per network call of the forward-only maps on a CPU (four 224 px images, one
#: 448 px image): Lite0 is memory-bound there, and on one thread a 448 px image takes 85 ms
#: alone against 122 ms per image in a batch of 8 (BN folded, BENCHMARKS.md "Speed at the
#: machine's limit"); 224 px images run fastest four at a time.
CPU_FORWARD_PIXELS = 4 * 224 * 224


def images_per_call(max_pixels: int | None, size) -> int | None:
    """Images of ``size`` ``(h, w)`` per network call under a budget of ``max_pixels`` input
    pixels (at least 1), or None without a budget."""
    if max_pixels is None:
        return None
    return max(1, int(max_pixels) // (int(size[-2]) * int(size[-1])))


@dataclass
class SaliencyMaps:
    """Saliency of a batch of images for K target classes each.

    Attributes:
        maps: float32 ``[N, K, H, W]`` on the model's device: one map per image and target
            (pixel methods: the attribution reduced over colour channels; CAM methods: the
            class activation map upsampled bilinearly to ``H x W``).
        targets: int64 ``[N, K]``: the class of every map.
        scores: float32 ``[N, K]``: the targets' logits (pre-softmax) for the unperturbed input.
        logits: ``[N, Cl]`` logits of the unperturbed input, or None.
        attributions: float32 ``[N, K, C, H, W]`` raw signed attribution (before the channel
            reduction) when asked for with ``return_attributions=True`` and the method has
            one (not for cam / grad_cam), else None.
        method: name of the method that made the maps.
    """

    maps: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    logits: torch.Tensor | None = None
    attributions: torch.Tensor | None = None
    method: str = ""

    def __len__(self) -> int:
        return self.maps.shape[0]

    def cpu(self) -> "SaliencyMaps":
        """A copy with every tensor on the CPU (detached)."""
        def move(t):
            return None if t is None else t.detach().cpu()
        return SaliencyMaps(move(self.maps), move(self.targets), move(self.scores), move(self.logits),
                            move(self.attributions), self.method)


@dataclass
class Net:
    """The network a method runs on, with what the CAM methods need to know about it.

    Attributes:
        module: ``[N, C, H, W] -> [N, Cl]`` logits.
        device: where its parameters live (inputs are moved there).
        last_conv: qualified name of the module giving the last spatial feature map, or None.
        fc: name of the final ``nn.Linear`` of a GAP + linear model, or None.
        described: whether ``last_conv``/``fc`` are known (a Classifier says; a plain
            module is described on demand, see :func:`describe`).
        tokens: ``(prefix, grid_h, grid_w)`` of a vision transformer's token layers (see
            :attr:`wsloc.models.Classifier.tokens`), or None.
    """

    module: nn.Module
    device: torch.device
    last_conv: str | None = None
    fc: str | None = None
    described: bool = False
    tokens: tuple[int, int, int] | None = None


def as_net(model) -> Net:
    """A :class:`wsloc.models.Classifier` or an ``nn.Module`` -> :class:`Net`."""
    from ..models import Classifier

    if isinstance(model, Net):
        return model
    if isinstance(model, Classifier):
        return Net(model.model, _device_of(model.model, model.device), model.last_conv, model.fc, True,
                   getattr(model, "tokens", None))
    if isinstance(model, nn.Module):
        return Net(model, _device_of(model, None))
    raise MethodError(f"model must be a wsloc Classifier or a torch nn.Module, got {type(model).__name__}")


def _device_of(module: nn.Module, default) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device(default) if default is not None else torch.device("cpu")


_DESCRIBED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def describe(net: Net, size: tuple[int, int]) -> Net:
    """Fill ``last_conv`` and ``fc`` of a plain module (one probe forward pass, cached per size)."""
    if net.described:
        return net
    from ..models import layer_info

    cache = _DESCRIBED.setdefault(net.module, {})
    if size not in cache:
        with preserve_model(net.module):
            info = layer_info(net.module, size)
        cache[size] = (info.last_conv, info.fc, info.tokens)
    net.last_conv, net.fc, net.tokens = cache[size]
    net.described = True
    return net


def check_input(x, net: Net) -> torch.Tensor:
    """Validate the image batch and move it to the model's device: float ``[N, C, H, W]``."""
    if not isinstance(x, torch.Tensor):
        raise MethodError(f"x must be a torch.Tensor [N, 3, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise MethodError(f"x must be a batch of images [N, 3, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise MethodError(f"x must be a float tensor (preprocessed images), got {x.dtype}")
    if x.shape[0] == 0:
        raise MethodError("x is an empty batch (N = 0)")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise MethodError(f"x holds empty images ({x.shape[2]}x{x.shape[3]} pixels)")
    return x.detach().to(net.device)


def resolve_targets(targets, logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Target classes ``[N, K]`` int64 on ``logits``' device.

    Args:
        targets: None (the ``top_k`` classes of ``logits``, best first), an int (the same class
            for every image), or an int tensor/sequence ``[N]`` (one class each) or ``[N, K]``.
        logits: ``[N, Cl]`` logits of the unperturbed input.
        top_k: K when ``targets`` is None (capped at Cl).
    """
    n, classes = logits.shape
    if targets is None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise MethodError(f"top_k must be a positive int, got {top_k!r}")
        return logits.detach().topk(min(top_k, classes), dim=1).indices
    t = parse_targets(targets, n)
    bad = (t < 0) | (t >= classes)
    if bool(bad.any()):
        raise MethodError(f"targets must be class indices in [0, {classes}), got {t[bad][0].item()}")
    return t.to(logits.device)


def parse_targets(targets, n: int) -> torch.Tensor:
    """Given targets -> int64 ``[N, K]`` (on their own device; range not checked)."""
    try:
        t = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MethodError(f"targets must be None, an int, or int indices [N] or [N, K]: {exc}") from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise MethodError(f"targets must be integer class indices, got {t.dtype}")
    t = t.long()
    if t.ndim == 0:
        return t.expand(n, 1).clone()
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != n or t.shape[1] < 1:
        raise MethodError(f"targets must be an int, [N] or [N, K] with N={n} images, got shape {tuple(t.shape)}")
    return t


def batch_limit(max_batch, device: torch.device | str | None = None) -> int:
    """``max_batch`` validated; None -> :data:`CPU_MAX_BATCH` on the CPU (or when ``device``
    is None), :data:`DEFAULT_MAX_BATCH` on other devices."""
    if max_batch is None:
        return CPU_MAX_BATCH if device is None or torch.device(device).type == "cpu" else DEFAULT_MAX_BATCH
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise MethodError(f"max_batch must be a positive int or None, got {max_batch!r}")
    return max_batch


def forward_logits(net: Net, x: torch.Tensor, max_batch: int | None = None) -> torch.Tensor:
    """Logits ``[N, Cl]`` of a batch, ``max_batch`` images at a time, without autograd."""
    limit = batch_limit(max_batch)
    with torch.no_grad():
        outs = [net.module(x[i:i + limit]) for i in range(0, x.shape[0], limit)]
    out = torch.cat(outs) if outs else None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise MethodError("the model must return logits [N, classes]")
    return out


REDUCTIONS = ("max_abs", "sum_abs", "abs_sum", "sum", "mean", "l2")


def reduce_channels(attr: torch.Tensor, how: str = "max_abs") -> torch.Tensor:
    """Attribution ``[..., C, H, W]`` -> map ``[..., H, W]`` float32.

    ``max_abs``: max over channels of the absolute value (Simonyan et al. 2014);
    ``sum_abs``: sum of absolute values; ``abs_sum``: absolute value of the sum; ``sum``,
    ``mean``: signed; ``l2``: Euclidean norm over channels.
    """
    if how == "max_abs":
        out = attr.abs().amax(dim=-3)
    elif how == "sum_abs":
        out = attr.abs().sum(dim=-3)
    elif how == "abs_sum":
        out = attr.sum(dim=-3).abs()
    elif how == "sum":
        out = attr.sum(dim=-3)
    elif how == "mean":
        out = attr.mean(dim=-3)
    elif how == "l2":
        out = attr.square().sum(dim=-3).sqrt()
    else:
        raise MethodError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {how!r}")
    return out.float()


def upsample_maps(maps: torch.Tensor, size) -> torch.Tensor:
    """Maps ``[N, K, h, w]`` -> float32 ``[N, K, H, W]`` with ``size = (H, W)``: bilinear,
    ``align_corners=False``; returned as they are (cast to float32) when already that size."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def check_reduce(how: str) -> str:
    if how not in REDUCTIONS:
        raise MethodError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {how!r}")
    return how


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
               "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


@contextlib.contextmanager
def preserve_model(module: nn.Module, eval_mode: bool = True) -> Iterator[None]:
    """Run a block on ``module`` and leave it exactly as it was, also on an exception.

    Puts every submodule in eval mode for the block when ``eval_mode`` (saliency of the
    deterministic network; BatchNorm statistics are not updated), and restores afterwards:
    each submodule's ``training`` flag and hook dictionaries, each parameter's and buffer's
    ``requires_grad`` and each parameter's ``.grad``.
    """
    modules = list(module.modules())
    training = [m.training for m in modules]
    hooks = [(d, dict(d)) for m in modules for d in (getattr(m, a, None) for a in _HOOK_DICTS)
             if isinstance(d, dict)]
    tensors = list(module.parameters()) + [b for b in module.buffers() if b is not None]
    flags = [t.requires_grad for t in tensors]
    grads = [t.grad for t in tensors]
    try:
        if eval_mode:
            for m in modules:
                m.training = False
        yield
    finally:
        for m, was in zip(modules, training):
            m.training = was
        for d, saved in hooks:
            if d.keys() != saved.keys():
                d.clear()
                d.update(saved)
        for t, flag, g in zip(tensors, flags, grads):
            if t.requires_grad != flag:
                t.requires_grad_(flag)
            if t.grad is not g:
                t.grad = g


def row_batches(pieces, limit: int):
    """Group rows into batches of at most ``limit`` rows.

    Args:
        pieces: iterable of tuples of tensors sharing their leading dimension (e.g. the image
            index ``[m]`` and the network inputs ``[m, C, H, W]`` of m rows).
        limit: most rows per batch.

    Yields:
        tuples like the pieces', concatenated and split so that each holds at most ``limit``
        rows, in the given order.
    """
    buf: list[tuple] = []
    count = 0
    for piece in pieces:
        m, start = len(piece[0]), 0
        while start < m:
            take = min(limit - count, m - start)
            buf.append(tuple(t[start:start + take] for t in piece))
            count += take
            start += take
            if count == limit:
                yield tuple(torch.cat(ts) for ts in zip(*buf))
                buf, count = [], 0
    if count:
        yield tuple(torch.cat(ts) for ts in zip(*buf))


def check_options(name: str, fn, options: dict, extra: tuple[str, ...] = ()) -> None:
    """MethodError naming the option when ``options`` has a keyword ``fn`` does not take."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for key in options:
        if key not in params and key not in extra:
            allowed = sorted(k for k, p in params.items() if p.kind == p.KEYWORD_ONLY) + list(extra)
            raise MethodError(f"{name}: unknown option {key!r}; options: {', '.join(allowed)}")
