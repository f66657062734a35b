"""wsloc's one map normalisation: score maps to ``[0, 1]``, by one of two named rules.

Every map is normalised on its own over its last two axes ``(H, W)``:

``"minmax"``
    ``(s - min) / (max - min)``; a constant map becomes all zeros (as in
    clovaai/wsolevaluation). The map-based metrics (:mod:`wsloc.evaluate`) and the pictures
    (:mod:`wsloc.viz`) use it: it keeps the map's ranking of every pixel.

``"peak"``
    ``max(s, 0) / max``: negative values clipped to 0, the rest as fractions of the maximum
    (CAM-style); a map with no positive value becomes all zeros. Multi-scale fusion
    (:mod:`wsloc.saliency.multiscale`) and fraction seeds (:mod:`wsloc.segment.seeds`) use it:
    a map's zero stays zero.

The caller names the rule (there is no default). NumPy arrays stay NumPy (float dtypes kept,
integers become float64); torch tensors stay torch (float32, on their device, detached), so
the localizer's torch path and the NumPy callers share one definition. The range
``max - min`` is computed in float64 and rounded once to the map's dtype.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RULES", "normalize_maps"]

#: The normalisation rules.
RULES = ("minmax", "peak")


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"normalisation rule must be one of {RULES}, not {rule!r}")
    return rule


def _numpy(s: np.ndarray, rule: str) -> np.ndarray:
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    axes = (-2, -1)
    if rule == "peak":
        m = np.maximum(s, 0)
        peak = m.max(axis=axes, keepdims=True)
        ok = peak > 0
        return np.where(ok, m / np.where(ok, peak, 1), 0).astype(s.dtype, copy=False)
    lo = s.min(axis=axes, keepdims=True)
    hi = s.max(axis=axes, keepdims=True)
    span = (hi.astype(np.float64) - lo.astype(np.float64)).astype(s.dtype)
    ok = hi > lo
    return np.where(ok, (s - lo) / np.where(ok, span, 1), 0).astype(s.dtype, copy=False)


def _torch(maps, rule: str):
    import torch

    if rule == "peak":
        m = maps.detach().float().clamp(min=0)
        peak = m.amax(dim=(-2, -1), keepdim=True)
        return torch.where(peak > 0, m / peak.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(m))
    m = maps.detach().float()
    lo = m.amin(dim=(-2, -1), keepdim=True)
    hi = m.amax(dim=(-2, -1), keepdim=True)
    span = (hi.double() - lo.double()).float()
    return torch.where(hi > lo, (m - lo) / torch.where(hi > lo, span, torch.ones_like(span)), torch.zeros_like(m))


def normalize_maps(maps, rule: str):
    """Normalise every map to ``[0, 1]`` by ``rule`` (see the module doc).

    Args:
        maps: float ``[..., H, W]`` NumPy array (or anything ``numpy.asarray`` takes) or torch
            tensor; finite values.
        rule: ``"minmax"`` or ``"peak"``.

    Returns:
        The same shape, in ``[0, 1]``: NumPy (the input's float dtype; float64 for integers)
        or a float32 torch tensor on the input's device.
    """
    _check_rule(rule)
    if hasattr(maps, "detach"):  # torch tensor
        return _torch(maps, rule)
    s = np.asarray(maps)
    if s.ndim < 2:
        raise ValueError(f"expected maps [..., H, W], got shape {s.shape}")
    return _numpy(s, rule)
