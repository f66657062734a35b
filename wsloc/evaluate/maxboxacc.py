"""MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020, "Evaluating Weakly Supervised Object
Localization Methods Right", Sec. 4 and the journal version's MaxBoxAccV2).

Definitions, for maps normalised to [0, 1] (see :mod:`wsloc.evaluate.maps`) and a threshold
grid ``tau`` (step ``h``, reported):

* mask ``M(tau) = {pixels with s >= tau}``; its connected components use 8-connectivity
  (the outer contours ``cv2.findContours`` traces).
* a component's box is its tight pixel box in wsloc's continuous convention:
  columns ``a..b``, rows ``c..d`` -> ``[a, c, b + 1, d + 1]`` (``cv2.boundingRect``'s
  ``x, y, x + w, y + h``; i.e. *not* inclusive). With the default ``"devkit"`` IoU the
  numbers are then read as inclusive indices (+1 on lengths), exactly as
  clovaai/wsolevaluation does with its contour boxes.
* **BoxAcc(tau, delta)** = fraction of images with a correct box at ``tau``:
    - V1 (``MaxBoxAcc``): the box of the *largest* component (most pixels; equal sizes:
      the one whose first pixel in raster order comes first) has IoU >= delta with some
      ground-truth box; ``delta = 0.5``.
    - V2 (``MaxBoxAccV2``): the best match over the boxes of *all* components and all
      ground-truth boxes has IoU >= delta; ``delta`` in {0.3, 0.5, 0.7}.
  An empty mask has no box: the image counts as wrong at that ``tau``.
* **MaxBoxAcc(delta)** = max over ``tau`` of BoxAcc; MaxBoxAccV2 = mean over the three deltas.

Differences from the wsolevaluation code, which the definitions above do not share: it
thresholds ``uint8(255 s) > int(tau * 255)`` instead of ``s >= tau``; it uses
``RETR_TREE`` so V2 also sees the boxes of hole contours, and V1 the contour with the
largest polygon area (``cv2.contourArea``); it clips ``x1`` to ``W - 1``; and an empty mask
gives the box ``[0, 0, 0, 0]``.

Algorithm: rather than running ``cv2.findContours`` for every (map, threshold) pair, one
sweep per map adds pixels from the highest level down and keeps the 8-connected components
in a union-find forest (with each component's box and size), vectorised over all pixels
of a batch of maps that enter at the same level. A component's IoU is computed only when
it changes; a V2 hit is an interval of thresholds over which an unchanged component with
IoU >= delta exists. The result equals per-threshold contour extraction (the tests check
this against ``cv2.findContours`` / ``cv2.connectedComponentsWithStats``).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import DatasetError
from .iou import check_convention
from .maps import as_map_list, check_thresholds, map_levels, normalize_map, threshold_grid

__all__ = ["box_accuracy_curves", "max_box_acc", "max_box_acc_v2"]

# Pixels per batch of maps swept together (memory ~ 130 bytes per pixel).
_CHUNK_PIXELS = 2_000_000


def _check_gt(gt_boxes, n: int) -> list[np.ndarray]:
    if len(gt_boxes) != n:
        raise DatasetError(f"gt_boxes: {len(gt_boxes)} entries for {n} maps")
    out = []
    for i, g in enumerate(gt_boxes):
        g = np.asarray(g, dtype=np.float64).reshape(-1, 4) if g is not None else np.zeros((0, 4))
        if not np.isfinite(g).all():
            raise DatasetError(f"gt_boxes[{i}]: non-finite coordinates")
        out.append(g)
    return out


def _pad_gt(gts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    g_max = max(1, max(len(g) for g in gts))
    boxes = np.zeros((len(gts), g_max, 4), np.float64)
    valid = np.zeros((len(gts), g_max), bool)
    for i, g in enumerate(gts):
        boxes[i, :len(g)] = g
        valid[i, :len(g)] = True
    return boxes, valid


def _roots_iou(x0, y0, x1, y1, gtb, gtv, plus: float) -> np.ndarray:
    """Best IoU of each box (int arrays [R]) against its image's gt boxes ([R, G, 4], [R, G])."""
    bx0 = x0.astype(np.float64)[:, None]
    by0 = y0.astype(np.float64)[:, None]
    bx1 = x1.astype(np.float64)[:, None]
    by1 = y1.astype(np.float64)[:, None]
    iw = np.minimum(bx1, gtb[..., 2]) - np.maximum(bx0, gtb[..., 0]) + plus
    ih = np.minimum(by1, gtb[..., 3]) - np.maximum(by0, gtb[..., 1]) + plus
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(bx1 - bx0 + plus, 0.0) * np.maximum(by1 - by0 + plus, 0.0)
    area_b = (np.maximum(gtb[..., 2] - gtb[..., 0] + plus, 0.0)
              * np.maximum(gtb[..., 3] - gtb[..., 1] + plus, 0.0))
    union = area_a + area_b - inter
    ok = (union > 0) & gtv
    iou = np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
    return iou.max(axis=1)


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Roots of the pixels ``x`` (vectorised pointer chasing, with path compression of ``x``)."""
    r = parent[x]
    todo = np.nonzero(parent[r] != r)[0]
    while todo.size:
        r[todo] = parent[r[todo]]
        todo = todo[parent[r[todo]] != r[todo]]
    parent[x] = r
    return r


def _dedupe(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Distinct values of ``x`` (any order) without sorting, using a scratch array indexed by value."""
    pos = np.arange(x.size, dtype=np.int64)
    scratch[x] = pos
    return x[scratch[x] == pos]


