"""The PNG picture ``wsloc localize --overlays N`` writes per image, with the ground truth when known.

One panel per localized class: the image, that class's saliency heatmap, the mask outline and our
box (yellow, :data:`wsloc.viz.BOX_COLOR`); when the dataset has ground truth, its boxes in green
(:data:`wsloc.viz.GT_COLOR`) labelled with their class names, and the IoU of our box in the
panel's title. A legend band under the panels says which colour is which and which IoU
convention the numbers use (:mod:`wsloc.evaluate.iou`; the devkit's by default, as in the
evaluation table).
"""

from __future__ import annotations

import numpy as np

from ..evaluate.iou import box_iou, describe_convention

__all__ = ["sample_gt", "best_iou", "render_overlay"]


def sample_gt(sample, categories: dict | None) -> dict | None:
    """The ground truth an overlay draws, from a :class:`wsloc.io.Sample`: ``{"boxes": float64
    [G, 4] xyxy, "labels": int64 [G], "label": int | None, "names": {label: name}}``; None when
    the sample has neither boxes nor an image-level class (image folders, image lists)."""
    boxes = np.asarray(sample.boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(sample.labels, np.int64).reshape(-1)
    if not len(boxes) and sample.label is None:
        return None
    cats = categories or {}
    wanted = set(int(v) for v in labels) | ({int(sample.label)} if sample.label is not None else set())
    return {"boxes": boxes, "labels": labels, "label": None if sample.label is None else int(sample.label),
            "names": {c: str(cats.get(c, c)) for c in wanted}}


def best_iou(box, gt: dict | None, convention: str = "devkit") -> float | None:
    """IoU of one xyxy ``box`` with the ground truth: the best over the boxes of the image's class
    (``gt["label"]``) when it has some, else over all its boxes; None without ground-truth boxes."""
    if gt is None or box is None or not len(gt["boxes"]):
        return None
    boxes = gt["boxes"]
    if gt.get("label") is not None and (gt["labels"] == gt["label"]).any():
        boxes = boxes[gt["labels"] == gt["label"]]
    return float(box_iou(np.asarray(box, np.float64).reshape(1, 4), boxes, convention).max())


def _legend(width: int, gt: dict | None, convention: str) -> np.ndarray:
    import cv2

    from .. import viz

    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    if gt is None:
        items = [(viz.BOX_COLOR, "our box"), (viz.MASK_COLOR, "mask"), (None, "no ground truth")]
    else:
        cls = gt["names"].get(gt["label"], "") if gt.get("label") is not None else ""
        items = [(viz.BOX_COLOR, "our box"), (viz.GT_COLOR, f"ground truth{': ' + cls if cls else ''}"),
                 (viz.MASK_COLOR, "mask"), (None, f"IoU: {convention} convention")]
    band = np.full((22, width, 3), 255, np.uint8)
    x = 4
    for colour, text in items:
        if colour is not None:
            cv2.rectangle(band, (x, 6), (x + 12, 16), colour, -1)
            cv2.rectangle(band, (x, 6), (x + 12, 16), (0, 0, 0), 1)
            x += 16
        cv2.putText(band, text, (x, 15), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, font, scale, 1)[0][0] + 14
    return band


def render_overlay(image, maps, loc, gt: dict | None = None, max_side: int = 320,
                   convention: str = "devkit") -> np.ndarray:
    """One row per image: per localized class, image + saliency heatmap + mask outline + box.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        maps: float ``[K, h, w]`` saliency maps of ``loc.classes`` in order.
        loc: a :class:`wsloc.localizer.ImageLocalization` (its ``classes`` with mask, box, rank, name, score).
        gt: :func:`sample_gt` of the image, or None.
        max_side: the panels are shrunk so that their longer side is at most this.
        convention: IoU convention of the titles (``"devkit"`` or ``"continuous"``).

    Returns:
        uint8 ``[H', W', 3]`` RGB picture.
    """
    import cv2

    from .. import viz

    describe_convention(convention)  # refuses an unknown one
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    small = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA) if s < 1 else image
    gt_boxes = None if gt is None else gt["boxes"] * s
    pics, titles = [], []
    for k, c in enumerate(loc.classes):
        mask = c.mask if s == 1 else cv2.resize(c.mask.astype(np.uint8), (size[1], size[0]),
                                                interpolation=cv2.INTER_NEAREST).astype(bool)
        pic = viz.overlay(small, maps[k], mask, np.asarray(c.box)[None] * s, gt_boxes=gt_boxes)
        if gt is not None:
            scale = max(0.35, min(size) / 600)
            for box, label in zip(gt_boxes, gt["labels"]):
                px = viz.box_pixels(box, pic.shape)
                if px:
                    viz.draw_label(pic, gt["names"].get(int(label), str(label)), px[0], px[3], viz.GT_COLOR, scale)
        pics.append(pic)
        title = f"{c.rank}. {c.name if c.name is not None else c.class_id} {c.score:.2f}"
        iou = best_iou(c.box, gt, convention)
        if iou is not None:
            title += f" IoU {iou:.2f}"
        titles.append(title)
    picture = viz.grid([pics], col_titles=titles)
    return np.concatenate([picture, _legend(picture.shape[1], gt, convention)], axis=0)
