"""Printing and saving evaluation figures: a text table and a JSON file."""

from __future__ import annotations

import json
import math
import os

import numpy as np

__all__ = ["FIGURE_ROWS", "pct", "format_table", "format_size_table", "format_mask_table", "write_figures", "to_jsonable"]

#: The headline figures, in the order the reports list them: (key in the figures dict, label).
FIGURE_ROWS = [
    ("top1_loc_error", "Top-1 localization error (ILSVRC CLS-LOC)"),
    ("top5_loc_error", "Top-5 localization error (ILSVRC CLS-LOC)"),
    ("top1_cls_error", "Top-1 classification error"),
    ("top5_cls_error", "Top-5 classification error"),
    ("gt_known_loc_acc", "GT-known localization accuracy"),
    ("mask_miou_gt_known", "Mask mean IoU (GT-known guess)"),
]


def pct(v) -> str:
    """A fraction as ``" 12.34 %"`` (6.2f); ``"n/a"`` for None, NaN or a negative value (COCOeval's "no data")."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v < 0:  # COCOeval's "no data"
        return "n/a"
    return f"{100.0 * v:6.2f} %"


def format_table(figures: dict) -> str:
    """The figures of :func:`wsloc.evaluate.evaluate_results` as a text table (percentages)."""
    n, n_all = figures.get("n_images"), figures.get("n_dataset_images")
    scored = f"{n} scored of the dataset's {n_all} (only the images this run processed)" \
        if n_all is not None and n_all != n else f"{n}"
    lines = [
        f"IoU convention: {figures.get('iou_convention_description', figures.get('iou_convention'))}; "
        f"a box is right at IoU >= {figures.get('iou_threshold', 0.5)}",
        f"images: {scored} (evaluated {figures.get('n_evaluated')}, "
        f"without ground truth {figures.get('n_without_gt')}, without guesses "
        f"{figures.get('n_without_guesses')} [counted as errors], fewer than "
        f"{figures.get('top_k', 5)} guesses {figures.get('n_fewer_guesses')}); results: {figures.get('n_results')}",
        "",
    ]
    width = max(len(label) for _, label in FIGURE_ROWS) + 2
    for key, label in FIGURE_ROWS:
        if key in figures:
            lines.append(f"{label:<{width}}{pct(figures[key])}")
    if "n_gt_known_missing" in figures:
        lines.append(f"{'  images without a guess for the GT class':<{width}}{figures['n_gt_known_missing']}")
    for key, title in (("coco_bbox", "COCO box"), ("coco_segm", "COCO mask")):
        if key in figures:
            c = figures[key]
            lines.append(f"{title + ' AP [.50:.95] / AP50 / AP75 (COCOeval, continuous IoU)':<{width}}"
                         f"{pct(c['AP'])} / {pct(c['AP50'])} / {pct(c['AP75'])}")
    if figures.get("by_size"):
        lines += ["", format_size_table(figures)]
    if figures.get("mask_gt_known"):
        lines += ["", format_mask_table(figures)]
    if figures.get("pxap_gt_known"):
        lines.append(_pxap_line(figures))
    lines += [f"warning: {w}" for w in figures.get("warnings") or ()]
    return "\n".join(lines)


def format_size_table(figures: dict) -> str:
    """The ``by_size`` figures (object size = largest ground-truth box's share of the image) as text."""
    rows = figures["by_size"]
    keys = [k for k in ("top1_loc_error", "top5_loc_error", "gt_known_loc_acc")
            if any(k in r for r in rows.values())]
    heads = {"top1_loc_error": "top-1 loc err", "top5_loc_error": "top-5 loc err", "gt_known_loc_acc": "GT-known"}
    out = ["By object size (largest ground-truth box / image area):",
           f"{'':<18}{'images':>7}" + "".join(f"{heads[k]:>15}" for k in keys)]
    for name, r in rows.items():
        out.append(f"{name:<18}{r['n']:>7}" + "".join(f"{pct(r.get(k)):>15}" for k in keys))
    return "\n".join(out)


def format_mask_table(figures: dict) -> str:
    """The GT-known mask figures (``mask_gt_known``: one row per size bucket of the ground-truth
    union's share of the image) as text."""
    m = figures["mask_gt_known"]
    cats = figures.get("mask_categories")
    which = f"{len(cats)} mapped categories" if cats is not None else "every category"
    out = [f"GT-known masks (each image's annotated category vs the union of its instance masks; {which}; "
           f"{m.get('n_missing', 0)} pairs without a mask count as IoU 0):",
           f"{'':<18}{'pairs':>7}{'mIoU':>12}{'IoU >= 0.5':>12}"]
    rows = [("all", {"n": m["n_pairs"], "miou": m["miou"], "iou50": m["iou50"]})] + list(m["by_size"].items())
    for name, r in rows:
        out.append(f"{name:<18}{r['n']:>7}{pct(r.get('miou')):>12}{pct(r.get('iou50')):>12}")
    return "\n".join(out)


def _pxap_line(figures: dict) -> str:
    px = figures["pxap_gt_known"]
    return (f"PxAP of the saved maps on the GT-known mask pairs: {pct(px['pxap'])} ({px['n_pairs']} pairs; "
            f"{px['n_without_map']} without a saved map of their category, left out)")


def to_jsonable(obj):
    """numpy scalars/arrays -> Python; NaN / infinity -> None; dict keys -> str."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_figures(path, figures: dict) -> None:
    """Write figures as JSON (see :func:`to_jsonable`)."""
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_jsonable(figures), f, indent=2)
        f.write("\n")