def _layout(levels: list[np.ndarray]):
    """Lay maps of one width out in one flat array, each row followed by a padding pixel and
    maps separated by a padding row; padding has level -1 so neighbour offsets never wrap."""
    h_list = [lv.shape[0] for lv in levels]
    w = levels[0].shape[1]
    stride = w + 1
    sep = stride + 1
    starts = np.zeros(len(levels), np.int64)
    pos = sep
    for i, h in enumerate(h_list):
        starts[i] = pos
        pos += h * stride + sep
    total = pos
    q = np.full(total, -1, np.int16)
    img = np.zeros(total, np.int32)
    for i, lv in enumerate(levels):
        h = lv.shape[0]
        block = q[starts[i]:starts[i] + h * stride].reshape(h, stride)
        block[:, :w] = lv
        img[starts[i]:starts[i] + h * stride] = i
    return q, img, starts, stride, total


def _sweep_chunk(levels: list[np.ndarray], gts: list[np.ndarray], n_levels: int, deltas: np.ndarray,
                 plus: float, want_v1: bool, want_v2: bool):
    """Sweep a batch of maps of one width.

    Returns (v1_iou float64 [n, L] or None, v2_hits bool [D, n, L] or None).
    """
    n = len(levels)
    q, img, starts, stride, total = _layout(levels)
    local = np.arange(total, dtype=np.int64) - starts[img]
    rows = (local // stride).astype(np.int32)
    cols = (local - rows * stride).astype(np.int32)
    del local

    # Pixels grouped by level (ascending); each level's block is visited from the top level down.
    active = np.nonzero(q >= 0)[0]
    order = active[np.argsort(q[active], kind="stable")]
    del active
    counts = np.bincount(q[order], minlength=n_levels)
    p_end = np.cumsum(counts)
    p_begin = p_end - counts
    # Edges, grouped like the pixels: pixel p at level k links to each 8-neighbour that is
    # already in the mask when p enters (level > k, or level == k and later in memory, so a
    # pair at one level is linked once).
    qo = q[order]
    offsets = np.array([-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1])
    link = np.empty((8, order.size), bool)
    for j, d in enumerate(offsets):
        qn = q[order + d]
        if d > 0:
            np.greater_equal(qn, qo, out=link[j])
        else:
            np.greater(qn, qo, out=link[j])
    del qo

    parent = np.arange(total, dtype=np.int64)  # only pixels in the mask are ever looked up
    lab = np.zeros(total, np.int64)
    scratch = np.zeros(total, np.int64)
    bx0 = cols
    by0 = rows
    bx1 = cols + 1
    by1 = rows + 1
    area = np.ones(total, np.int64)
    start_level = np.zeros(total, np.int32)
    iou = np.zeros(total, np.float64)
    gtb, gtv = _pad_gt(gts)
    # Versions: a component unchanged over the levels lo..hi (closed when it changes or merges).
    ver_root, ver_lo, ver_hi, ver_iou, ver_area = [], [], [], [], []

    for k in range(n_levels - 1, -1, -1):
        P = order[p_begin[k]:p_end[k]]
        if not P.size:
            continue
        ej, ei = np.nonzero(link[:, p_begin[k]:p_end[k]])
        if ei.size:
            ru = P[ei]  # new pixels: roots of themselves
            rv = _find(parent, ru + offsets[ej])
            old = _dedupe(rv[q[rv] > k], scratch)  # roots from higher levels, all changing now
            nodes = np.concatenate([P, old])
            # Union of the small graph (new pixels + touched roots): hook the larger root onto
            # the smaller across every edge, then compress, until no edge joins two roots; the
            # surviving root of each component is its smallest pixel index (first in raster order).
            lab[nodes] = nodes
            a_, b_ = ru, rv
            while True:
                la = lab[a_]
                lb = lab[b_]
                cross = la != lb
                if not cross.any():
                    break
                a_, b_, la, lb = a_[cross], b_[cross], la[cross], lb[cross]
                lab[np.maximum(la, lb)] = np.minimum(la, lb)
                while True:
                    ln = lab[nodes]
                    lln = lab[ln]
                    if np.array_equal(ln, lln):
                        break
                    lab[nodes] = lln
            final = lab[nodes]
            if old.size:
                ver_root.append(old)
                ver_lo.append(np.full(old.size, k + 1, np.int32))
                ver_hi.append(start_level[old])
                ver_iou.append(iou[old])
                ver_area.append(area[old])
            moved = final != nodes
            src = nodes[moved]
            dst = final[moved]
            parent[src] = dst
            np.minimum.at(bx0, dst, bx0[src])
            np.minimum.at(by0, dst, by0[src])
            np.maximum.at(bx1, dst, bx1[src])
            np.maximum.at(by1, dst, by1[src])
            np.add.at(area, dst, area[src])
            roots = _dedupe(final, scratch)
        else:
            roots = P
        rimg = img[roots]
        iou[roots] = _roots_iou(bx0[roots], by0[roots], bx1[roots], by1[roots], gtb[rimg], gtv[rimg], plus)
        start_level[roots] = k

    live = np.nonzero((parent == np.arange(total)) & (q >= 0))[0]
    ver_root.append(live)
    ver_lo.append(np.zeros(live.size, np.int32))
    ver_hi.append(start_level[live])
    ver_iou.append(iou[live])
    ver_area.append(area[live])
    vr = np.concatenate(ver_root)
    vi = img[vr].astype(np.int64)
    lo = np.concatenate(ver_lo).astype(np.int64)
    hi = np.concatenate(ver_hi).astype(np.int64)
    vu = np.concatenate(ver_iou)
    L1 = n_levels + 1

    v1_iou = None
    if want_v1:
        # The largest component at level j is the version with the largest key among those
        # born at a level >= j: a version that died before j merged into a larger one.
        # key: more pixels first, then the earlier first pixel (the root) in raster order.
        key = np.concatenate(ver_area) * (total + 1) + (total - vr)
        best = np.full(n * n_levels, -1, np.int64)
        np.maximum.at(best, vi * n_levels + hi, key)
        best = np.maximum.accumulate(best.reshape(n, n_levels)[:, ::-1], axis=1)[:, ::-1]
        korder = np.argsort(key)
        pos = np.searchsorted(key[korder], best)
        has = best >= 0
        v1_iou = np.where(has, vu[korder[np.minimum(pos, len(key) - 1)]], 0.0)

    v2_hits = None
    if want_v2:
        v2_hits = np.zeros((len(deltas), n, n_levels), bool)
        for d, delta in enumerate(deltas):
            sel = vu >= delta
            cover = np.zeros(n * L1, np.int64)
            np.add.at(cover, vi[sel] * L1 + lo[sel], 1)
            np.add.at(cover, vi[sel] * L1 + hi[sel] + 1, -1)
            v2_hits[d] = np.cumsum(cover.reshape(n, L1), axis=1)[:, :n_levels] > 0
    return v1_iou, v2_hits


def _batch_correct(job, args) -> np.ndarray:
    """bool [D, n, T] correctness for one batch of maps (run in a worker process or inline)."""
    batch_maps, batch_gts = job
    t, deltas, plus, multi_contour, normalize = args
    levels = []
    for m in batch_maps:
        if normalize:
            m = normalize_map(m)
        levels.append(map_levels(m, t))
    v1, v2 = _sweep_chunk(levels, batch_gts, len(t), deltas, plus, not multi_contour, multi_contour)
    return v2 if multi_contour else v1[None] >= deltas[:, None, None]


def _auto_workers(workers: int | None, n_batches: int, work: int) -> int:
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return min(workers, n_batches)
    if work < 5_000_000_000:  # small sweeps: a process pool costs more than it saves
        return 1
    return max(1, min(os.cpu_count() or 1, n_batches))


def box_accuracy_curves(maps, gt_boxes: Sequence, thresholds=None, step: float = 0.01,
                        iou_thresholds: Sequence[float] = (30, 50, 70), multi_contour: bool = True,
                        iou_convention: str = "devkit", normalize: bool = True,
                        return_per_image: bool = False, workers: int | None = None) -> dict:
    """BoxAcc(tau, delta) for every threshold of the grid and every IoU threshold.

    Args:
        maps: float ``[N, H, W]`` or list of ``[H_i, W_i]`` score maps (any range; normalised
            per map unless ``normalize=False``, in which case values must already be in [0, 1]).
        gt_boxes: per map float ``[M_i, 4]`` xyxy ground-truth boxes in the map's pixel frame
            (continuous coordinates, as everywhere in wsloc).
        thresholds: explicit ascending thresholds; default ``threshold_grid(step)``.
        step: grid step when ``thresholds`` is None.
        iou_thresholds: deltas in percent (30, 50, 70) or as fractions (<= 1).
        multi_contour: True = V2 (best match over all components), False = V1 (largest one).
        iou_convention: ``"devkit"`` (default, +1 on lengths) or ``"continuous"``.
        return_per_image: also return ``"correct"``: bool ``[D, N, T]``.
        workers: processes to sweep batches of maps in parallel (forked; 1 = in this process).
            Default: one per CPU core for large sweeps (maps x thresholds >= 5e9 pixels), else 1.

    Returns:
        dict: ``"thresholds"`` float64 ``[T]``, ``"iou_thresholds"`` (percent list),
        ``"accuracy"`` float64 ``[D, T]`` (fractions in [0, 1]), ``"step"``, ``"iou_convention"``,
        ``"multi_contour"``, ``"n_images"``.
    """
    plus = 1.0 if check_convention(iou_convention) == "devkit" else 0.0
    maps = as_map_list(maps)
    gts = _check_gt(gt_boxes, len(maps))
    t = threshold_grid(step) if thresholds is None else check_thresholds(thresholds)
    fracs = [float(d) <= 1 for d in iou_thresholds]
    deltas = np.array([float(d) if f else float(d) / 100.0 for d, f in zip(iou_thresholds, fracs)])
    deltas_pct = [round(float(d) * 100, 9) if f else float(d) for d, f in zip(iou_thresholds, fracs)]
    n, T = len(maps), len(t)
    if T >= 32000:
        raise ValueError(f"at most 31999 thresholds are supported, got {T}")
    correct = np.zeros((len(deltas), n, T), bool)
    # Batches of maps of one width (the sweep lays a batch out with one row stride).
    by_width: dict[int, list[int]] = {}
    for i, m in enumerate(maps):
        by_width.setdefault(m.shape[1], []).append(i)
    batches = []
    for ids in by_width.values():
        cur, pix = [], 0
        for i in ids:
            if cur and pix + maps[i].size > _CHUNK_PIXELS:
                batches.append(cur)
                cur, pix = [], 0
            cur.append(i)
            pix += maps[i].size
        batches.append(cur)
    if not normalize:
        for i, m in enumerate(maps):
            if m.min() < 0 or m.max() > 1:
                raise DatasetError(f"maps[{i}]: values outside [0, 1] with normalize=False")
    jobs = [([maps[i] for i in ids], [gts[i] for i in ids], ids) for ids in batches]
    args = (t, deltas, plus, multi_contour, normalize)
    n_workers = _auto_workers(workers, len(batches), sum(m.size for m in maps) * T)
    if n_workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            results = list(pool.map(_batch_correct, [j[:2] for j in jobs], [args] * len(jobs)))
    else:
        results = [_batch_correct(j[:2], args) for j in jobs]
    for (_, _, ids), res in zip(jobs, results):
        correct[:, ids] = res
    out = {
        "thresholds": t,
        "step": None if thresholds is not None else float(step),
        "iou_thresholds": deltas_pct,
        "accuracy": correct.mean(axis=1) if n else np.full((len(deltas), T), np.nan),
        "iou_convention": iou_convention,
        "multi_contour": multi_contour,
        "n_images": n,
    }
    if return_per_image:
        out["correct"] = correct
    return out


def _summarise(curves: dict, name: str) -> dict:
    acc = curves["accuracy"]
    best = acc.argmax(axis=1)
    per_delta = {int(d) if float(d).is_integer() else d: float(acc[i, best[i]])
                 for i, d in enumerate(curves["iou_thresholds"])}
    best_tau = {int(d) if float(d).is_integer() else d: float(curves["thresholds"][best[i]])
                for i, d in enumerate(curves["iou_thresholds"])}
    return {
        "metric": name,
        "value": float(np.mean(list(per_delta.values()))),
        "per_iou_threshold": per_delta,
        "best_threshold": best_tau,
        **{k: curves[k] for k in ("thresholds", "step", "iou_thresholds", "accuracy",
                                  "iou_convention", "multi_contour", "n_images")},
        **({"correct": curves["correct"]} if "correct" in curves else {}),
    }


def max_box_acc(maps, gt_boxes: Sequence, step: float = 0.01, thresholds=None, iou_threshold: float = 50,
                iou_convention: str = "devkit", return_per_image: bool = False,
                workers: int | None = None) -> dict:
    """MaxBoxAcc (V1): largest component's box, IoU threshold 50 %, max over the threshold grid.

    Returns a dict with ``"value"`` (fraction in [0, 1]), ``"per_iou_threshold"``
    ``{50: value}``, ``"best_threshold"`` ``{50: tau}``, and the curve fields of
    :func:`box_accuracy_curves`.
    """
    curves = box_accuracy_curves(maps, gt_boxes, thresholds, step, (iou_threshold,), False,
                                 iou_convention, return_per_image=return_per_image, workers=workers)
    return _summarise(curves, "MaxBoxAcc")


def max_box_acc_v2(maps, gt_boxes: Sequence, step: float = 0.01, thresholds=None,
                   iou_thresholds: Sequence[float] = (30, 50, 70), iou_convention: str = "devkit",
                   return_per_image: bool = False, workers: int | None = None) -> dict:
    """MaxBoxAccV2: best match over all components' boxes; mean over IoU thresholds 30/50/70 %
    of the max over the threshold grid of BoxAcc.

    Returns a dict with ``"value"`` (the mean, fraction in [0, 1]), ``"per_iou_threshold"``
    ``{30: .., 50: .., 70: ..}``, ``"best_threshold"`` per delta, and the curve fields of
    :func:`box_accuracy_curves` (``"accuracy"`` float64 ``[3, T]``, ``"thresholds"``,
    ``"step"``, ``"iou_convention"``).
    """
    curves = box_accuracy_curves(maps, gt_boxes, thresholds, step, iou_thresholds, True,
                                 iou_convention, return_per_image=return_per_image, workers=workers)
    return _summarise(curves, "MaxBoxAccV2")
