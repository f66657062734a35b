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
from .iou import box_iou_broadcast, check_convention
from ..normalize import normalize_maps
from .maps import as_map_list, check_thresholds, map_levels, threshold_grid

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


def _roots_iou(x0, y0, x1, y1, gtb, gtv, convention: str) -> np.ndarray:
    """Best IoU of each box (int arrays [R]) against its image's gt boxes ([R, G, 4], [R, G])."""
    boxes = np.stack([x0, y0, x1, y1], axis=-1).astype(np.float64)[:, None, :]
    iou = box_iou_broadcast(boxes, gtb, convention)
    return np.where(gtv, iou, 0.0).max(axis=1)


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


def _pixel_grid(q: np.ndarray, img: np.ndarray, starts: np.ndarray, stride: int):
    """(rows, cols) int32 ``[total]`` of every position of the flat layout within its map."""
    local = np.arange(q.size, dtype=np.int64) - starts[img]
    rows = (local // stride).astype(np.int32)
    cols = (local - rows * stride).astype(np.int32)
    return rows, cols


def _level_order(q: np.ndarray, n_levels: int, stride: int):
    """Pixels grouped by level and the edges each pixel brings when it enters the mask.

    Returns (order int64 ``[P]``: mask pixels by ascending level, p_begin / p_end ``[L]``:
    each level's slice of ``order``, link bool ``[8, P]``, offsets int ``[8]``). Pixel p at
    level k links to each 8-neighbour already in the mask when p enters (level > k, or level
    == k and later in memory, so a pair at one level is linked once).
    """
    active = np.nonzero(q >= 0)[0]
    order = active[np.argsort(q[active], kind="stable")]
    del active
    counts = np.bincount(q[order], minlength=n_levels)
    p_end = np.cumsum(counts)
    p_begin = p_end - counts
    qo = q[order]
    offsets = np.array([-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1])
    link = np.empty((8, order.size), bool)
    for j, d in enumerate(offsets):
        qn = q[order + d]
        if d > 0:
            np.greater_equal(qn, qo, out=link[j])
        else:
            np.greater(qn, qo, out=link[j])
    return order, p_begin, p_end, link, offsets


def _merge_labels(lab: np.ndarray, nodes: np.ndarray, a_: np.ndarray, b_: np.ndarray) -> np.ndarray:
    """Union of a small graph (``nodes``, edges ``a_ - b_``): hook the larger root onto the
    smaller across every edge, then compress, until no edge joins two roots. Returns the
    final label of every node: its component's smallest pixel index (first in raster order)."""
    lab[nodes] = nodes
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
    return lab[nodes]


class _Sweep:
    """The union-find sweep of one batch of maps of one width (see the module doc).

    Components are kept as a forest over the flat layout (``parent``) with each root's box,
    size, IoU and the level it took its present shape at; a component that changes closes a
    *version* (root, levels lo..hi over which it was unchanged, IoU, size).
    """

    def __init__(self, levels: list[np.ndarray], gts: list[np.ndarray], n_levels: int, convention: str):
        self.n = len(levels)
        self.n_levels = n_levels
        self.convention = convention
        q, img, starts, stride, total = _layout(levels)
        self.q, self.img, self.total = q, img, total
        rows, cols = _pixel_grid(q, img, starts, stride)
        self.order, self.p_begin, self.p_end, self.link, self.offsets = _level_order(q, n_levels, stride)
        self.parent = np.arange(total, dtype=np.int64)  # only pixels in the mask are ever looked up
        self.lab = np.zeros(total, np.int64)
        self.scratch = np.zeros(total, np.int64)
        self.bx0, self.by0, self.bx1, self.by1 = cols, rows, cols + 1, rows + 1
        self.area = np.ones(total, np.int64)
        self.start_level = np.zeros(total, np.int32)
        self.iou = np.zeros(total, np.float64)
        self.gtb, self.gtv = _pad_gt(gts)
        self.ver: dict[str, list] = {"root": [], "lo": [], "hi": [], "iou": [], "area": []}

    def _close(self, roots: np.ndarray, lo) -> None:
        """Close the versions of ``roots`` (unchanged from level ``lo`` up to their start level)."""
        for key, value in (("root", roots), ("lo", lo), ("hi", self.start_level[roots]),
                           ("iou", self.iou[roots]), ("area", self.area[roots])):
            self.ver[key].append(value)

    def _join(self, P: np.ndarray, k: int) -> np.ndarray:
        """Link the pixels ``P`` entering at level ``k`` to their neighbours; returns the roots touched."""
        ej, ei = np.nonzero(self.link[:, self.p_begin[k]:self.p_end[k]])
        if not ei.size:
            return P
        ru = P[ei]  # new pixels: roots of themselves
        rv = _find(self.parent, ru + self.offsets[ej])
        old = _dedupe(rv[self.q[rv] > k], self.scratch)  # roots from higher levels, all changing now
        nodes = np.concatenate([P, old])
        final = _merge_labels(self.lab, nodes, ru, rv)
        if old.size:
            self._close(old, np.full(old.size, k + 1, np.int32))
        moved = final != nodes
        src = nodes[moved]
        dst = final[moved]
        self.parent[src] = dst
        np.minimum.at(self.bx0, dst, self.bx0[src])
        np.minimum.at(self.by0, dst, self.by0[src])
        np.maximum.at(self.bx1, dst, self.bx1[src])
        np.maximum.at(self.by1, dst, self.by1[src])
        np.add.at(self.area, dst, self.area[src])
        return _dedupe(final, self.scratch)

    def run(self) -> None:
        """Add the pixels from the top level down, then close the versions still alive."""
        for k in range(self.n_levels - 1, -1, -1):
            P = self.order[self.p_begin[k]:self.p_end[k]]
            if not P.size:
                continue
            roots = self._join(P, k)
            rimg = self.img[roots]
            self.iou[roots] = _roots_iou(self.bx0[roots], self.by0[roots], self.bx1[roots], self.by1[roots],
                                         self.gtb[rimg], self.gtv[rimg], self.convention)
            self.start_level[roots] = k
        live = np.nonzero((self.parent == np.arange(self.total)) & (self.q >= 0))[0]
        self._close(live, np.zeros(live.size, np.int32))

    def v1_iou(self) -> np.ndarray:
        """float64 ``[n, L]``: IoU of the largest component at each level (0 where the mask is empty).

        The largest component at level j is the version with the largest key among those
        born at a level >= j: a version that died before j merged into a larger one.
        key: more pixels first, then the earlier first pixel (the root) in raster order.
        """
        vr = np.concatenate(self.ver["root"])
        vi = self.img[vr].astype(np.int64)
        hi = np.concatenate(self.ver["hi"]).astype(np.int64)
        vu = np.concatenate(self.ver["iou"])
        n, n_levels, total = self.n, self.n_levels, self.total
        key = np.concatenate(self.ver["area"]) * (total + 1) + (total - vr)
        best = np.full(n * n_levels, -1, np.int64)
        np.maximum.at(best, vi * n_levels + hi, key)
        best = np.maximum.accumulate(best.reshape(n, n_levels)[:, ::-1], axis=1)[:, ::-1]
        korder = np.argsort(key)
        pos = np.searchsorted(key[korder], best)
        has = best >= 0
        return np.where(has, vu[korder[np.minimum(pos, len(key) - 1)]], 0.0)

    def v2_hits(self, deltas: np.ndarray) -> np.ndarray:
        """bool ``[D, n, L]``: some component with IoU >= delta exists at the level."""
        vr = np.concatenate(self.ver["root"])
        vi = self.img[vr].astype(np.int64)
        lo = np.concatenate(self.ver["lo"]).astype(np.int64)
        hi = np.concatenate(self.ver["hi"]).astype(np.int64)
        vu = np.concatenate(self.ver["iou"])
        n, n_levels = self.n, self.n_levels
        L1 = n_levels + 1
        hits = np.zeros((len(deltas), n, n_levels), bool)
        for d, delta in enumerate(deltas):
            sel = vu >= delta
            cover = np.zeros(n * L1, np.int64)
            np.add.at(cover, vi[sel] * L1 + lo[sel], 1)
            np.add.at(cover, vi[sel] * L1 + hi[sel] + 1, -1)
            hits[d] = np.cumsum(cover.reshape(n, L1), axis=1)[:, :n_levels] > 0
        return hits


def _sweep_chunk(levels: list[np.ndarray], gts: list[np.ndarray], n_levels: int, deltas: np.ndarray,
                 convention: str, want_v1: bool, want_v2: bool):
    """Sweep a batch of maps of one width.

    Returns (v1_iou float64 [n, L] or None, v2_hits bool [D, n, L] or None).
    """
    sweep = _Sweep(levels, gts, n_levels, convention)
    sweep.run()
    return (sweep.v1_iou() if want_v1 else None), (sweep.v2_hits(deltas) if want_v2 else None)


def _batch_correct(job, args) -> np.ndarray:
    """bool [D, n, T] correctness for one batch of maps (run in a worker process or inline)."""
    batch_maps, batch_gts = job
    t, deltas, convention, multi_contour, normalize = args
    levels = []
    for m in batch_maps:
        if normalize:
            m = normalize_maps(np.asarray(m, np.float64), "minmax")
        levels.append(map_levels(m, t))
    v1, v2 = _sweep_chunk(levels, batch_gts, len(t), deltas, convention, not multi_contour, multi_contour)
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
    check_convention(iou_convention)
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
    args = (t, deltas, iou_convention, multi_contour, normalize)
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
