"""Every metric that a results file supports: :func:`evaluate_results`."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DatasetError
from .coco import coco_ap
from .ilsvrc import clsloc_errors, gt_known_accuracy
from .iou import check_convention, describe_convention
from ..boxes import rle_to_mask
from .gt_masks import gt_known_mask_iou, gt_known_pxap, gt_union_masks
from .ground_truth import ground_truth
from .results import ImageGuesses, clip_to_images, group_guesses, load_results, scoring_warnings

__all__ = ["evaluate_results", "SIZE_BUCKETS"]


#: Object-size buckets: (name, low, high) of the largest ground-truth box's share of the image area.
SIZE_BUCKETS = (("small (<25%)", 0.0, 0.25), ("medium (25-50%)", 0.25, 0.5), ("large (>50%)", 0.5, float("inf")))


def _largest_share(s) -> float:
    """Largest ground-truth box area / image area of a sample (nan when unknown)."""
    b = np.asarray(s.boxes, np.float64).reshape(-1, 4)
    if not len(b) or s.width <= 0 or s.height <= 0:
        return float("nan")
    return float((np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)).max()
                 / (s.width * s.height))


def _by_size(shares: np.ndarray, per_image: dict, gk_hit: np.ndarray) -> dict:
    """Per size bucket: n, top-k errors (means over the bucket's images with ground truth), GT-known."""
    out = {}
    for name, lo, hi in SIZE_BUCKETS:
        inb = (shares >= lo) & (shares < hi)
        row: dict = {"n": int(inb.sum())}
        for key, v in per_image.items():
            sel = inb & ~np.isnan(v)
            row[key] = float(v[sel].mean()) if sel.any() else None
        sel = inb & ~np.isnan(gk_hit)
        row["gt_known_loc_acc"] = float(gk_hit[sel].mean()) if sel.any() else None
        out[name] = row
    return out


def _gt_known_entry(g: ImageGuesses | None, label: int):
    """The guess for the ground-truth class: a flagged entry of that class, else the
    highest-ranked ordinary guess of that class; (box xyxy, segmentation) or None."""
    if g is None:
        return None
    for r in g.gt_known:
        if r["category_id"] == label:
            x, y, w, h = (float(v) for v in r["bbox"])
            return [x, y, x + w, y + h], r.get("segmentation")
    if g.gt_known:
        return None
    hit = np.nonzero(g.classes == label)[0]
    if hit.size:
        j = int(hit[0])
        return g.boxes[j], g.segmentations[j]
    return None


def _saved_map_lookup(maps_dir):
    """``(image_id, category_id) -> float32 map or None`` over a run's saved maps (one file read at a time)."""
    from ..run.saved_maps import MAPS, load_image_maps

    folder = os.path.join(os.fspath(maps_dir), MAPS)
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: no saved maps (run wsloc localize with --save-maps)")
    where = {}
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".npz")):
        path = os.path.join(folder, name)
        try:
            with np.load(path, allow_pickle=False) as z:
                where[int(z["image_id"])] = path
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"{path}: not a saved-maps file ({exc})") from None
    cache: dict = {}

    def lookup(image_id, c):
        if image_id not in where:
            return None
        if cache.get("id") != image_id:
            cache.clear()
            cache.update(id=image_id, data=load_image_maps(where[image_id]))
        d = cache["data"]
        hit = np.nonzero(d["classes"] == int(c))[0]
        return d["maps"][int(hit[0])].astype(np.float32) if hit.size else None

    return lookup


def _mask_categories(ds, categories) -> set | None:
    """The category ids mask IoU and COCO AP are computed on (None: all); see evaluate_results."""
    if isinstance(categories, str):
        if categories == "all":
            return None
        if categories != "auto":
            raise ValueError(f"categories={categories!r}: expected 'auto', 'all' or category ids")
        from ..labels import ClassMap

        try:
            cmap = ClassMap.from_dataset(ds.dataset)
        except DatasetError:  # no category is mapped: score them all
            return None
        return None if cmap is None else set(cmap.ids)
    return None if categories is None else {int(c) for c in categories}


