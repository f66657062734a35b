"""Input gradients of many output directions from one forward pass: a linear tape.

Most image classifiers are piecewise linear in their input: convolutions, eval-mode
BatchNorm, ReLU/ReLU6 (hardtanh), zero padding, residual additions, pooling, flattening and
a linear layer. For such a network the gradient of any logit with respect to the input is
the transpose of a linear map fixed by the forward pass (which units are active, which
pooled element won). This module records that map during one ``no_grad`` forward pass (a
``TorchFunctionMode``: the model itself is not touched; every op is executed by PyTorch
exactly as without the tape, so the logits are bit-identical) and then runs the
transposed map on a batch of ``K * N`` upstream gradients at once: one shared forward and
a single batched backward for the K target classes of N images, instead of K forward +
backward passes.

The backward is cheaper than autograd's:

* only input gradients are computed (no weight gradients, nothing saved for them);
* an eval-mode BatchNorm directly after a convolution is folded into the transposed
  convolution (``conv^T(g * s)`` computed as ``conv^T`` with the kernel scaled by ``s``);
* on the CPU the backward runs in channels-last memory format (oneDNN's transposed
  depthwise convolutions are several times faster there). The forward stays in the
  input's own format: a different format changes float rounding, which moves units across
  a ReLU6 kink and changed Lite0's gradient by up to 6e-3 (relative to its maximum) in a
  measurement.

Any op outside the supported set that touches a recorded tensor raises
:class:`TapeUnsupported`; callers fall back to autograd. Supported (on tensors derived
from the input): ``conv2d``, ``batch_norm`` (eval), ``relu``/``relu_``/``relu6``/
``hardtanh``(``_``), ``pad`` (constant), ``add``/``sub`` (tensors of the same shape, or a
constant), ``mul``/``div`` by a constant, ``neg``, ``adaptive_avg_pool2d``, ``avg_pool2d``,
``max_pool2d``, ``mean`` over non-batch dims, ``flatten``/``view``/``reshape`` keeping the
batch dimension, ``transpose``/``permute`` keeping it first, ``cat``/``chunk``/``split``
along a non-batch dim, ``linear``, eval-mode ``dropout``, ``contiguous``/``clone``.

ReLU-family units (``relu``, ``relu6``, ``hardtanh`` with lower bound 0) follow a backward
``rule``: ``"gradient"`` (the true gradient), ``"guided"`` (guided backpropagation,
Springenberg et al. 2015: positive upstream gradient through active units only) or
``"deconvnet"`` (Zeiler & Fergus 2014: positive upstream gradient, the forward mask is
ignored).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

RULES = ("gradient", "guided", "deconvnet")

#: Run the backward in channels-last memory format on the CPU (measured: see scripts/bench_saliency.py).
CHANNELS_LAST_ON_CPU = True
#: Fold eval BatchNorm scales into the transposed convolutions before them.
FOLD_BATCHNORM = True


class TapeUnsupported(Exception):
    """The forward pass used an op the tape cannot transpose (the reason says which)."""


def _name(func) -> str:
    name = getattr(func, "__name__", "")
    if name == "__get__":
        return "get:" + getattr(getattr(func, "__self__", None), "__name__", "")
    return name


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _bind(names: tuple[str, ...], defaults: dict, args, kwargs) -> dict:
    a = dict(defaults)
    a.update(zip(names, args))
    a.update(kwargs)
    return a


# Calls on a recorded tensor that only read metadata.
_META = {"get:shape", "size", "dim", "get:ndim", "get:dtype", "get:device", "is_contiguous", "numel",
         "__len__", "get:requires_grad", "get:is_cuda", "get:layout", "get:is_sparse", "get:is_quantized",
         "get:is_meta", "get:names", "stride", "element_size", "get:itemsize", "nelement", "get:grad_fn",
         "get:_version", "get:is_leaf", "get:is_mkldnn", "is_floating_point", "is_complex", "get_device",
         "get:data_ptr", "data_ptr", "storage_offset", "__hash__", "__format__", "__repr__"}
# Calls whose result does not depend on the values of a recorded tensor.
_CONSTANT = {"new_zeros", "new_ones", "new_empty", "new_full", "zeros_like", "ones_like", "empty_like",
             "full_like"}
_INPUT = -1  # node index of the network input


class _Node:
    __slots__ = ("kind", "src", "saved")

    def __init__(self, kind: str, src: tuple, saved: tuple):
        self.kind, self.src, self.saved = kind, src, saved


class LinearTape(TorchFunctionMode):
    """Records the piecewise-linear structure of one forward pass (use via :func:`record`)."""

    def __init__(self):
        super().__init__()
        self.nodes: list[_Node] = []
        self._ids: dict[int, tuple] = {}
        self.relu_units = 0  # ReLU-family ops recorded (the guided / deconvnet rules apply there)

    # -- bookkeeping ---------------------------------------------------------------------
    def _track(self, t: torch.Tensor, node: int) -> torch.Tensor:
        self._ids[id(t)] = (weakref.ref(t), t._version, node)
        return t

    def watch(self, t: torch.Tensor) -> torch.Tensor:
        """Mark ``t`` as the network input."""
        return self._track(t, _INPUT)

    def key(self, t) -> int | None:
        """Node that produced ``t``, None for constants; raises if ``t`` changed in place."""
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._ids.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        if entry[1] != t._version:
            raise TapeUnsupported("a recorded tensor was modified in place by an untracked op")
        return entry[2]

    def _record(self, out: torch.Tensor, kind: str, src, *saved) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise TapeUnsupported(f"{kind} returned {type(out).__name__}")
        self.nodes.append(_Node(kind, tuple(src), saved))
        return self._track(out, len(self.nodes) - 1)

    def _tracked_in(self, args, kwargs) -> bool:
        for a in args:
            if isinstance(a, (list, tuple)):
                if any(self.key(b) is not None for b in a):
                    return True
            elif self.key(a) is not None:
                return True
        return any(self.key(v) is not None for v in kwargs.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self._tracked_in(args, kwargs):
            return func(*args, **kwargs)
        name = _name(func)
        if name in _META:
            return func(*args, **kwargs)
        if name in _CONSTANT:
            return func(*args, **kwargs)
        handler = _HANDLERS.get(name)
        if handler is None:
            raise TapeUnsupported(f"op {name or func!r} on a tensor derived from the input")
        return handler(self, func, args, kwargs)

    # -- ops -------------------------------------------------------------------------------
    def _conv2d(self, func, args, kwargs):
        a = _bind(("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
                  {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}, args, kwargs)
        x, w = a["input"], a["weight"]
        if self.key(w) is not None or self.key(a["bias"]) is not None or x.ndim != 4:
            raise TapeUnsupported("conv2d with input-dependent weights or a non-4D input")
        stride, dilation = _pair(a["stride"]), _pair(a["dilation"])
        padding = a["padding"]
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0, 0)
            else:  # "same" (stride 1): symmetric only when every d*(k-1) is even
                total = [dilation[i] * (w.shape[2 + i] - 1) for i in range(2)]
                if any(t % 2 for t in total):
                    raise TapeUnsupported("conv2d padding='same' with asymmetric padding")
                padding = (total[0] // 2, total[1] // 2)
        src = self.key(x)
        out = func(*args, **kwargs)
        return self._record(out, "conv", [src], w, stride, _pair(padding), dilation, int(a["groups"]),
                            tuple(x.shape))

    def _batch_norm(self, func, args, kwargs):
        a = _bind(("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
                  {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}, args, kwargs)
        x, mean, var, w = a["input"], a["running_mean"], a["running_var"], a["weight"]
        if a["training"] or mean is None or var is None:
            raise TapeUnsupported("batch_norm with batch statistics (training mode)")
        if any(self.key(t) is not None for t in (mean, var, w, a["bias"])):
            raise TapeUnsupported("batch_norm with input-dependent statistics")
        src = self.key(x)
        out = func(*args, **kwargs)
        scale = torch.rsqrt(var + a["eps"])
        if w is not None:
            scale = scale * w
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self._record(out, "scale", [src], scale.to(out.dtype).reshape(shape))

    def _kink(self, src, out, lo: float, hi: float):
        # Units pass the gradient where lo < x < hi; x is read off the output (same test).
        relu_like = lo == 0.0
        self.relu_units += relu_like
        return self._record(out, "kink", [src], out, out._version, float(lo), float(hi), relu_like)

    def _relu(self, func, args, kwargs):
        src = self.key(args[0] if args else kwargs["input"])
        return self._kink(src, func(*args, **kwargs), 0.0, math.inf)

    def _relu6(self, func, args, kwargs):
        src = self.key(args[0] if args else kwargs["input"])
        return self._kink(src, func(*args, **kwargs), 0.0, 6.0)

    def _hardtanh(self, func, args, kwargs):
        a = _bind(("input", "min_val", "max_val", "inplace"),
                  {"min_val": -1.0, "max_val": 1.0, "inplace": False}, args, kwargs)
        src = self.key(a["input"])
        return self._kink(src, func(*args, **kwargs), float(a["min_val"]), float(a["max_val"]))

    def _pad(self, func, args, kwargs):
        a = _bind(("input", "pad", "mode", "value"), {"mode": "constant", "value": None}, args, kwargs)
        if a["mode"] != "constant":
            raise TapeUnsupported(f"pad mode {a['mode']!r}")
        src = self.key(a["input"])
        out = func(*args, **kwargs)
        return self._record(out, "pad", [src], tuple(int(p) for p in a["pad"]))

    def _add(self, func, args, kwargs, sign: float = 1.0, reverse: bool = False):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        ka, kb = self.key(a), self.key(b)
        if isinstance(alpha, torch.Tensor):
            raise TapeUnsupported("add with a tensor alpha")
        src = [ka, kb]
        out = func(*args, **kwargs)
        for t, k in ((a, ka), (b, kb)):
            if k is not None and (not isinstance(t, torch.Tensor) or t.shape != out.shape):
                raise TapeUnsupported("add/sub broadcasting a recorded tensor")
        fa, fb = (1.0, sign * alpha) if not reverse else (sign, 1.0)
        return self._record(out, "add", src, fa, fb)

    def _sub(self, func, args, kwargs):
        return self._add(func, args, kwargs, sign=-1.0)

    def _rsub(self, func, args, kwargs):  # other - self
        return self._add(func, args, kwargs, sign=-1.0, reverse=True)

    def _mul(self, func, args, kwargs, divide: bool = False):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        ka, kb = self.key(a), self.key(b)
        if (ka is None) == (kb is None) or (divide and kb is not None) or kwargs.get("rounding_mode"):
            raise TapeUnsupported("mul/div of two input-dependent tensors")
        const, tracked = (b, a) if ka is not None else (a, b)
        out = func(*args, **kwargs)
        if tracked.shape != out.shape:
            raise TapeUnsupported("mul/div broadcasting a recorded tensor")
        if isinstance(const, torch.Tensor):
            lead = out.ndim - const.ndim
            if lead == 0 and const.shape[0] != 1 and out.shape[0] != 1:
                raise TapeUnsupported("mul/div by a per-sample constant")
            const = const.detach()
        factor = (1.0 / const) if divide else const
        return self._record(out, "mul", [ka if ka is not None else kb], factor)

    def _div(self, func, args, kwargs):
        return self._mul(func, args, kwargs, divide=True)

    def _neg(self, func, args, kwargs):
        src = self.key(args[0])
        return self._record(func(*args, **kwargs), "mul", [src], -1.0)

    def _adaptive_avg_pool2d(self, func, args, kwargs):
        x = args[0] if args else kwargs["input"]
        src = self.key(x)
        out = func(*args, **kwargs)
        if x.ndim != 4:
            raise TapeUnsupported("adaptive_avg_pool2d on a non-4D tensor")
        return self._record(out, "adaptive_avg", [src], tuple(x.shape))

    def _avg_pool2d(self, func, args, kwargs):
        a = _bind(("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                   "divisor_override"), {"stride": None, "padding": 0, "ceil_mode": False,
                                         "count_include_pad": True, "divisor_override": None}, args, kwargs)
        x = a["input"]
        src = self.key(x)
        out = func(*args, **kwargs)
        k = _pair(a["kernel_size"])
        s = _pair(a["stride"]) if a["stride"] not in (None, [], ()) else k
        return self._record(out, "avg_pool", [src], tuple(x.shape), k, s, _pair(a["padding"]),
                            bool(a["ceil_mode"]), bool(a["count_include_pad"]), a["divisor_override"])

    def _max_pool2d(self, func, args, kwargs):
        a = _bind(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                  {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False},
                  args, kwargs)
        x = a["input"]
        if x.ndim != 4:
            raise TapeUnsupported("max_pool2d on a non-4D tensor")
        src = self.key(x)
        k = _pair(a["kernel_size"])
        s = _pair(a["stride"]) if a["stride"] not in (None, [], ()) else k
        p, d, c = _pair(a["padding"]), _pair(a["dilation"]), bool(a["ceil_mode"])
        out, idx = torch.ops.aten.max_pool2d_with_indices(x, k, s, p, d, c)
        self._record(out, "max_pool", [src], tuple(x.shape), k, s, p, d, c, idx)
        return (out, idx) if a["return_indices"] else out

    def _mean(self, func, args, kwargs):
        a = _bind(("input", "dim", "keepdim"), {"dim": None, "keepdim": False}, args, kwargs)
        x, dim = a["input"], a["dim"]
        if dim is None or kwargs.get("dtype") is not None:
            raise TapeUnsupported("mean over all dims")
        dims = sorted(d % x.ndim for d in ((dim,) if isinstance(dim, int) else dim))
        if 0 in dims:
            raise TapeUnsupported("mean over the batch dimension")
        src = self.key(x)
        out = func(*args, **kwargs)
        return self._record(out, "mean", [src], tuple(x.shape), tuple(dims), bool(a["keepdim"]))

    def _reshape(self, func, args, kwargs):
        x = args[0]
        src = self.key(x)
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or x.ndim == 0 or out.shape[0] != x.shape[0]:
            raise TapeUnsupported("reshape that changes the batch dimension")
        return self._record(out, "reshape", [src], tuple(x.shape))

    def _transpose(self, func, args, kwargs):
        x = args[0]
        src = self.key(x)
        out = func(*args, **kwargs)
        if func.__name__ == "permute":
            if len(args) == 1:
                dims = kwargs["dims"]
            elif len(args) == 2 and isinstance(args[1], (tuple, list)):
                dims = args[1]
            else:
                dims = args[1:]
            dims = tuple(int(d) % x.ndim for d in dims)
        else:
            d0 = int(args[1] if len(args) > 1 else kwargs["dim0"]) % x.ndim
            d1 = int(args[2] if len(args) > 2 else kwargs["dim1"]) % x.ndim
            dims = list(range(x.ndim))
            dims[d0], dims[d1] = d1, d0
            dims = tuple(dims)
        if dims[0] != 0:
            raise TapeUnsupported("transpose/permute moving the batch dimension")
        inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return self._record(out, "permute", [src], inverse)

    def _split(self, func, args, kwargs):
        x = args[0] if args else kwargs["input"]
        src = self.key(x)
        outs = func(*args, **kwargs)
        dim = kwargs.get("dim", args[2] if len(args) > 2 else 0) % x.ndim
        if dim == 0:
            raise TapeUnsupported("split/chunk along the batch dimension")
        start = 0
        for o in outs:
            self._record(o, "narrow", [src], dim, start, tuple(x.shape))
            start += o.shape[dim]
        return outs

    def _identity(self, func, args, kwargs):
        x = args[0] if args else kwargs["input"]
        src = self.key(x)
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            raise TapeUnsupported(f"{_name(func)} changing shape or dtype")
        return self._record(out, "id", [src])

    def _dropout(self, func, args, kwargs):
        a = _bind(("input", "p", "training", "inplace"), {"p": 0.5, "training": True, "inplace": False},
                  args, kwargs)
        if a["training"] and a["p"] > 0:
            raise TapeUnsupported("dropout in training mode")
        return self._identity(func, args, kwargs)

    def _cat(self, func, args, kwargs):
        tensors = args[0] if args else kwargs["tensors"]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        ref = next(t for t in tensors if isinstance(t, torch.Tensor) and t.numel() > 0)
        if dim % ref.ndim == 0:
            raise TapeUnsupported("cat along the batch dimension")
        src = [self.key(t) for t in tensors]
        sizes = [t.shape[dim] for t in tensors]
        out = func(*args, **kwargs)
        return self._record(out, "cat", src, dim % ref.ndim, sizes)

    def _linear(self, func, args, kwargs):
        a = _bind(("input", "weight", "bias"), {"bias": None}, args, kwargs)
        if self.key(a["weight"]) is not None or self.key(a["bias"]) is not None:
            raise TapeUnsupported("linear with input-dependent weights")
        src = self.key(a["input"])
        out = func(*args, **kwargs)
        return self._record(out, "linear", [src], a["weight"])

    # -- backward --------------------------------------------------------------------------
    def backward(self, output: torch.Tensor, grad: torch.Tensor, rule: str = "gradient",
                 channels_last: bool | None = None) -> torch.Tensor:
        """Input gradient for ``K`` upstream gradients of the recorded output at once.

        Args:
            output: the recorded network output ``[N, ...]``.
            grad: ``[K * N, ...]`` upstream gradients, k-major (row ``k * N + n`` belongs to image n).
            rule: backward rule of ReLU-family units, one of :data:`RULES`.
            channels_last: run 4-D gradients in channels-last format (default: on the CPU).

        Returns:
            ``[K * N, ...]`` gradient with respect to the input (same layout as ``grad``).
        """
        start = self.key(output)
        if start is None or start == _INPUT:
            raise TapeUnsupported("the network output does not depend on its input through recorded ops")
        n = output.shape[0]
        if grad.shape[0] % n or grad.shape[1:] != output.shape[1:]:
            raise ValueError(f"grad {tuple(grad.shape)} is not K x output {tuple(output.shape)}")
        if channels_last is None:
            channels_last = CHANNELS_LAST_ON_CPU and grad.device.type == "cpu"
        nodes = self._fold() if FOLD_BATCHNORM else self.nodes
        grads: dict[int, torch.Tensor] = {start: grad}
        for i in range(len(nodes) - 1, -1, -1):
            g = grads.pop(i, None)
            if g is None:
                continue
            node = nodes[i]
            for src, gi in zip(node.src, _BACKWARD[node.kind](node.saved, g, n, rule, channels_last)):
                if src is None or gi is None:
                    continue
                grads[src] = grads[src] + gi if src in grads else gi
        if _INPUT not in grads:
            raise TapeUnsupported("the recorded output does not depend on the input")
        return grads[_INPUT].contiguous()

    def _fold(self) -> list[_Node]:
        """Nodes with every eval BatchNorm that is the only consumer of a conv folded into it."""
        uses: dict[int, int] = {}
        for node in self.nodes:
            for s in node.src:
                if s is not None:
                    uses[s] = uses.get(s, 0) + 1
        nodes = list(self.nodes)
        for i, node in enumerate(nodes):
            s = node.src[0] if node.src else None
            if node.kind == "scale" and s is not None and s >= 0 and nodes[s].kind == "conv" and uses[s] == 1:
                conv = nodes[s]
                w = conv.saved[0] * node.saved[0].reshape(-1, 1, 1, 1)
                nodes[s] = _Node("conv", conv.src, (w,) + conv.saved[1:])
                nodes[i] = _Node("id", node.src, ())
        return nodes


def _per_image(t: torch.Tensor, g: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """View ``g`` [K*N, ...] as [K, N, ...] and ``t`` [N, ...] as [1, N, ...] (broadcast over K)."""
    return g.view(g.shape[0] // n, n, *g.shape[1:]), t.unsqueeze(0)


def _bw_conv(saved, g, n, rule, cl):
    w, stride, padding, dilation, groups, xshape = saved
    if cl and g.ndim == 4:
        g = g.contiguous(memory_format=torch.channels_last)
    out_pad = tuple(xshape[2 + j] - ((g.shape[2 + j] - 1) * stride[j] - 2 * padding[j]
                                     + dilation[j] * (w.shape[2 + j] - 1) + 1) for j in range(2))
    return [F.conv_transpose2d(g, w, None, stride, padding, out_pad, groups, dilation)]


def _bw_scale(saved, g, n, rule, cl):
    return [g * saved[0]]


def _bw_kink(saved, g, n, rule, cl):
    out, version, lo, hi, relu_like = saved
    if out._version != version:
        raise TapeUnsupported("an activation was modified in place after it was recorded")
    if relu_like and rule == "deconvnet":
        return [g.clamp(min=0)]
    if relu_like and rule == "guided":
        g = g.clamp(min=0)
    if cl and g.ndim == 4 and g.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    gv, ov = _per_image(out, g, n)
    ov = ov.expand_as(gv)
    if hi == math.inf:
        r = torch.ops.aten.threshold_backward(gv, ov, lo)
    else:
        r = torch.ops.aten.hardtanh_backward(gv, ov, lo, hi)
    return [r.view(g.shape)]


def _bw_pad(saved, g, n, rule, cl):
    return [F.pad(g, [-p for p in saved[0]])]


def _bw_add(saved, g, n, rule, cl):
    fa, fb = saved
    return [g if fa == 1 else g * fa, g if fb == 1 else g * fb]


def _bw_mul(saved, g, n, rule, cl):
    return [g * saved[0]]


def _bw_adaptive_avg(saved, g, n, rule, cl):
    xshape = saved[0]
    b = g.shape[0]
    if g.shape[-2:] == (1, 1):
        return [(g / (xshape[2] * xshape[3])).expand(b, *xshape[1:])]
    fake = torch.empty((b,) + xshape[1:], dtype=g.dtype, device=g.device)
    return [torch.ops.aten._adaptive_avg_pool2d_backward(g.contiguous(), fake)]


def _bw_avg_pool(saved, g, n, rule, cl):
    xshape, k, s, p, ceil, incl, div = saved
    fake = torch.empty((g.shape[0],) + xshape[1:], dtype=g.dtype, device=g.device)
    return [torch.ops.aten.avg_pool2d_backward(g, fake, k, s, p, ceil, incl, div)]


def _bw_max_pool(saved, g, n, rule, cl):
    xshape, k, s, p, d, c, idx = saved
    reps = g.shape[0] // n
    fake = torch.empty((g.shape[0],) + xshape[1:], dtype=g.dtype, device=g.device)
    idx = idx.repeat(reps, 1, 1, 1) if reps > 1 else idx
    return [torch.ops.aten.max_pool2d_with_indices_backward(g, fake, k, s, p, d, c, idx)]


def _bw_mean(saved, g, n, rule, cl):
    xshape, dims, keepdim = saved
    count = 1
    for d in dims:
        count *= xshape[d]
    if not keepdim:
        for d in dims:
            g = g.unsqueeze(d)
    return [(g / count).expand((g.shape[0],) + xshape[1:])]


def _bw_reshape(saved, g, n, rule, cl):
    return [g.reshape((g.shape[0],) + saved[0][1:])]


def _bw_permute(saved, g, n, rule, cl):
    return [g.permute(saved[0])]


def _bw_narrow(saved, g, n, rule, cl):
    dim, start, xshape = saved
    full = g.new_zeros((g.shape[0],) + xshape[1:])
    full.narrow(dim, start, g.shape[dim]).copy_(g)
    return [full]


def _bw_id(saved, g, n, rule, cl):
    return [g]


def _bw_cat(saved, g, n, rule, cl):
    dim, sizes = saved
    return list(torch.split(g, sizes, dim=dim))


def _bw_linear(saved, g, n, rule, cl):
    return [g @ saved[0]]


_BACKWARD: dict[str, Callable] = {
    "conv": _bw_conv, "scale": _bw_scale, "kink": _bw_kink, "pad": _bw_pad, "add": _bw_add, "mul": _bw_mul,
    "adaptive_avg": _bw_adaptive_avg, "avg_pool": _bw_avg_pool, "max_pool": _bw_max_pool, "mean": _bw_mean,
    "reshape": _bw_reshape, "permute": _bw_permute, "narrow": _bw_narrow, "id": _bw_id, "cat": _bw_cat,
    "linear": _bw_linear,
}

_HANDLERS: dict[str, Callable] = {
    "conv2d": LinearTape._conv2d,
    "batch_norm": LinearTape._batch_norm,
    "relu": LinearTape._relu, "relu_": LinearTape._relu,
    "relu6": LinearTape._relu6,
    "hardtanh": LinearTape._hardtanh, "hardtanh_": LinearTape._hardtanh,
    "pad": LinearTape._pad,
    "add": LinearTape._add, "__add__": LinearTape._add, "__radd__": LinearTape._add, "add_": LinearTape._add,
    "__iadd__": LinearTape._add,
    "sub": LinearTape._sub, "__sub__": LinearTape._sub, "sub_": LinearTape._sub, "__isub__": LinearTape._sub,
    "__rsub__": LinearTape._rsub,
    "mul": LinearTape._mul, "__mul__": LinearTape._mul, "__rmul__": LinearTape._mul, "mul_": LinearTape._mul,
    "__imul__": LinearTape._mul,
    "div": LinearTape._div, "__truediv__": LinearTape._div, "div_": LinearTape._div,
    "__itruediv__": LinearTape._div,
    "neg": LinearTape._neg, "__neg__": LinearTape._neg,
    "adaptive_avg_pool2d": LinearTape._adaptive_avg_pool2d,
    "avg_pool2d": LinearTape._avg_pool2d,
    "max_pool2d": LinearTape._max_pool2d,
    "mean": LinearTape._mean,
    "transpose": LinearTape._transpose, "permute": LinearTape._transpose,
    "chunk": LinearTape._split, "split": LinearTape._split,
    "flatten": LinearTape._reshape, "view": LinearTape._reshape, "reshape": LinearTape._reshape,
    "contiguous": LinearTape._identity, "clone": LinearTape._identity,
    "dropout": LinearTape._dropout,
    "cat": LinearTape._cat, "concat": LinearTape._cat, "concatenate": LinearTape._cat,
    "linear": LinearTape._linear,
}


def one_hot_grads(targets: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """``[N, K]`` class indices -> ``[K * N, Cl]`` k-major one-hot upstream gradients."""
    n, k = targets.shape
    g = torch.zeros(k, n, num_classes, dtype=dtype, device=targets.device)
    g.scatter_(2, targets.t().unsqueeze(-1), 1.0)
    return g.view(k * n, num_classes)


def record(module, x: torch.Tensor) -> tuple[LinearTape, torch.Tensor, torch.Tensor]:
    """One ``no_grad`` forward of ``module`` on a copy of ``x`` under a tape.

    Returns (tape, logits ``[N, Cl]``, the input copy). Raises :class:`TapeUnsupported`.
    """
    tape = LinearTape()
    xin = x.detach().clone()
    tape.watch(xin)
    with torch.no_grad(), tape:
        out = module(xin)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise TapeUnsupported("the model must return logits [N, classes]")
    return tape, out, xin
