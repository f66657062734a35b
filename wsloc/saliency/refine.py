"""A class map carried into the network's own feature space: which positions look like the map's peak.

A Grad-CAM map says where the evidence for a class is strongest, at the coarse grid of the last layer.
A mid-level layer's features (Lite0's ``_blocks.10``: 112 channels on a 28 x 28 grid at a 448 px
input) describe every position of the image. :func:`feature_map` fits a logistic regression on those
features, with the positions where the map is at least ``fg`` of its maximum as positives and those at
most ``bg`` as negatives, and returns its probability at every position: the parts of the image whose
features resemble the map's peak, whether the map reached them or not. ``map_power`` multiplies the
probability by the map's fraction of its maximum to that power, which keeps the result near the map
(0: the feature model alone).

The Localizer applies it with ``saliency.refine="features"`` (:func:`refine_maps` on the features of
the largest scale's input), as the ``gradcam_masks`` preset does: on coco2017-masks-dev it makes the
best masks measured (BENCHMARKS.md, "Segmentation on real masks"). The default preset does not: for
boxes it trades small objects against large ones as the finer maps do (BENCHMARKS.md, issue 12, "The
map carried into feature space"). :func:`feature_map` and :func:`layer_features` are here for users who
segment with their own code; ``scripts/bench_feature_maps.py`` reproduces those figures.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import FEATURE_LAYER  # the layer measured for EfficientNet-Lite0 (its last stride-16 block)
from ..errors import MethodError
from ..normalize import normalize_maps
from ..segment.seeds import resize_map
from .cam import capture

__all__ = ["feature_map", "feature_layer", "grid_map", "layer_features", "refine_maps", "FEATURE_LAYER"]


class _Reached(Exception):
    """Raised by :func:`layer_features`'s hook to end the forward pass at the layer."""


def feature_layer(model: torch.nn.Module, layer: str = FEATURE_LAYER) -> str:
    """The full name of the module ``layer`` in ``model``: ``layer`` itself when the model has it, else
    its first ensemble member's (``"members.0." + layer`` for a :class:`wsloc.models.ensemble.LiteEnsemble`,
    whose members are EfficientNet-Lites), else ``layer`` unchanged (:func:`layer_features` then names it).
    """
    for name in (layer, f"members.0.{layer}"):
        try:
            model.get_submodule(name)
            return name
        except AttributeError:
            pass
    return layer


def layer_features(model: torch.nn.Module, x: torch.Tensor, layer: str = FEATURE_LAYER) -> torch.Tensor:
    """The output of the module named ``layer`` for a preprocessed batch ``x`` ``[N, 3, H, W]``.

    One forward pass without gradients, ended as soon as the layer has run (the layers after it
    are not computed); the model is left unchanged. Returns a float tensor ``[N, C, h, w]`` on
    ``x``'s device. MethodError if the module does not exist, does not run or does not output a
    feature map.
    """
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise MethodError(f"layer_features: the model has no module named {layer!r}") from None

    def stop(mod, inputs, output):  # registered after capture's hook, so it runs once the output is kept
        raise _Reached

    stopper = None
    try:
        with torch.no_grad(), capture(module, layer, False) as seen:  # capture checks the output's shape
            stopper = module.register_forward_hook(stop)
            model(x)
    except _Reached:
        pass
    finally:
        if stopper is not None:
            stopper.remove()
    if not seen:
        raise MethodError(f"layer_features: layer {layer!r} did not run in the forward pass")
    return seen[0].detach()


def grid_map(saliency, shape: tuple[int, int]) -> np.ndarray:
    """float32 ``shape`` map: ``saliency`` resized (:func:`wsloc.segment.seeds.resize_map`, area when
    shrinking, bilinear when enlarging) and divided by its maximum (:func:`wsloc.normalize.normalize_maps`
    rule ``"peak"``: negative values clipped, an all-zero map stays zero), in [0, 1]: the map
    :func:`feature_map` seeds from and multiplies by."""
    return normalize_maps(resize_map(saliency, shape), "peak")


def feature_map(features, saliency, fg: float = 0.5, bg: float = 0.2, C: float = 1.0,
                map_power: float = 0.0) -> np.ndarray | None:
    """The probability that each feature position belongs with the map's peak.

    Args:
        features: float ``[C, h, w]`` (numpy or torch) feature map of one image, e.g. from
            :func:`layer_features`; each position's vector is scaled to unit length.
        saliency: float ``[H, W]`` map of one class for the same image, any size (resized to
            ``h x w`` and divided by its maximum).
        fg, bg: positives are the positions at or above ``fg`` of the map's maximum, negatives those
            at or below ``bg`` (``0 <= bg < fg <= 1``).
        C: inverse regularisation strength of scikit-learn's ``LogisticRegression``.
        map_power: the probability is multiplied by :func:`grid_map` to this power (0: not at all).

    Returns:
        float32 ``[h, w]`` in [0, 1], or None when either seed set is empty (an all-zero or
        flat map): there is nothing to fit a model on.
    """
    from sklearn.linear_model import LogisticRegression

    if not 0 <= bg < fg <= 1:
        raise ValueError(f"feature_map: need 0 <= bg < fg <= 1, got fg={fg}, bg={bg}")
    if map_power < 0:
        raise ValueError(f"feature_map: map_power must be >= 0, got {map_power}")
    f = features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if f.ndim != 3:
        raise ValueError(f"feature_map: features must be [C, h, w], got shape {f.shape}")
    c, h, w = f.shape
    X = f.reshape(c, h * w).T.astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-6
    r = grid_map(saliency, (h, w)).ravel()
    pos, neg = r >= fg, r <= bg  # fg > 0: an all-zero map has no positives
    if not pos.any() or not neg.any():
        return None
    y = np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))]
    model = LogisticRegression(C=C, max_iter=300).fit(np.r_[X[pos], X[neg]], y)
    p = model.predict_proba(X)[:, 1]
    if map_power:
        p = p * r ** map_power
    return p.reshape(h, w).astype(np.float32)


def refine_maps(features, maps, fg: float = 0.5, bg: float = 0.2, C: float = 1.0,
                map_power: float = 0.25) -> np.ndarray:
    """:func:`feature_map` of every map of a batch, brought back to the maps' own size.

    Args:
        features: float ``[N, C, h, w]`` (numpy or torch), image i's features (:func:`layer_features`).
        maps: float ``[N, K, H, W]`` (numpy or torch), K class maps per image.
        fg, bg, C, map_power: as for :func:`feature_map`.

    Returns:
        float32 numpy ``[N, K, H, W]`` in [0, 1]: each feature map enlarged (bilinear) or shrunk
        (area) to ``H x W`` by :func:`wsloc.segment.seeds.resize_map`; a map without seeds (all zero
        or flat) is kept as :func:`grid_map` at ``H x W`` gives it (the map over its maximum), so
        every output map is on the same [0, 1] scale.
    """
    f = features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    m = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps, np.float32)
    if f.ndim != 4 or m.ndim != 4 or f.shape[0] != m.shape[0]:
        raise ValueError(f"refine_maps: need features [N, C, h, w] and maps [N, K, H, W] of the same N, "
                         f"got {f.shape} and {m.shape}")
    size = m.shape[-2:]
    out = np.empty(m.shape, np.float32)
    for i in range(m.shape[0]):
        for k in range(m.shape[1]):
            p = feature_map(f[i], m[i, k], fg, bg, C, map_power)
            out[i, k] = grid_map(m[i, k], size) if p is None else np.clip(resize_map(p, size), 0.0, 1.0)
    return out