def evaluate_results(results, annotations, iou_convention: str = "devkit", image_root=None,
                     ks=(1, 5), iou_threshold: float = 0.5, coco: bool = True, indices=None,
                     categories="auto", maps_dir=None, masks_dir=None) -> dict:
    """Compute every metric applicable to a COCO-style results file.

    Args:
        results: path of a results JSON file or a list of result dicts
            (format: :mod:`wsloc.evaluate.results`).
        annotations: a dataset with ground truth: path of a COCO annotation file, an ImageNet /
            VOC XML folder or a ``LOC_val_solution.csv``, a dataset object, or a
            :class:`wsloc.evaluate.ground_truth.GroundTruth`.
        iou_convention: ``"devkit"`` (default; ILSVRC devkit, +1 on lengths) or
            ``"continuous"``; used by the CLS-LOC and GT-known figures (COCO AP always uses
            COCOeval's continuous IoU).
        image_root: image folder (only needed when the annotation file lacks image sizes).
        ks: top-k values for the CLS-LOC / classification errors.
        iou_threshold: IoU for a right box (0.5).
        coco: also compute COCO box AP (and mask AP when both sides have masks).
        indices: score only these dataset positions (``ds[i]``; e.g. the images a ``--limit`` or
            sharded run processed); default all images.
        categories: the categories the GT-known mask IoU and COCO AP are computed on:
            ``"auto"`` (default: the mapped ones when the annotation file's categories carry
            ``imagenet_classes``, see :mod:`wsloc.labels`; else all), ``"all"``, or ids.
        maps_dir: a run folder whose ``maps/`` holds saved saliency maps
            (``wsloc localize --save-maps``, :mod:`wsloc.run.saved_maps`): adds ``pxap_gt_known``
            (:func:`wsloc.evaluate.gt_masks.gt_known_pxap` over the same pairs).
        masks_dir: a run folder whose ``masks/`` holds saved mask PNGs (``wsloc localize
            --save-masks``, :mod:`wsloc.run.saved_masks`): they replace the results' segmentations.

    Returns:
        dict of figures (fractions in [0, 1]; errors as error rates): ``top{k}_loc_error``,
        ``top{k}_cls_error``, ``gt_known_loc_acc``, ``mask_miou_gt_known`` and
        ``mask_gt_known`` (when results and ground truth have masks:
        :func:`wsloc.evaluate.gt_masks.gt_known_mask_iou` over every (image, category) pair,
        without ``per_pair``), ``mask_categories`` (the ids scored, None for all),
        ``pxap_gt_known`` (with ``maps_dir``), ``coco_bbox`` / ``coco_segm`` (dicts), and counts:
        ``n_images`` (scored), ``n_dataset_images`` (in the dataset), ``n_evaluated`` (with a
        ground-truth class), ``by_size`` ({bucket: figures} over :data:`SIZE_BUCKETS`),
        ``n_without_gt``, ``n_without_guesses`` (each counted as an error),
        ``n_fewer_guesses`` (fewer than max(ks)), ``n_gt_known_missing`` (no guess for the
        ground-truth class: a GT-known miss); ``iou_convention`` and its description;
        ``n_repeated_guesses`` (guesses of a class already guessed at a better rank: not
        counted by the ILSVRC figures), ``n_duplicate_results``, ``n_boxes_outside`` (boxes
        more than 1 px beyond their image; every box is scored clipped to its image) and
        ``warnings`` (lines saying so; see :mod:`wsloc.evaluate.results`).

    Raises:
        DatasetError: the annotations cannot be opened, the results are malformed or refer
            to unknown image ids / categories.
    """
    check_convention(iou_convention)
    ds = ground_truth(annotations, image_root, indices)
    res = load_results(results, ds)
    if masks_dir is not None:
        from ..run.saved_masks import apply_saved_masks

        res = apply_saved_masks(res, masks_dir)
    res_name = os.fspath(results) if isinstance(results, (str, os.PathLike)) else "results"
    res, n_outside = clip_to_images(res, {s.image_id: (s.height, s.width) for s in ds})  # for every figure
    groups = group_guesses(res, res_name)  # each class once per image, at its best rank
    samples = list(ds)
    about = {"annotations": getattr(ds, "ann_file", None), "results": res_name, "n_results": len(res),
             "n_dataset_images": ds.n_dataset_images}
    figures = _box_figures(samples, groups, ks, iou_threshold, iou_convention, about)
    figures["n_repeated_guesses"] = sum(g.repeated for g in groups.values())
    figures["n_duplicate_results"] = sum(g.duplicates for g in groups.values())
    figures["n_boxes_outside"] = n_outside
    figures["warnings"] = scoring_warnings(groups, n_outside, res_name)
    cats = _mask_categories(ds, categories)
    figures["mask_categories"] = None if cats is None else sorted(cats)
    figures.update(_mask_figures(ds, res, samples, groups, cats, maps_dir, iou_threshold))
    if coco:
        figures.update(_coco_figures(ds, res, cats))
    return figures


def _collect(samples, groups: dict, k_max: int) -> dict:
    """One pass over the samples: the inputs of the CLS-LOC and GT-known figures, and counts.

    Returns a dict: ``g_cls`` / ``g_box`` (guessed classes and boxes per sample), ``t_box`` /
    ``t_lab`` / ``t_cls`` (ground truth), ``gk_pred`` / ``gk_gt`` (GT-known box or None, and
    the boxes of the label, per sample with a label), ``gk_hit_at`` (position in ``gk_pred``
    of each sample, -1 without a label), ``n_without_guesses``, ``n_fewer``, ``n_gk_missing``.
    """
    c = {key: [] for key in ("g_cls", "g_box", "t_box", "t_lab", "t_cls", "gk_pred", "gk_gt", "gk_hit_at")}
    c.update(n_without_guesses=0, n_fewer=0, n_gk_missing=0)
    for s in samples:
        g = groups.get(s.image_id)
        classes = set(int(x) for x in s.labels) | ({int(s.label)} if s.label is not None else set())
        if g is None or len(g.classes) == 0:
            c["n_without_guesses"] += 1 if classes else 0
        elif len(g.classes) < k_max:
            c["n_fewer"] += 1 if classes else 0
        c["g_cls"].append(g.classes if g is not None else np.zeros(0, np.int64))
        c["g_box"].append(g.boxes if g is not None else np.zeros((0, 4)))
        c["t_box"].append(s.boxes)
        c["t_lab"].append(s.labels)
        c["t_cls"].append(classes)
        if s.label is None:
            c["gk_hit_at"].append(-1)
            continue
        c["gk_hit_at"].append(len(c["gk_pred"]))
        entry = _gt_known_entry(g, int(s.label))
        c["n_gk_missing"] += entry is None
        c["gk_pred"].append(None if entry is None else entry[0])
        c["gk_gt"].append(s.boxes[s.labels == s.label])
    return c


def _box_figures(samples, groups: dict, ks, iou_threshold: float, iou_convention: str, about: dict) -> dict:
    """CLS-LOC errors, classification errors, GT-known accuracy, their size buckets and counts
    (``about``: the annotations, results, n_results and n_dataset_images entries, in their place)."""
    k_max = max(ks)
    c = _collect(samples, groups, k_max)
    errs = clsloc_errors(c["g_cls"], c["g_box"], c["t_box"], c["t_lab"], c["t_cls"], ks, iou_threshold,
                         iou_convention)
    figures: dict = {
        "iou_convention": iou_convention,
        "iou_convention_description": describe_convention(iou_convention),
        "iou_threshold": iou_threshold,
        "annotations": about["annotations"],
        "results": about["results"],
        "n_results": about["n_results"],
        "n_images": len(samples),
        "n_dataset_images": about["n_dataset_images"],
        "n_evaluated": errs["n_images"],
        "n_without_gt": errs["n_without_gt"],
        "n_without_guesses": c["n_without_guesses"],
        "n_fewer_guesses": c["n_fewer"],
        "top_k": k_max,
    }
    for k in ks:
        figures[f"top{k}_loc_error"] = errs[f"top{k}_loc_error"]
        figures[f"top{k}_cls_error"] = errs[f"top{k}_cls_error"]
    acc, hits = gt_known_accuracy(c["gk_pred"], c["gk_gt"], iou_threshold, iou_convention)
    figures["gt_known_loc_acc"] = acc
    gk_hit = np.array([float(hits[j]) if j >= 0 else np.nan for j in c["gk_hit_at"]], np.float64)
    shares = np.array([_largest_share(s) for s in samples], np.float64)
    figures["by_size"] = _by_size(shares, {k: v for k, v in errs["per_image"].items()
                                           if k.endswith("_loc_error")}, gk_hit)
    figures["n_gt_known_missing"] = c["n_gk_missing"]
    return figures


def _mask_figures(ds, res: list, samples, groups: dict, cats, maps_dir, iou_threshold: float) -> dict:
    """GT-known mask IoU (when the results have masks) and PxAP (with saved maps) over the mask pairs."""
    figures: dict = {}
    has_segm = any(r.get("segmentation") is not None for r in res)
    if not (has_segm or maps_dir is not None):
        return figures
    pairs = gt_union_masks(ds.coco, [s.image_id for s in samples], cats)
    if pairs and maps_dir is not None:
        figures["pxap_gt_known"] = gt_known_pxap(pairs, _saved_map_lookup(maps_dir))
    if pairs and has_segm:
        def predicted(image_id, c):
            entry = _gt_known_entry(groups.get(image_id), int(c))
            return None if entry is None or entry[1] is None else rle_to_mask(entry[1])

        m = gt_known_mask_iou(pairs, predicted, iou_threshold=iou_threshold)
        m.pop("per_pair")
        figures["mask_gt_known"] = m
        figures["mask_miou_gt_known"] = m["miou"]
    return figures


def _coco_figures(ds, res: list, cats) -> dict:
    """COCO box AP, and mask AP when both the results and the ground truth have masks."""
    plain = [r for r in res if not r.get("gt_known")]
    figures = {"coco_bbox": coco_ap(plain, ds, "bbox", cat_ids=cats)}
    if any(r.get("segmentation") is not None for r in plain) and any(
            a.get("segmentation") for a in ds.coco.dataset["annotations"]):
        figures["coco_segm"] = coco_ap(plain, ds, "segm", cat_ids=cats)
    return figures
