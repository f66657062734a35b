"""Pictures people can look at: saliency overlays, masks, boxes, and comparison grids.

Plain OpenCV/numpy drawing (no matplotlib), so the pipeline can afford one per image.
Every image here is ``uint8 [H, W, 3]`` RGB. Boxes are float xyxy in continuous pixel
coordinates (a box covering pixel columns a..b has x0 = a, x1 = b + 1): they are drawn on
the border pixels ``a`` and ``b``.

Colours: predicted boxes and their labels yellow, ground-truth boxes green, the mask's outline
cyan; the heatmap is OpenCV's JET colormap (blue = low, red = high).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from .normalize import normalize_maps

BOX_COLOR = (255, 220, 0)
GT_COLOR = (0, 230, 0)
MASK_COLOR = (0, 255, 255)
TEXT_COLOR = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def heatmap(saliency: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """float ``[h, w]`` saliency -> uint8 ``[H, W, 3]`` JET colours, resized (bilinear) to ``size`` = (H, W).

    The map is min-max normalised first (:func:`wsloc.normalize.normalize_maps`; NaN and
    infinities count as 0; a constant map is all blue)."""
    s = np.asarray(saliency)
    if s.ndim != 2:
        raise ValueError(f"expected a saliency map [h, w], got shape {s.shape}")
    s = normalize_maps(np.nan_to_num(s.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), "minmax")
    if size is not None and s.shape != tuple(size):
        s = cv2.resize(s, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    u8 = np.clip(np.rint(s * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _thickness(shape) -> int:
    return max(1, int(round(min(shape[:2]) / 250)))


def box_pixels(box, shape) -> tuple[int, int, int, int] | None:
    """xyxy continuous box -> inclusive pixel corners ``(a, c, b, d)`` (columns a..b, rows c..d) clipped
    to an image of ``shape`` ``(H, W, ...)``, or None if nothing is left (the pixels a box is drawn on)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    a, b = int(np.floor(max(x0, 0))), int(np.ceil(min(x1, w))) - 1
    c, d = int(np.floor(max(y0, 0))), int(np.ceil(min(y1, h))) - 1
    return None if b < a or d < c else (a, c, b, d)


def draw_label(img: np.ndarray, text: str, x: int, y: int, color, scale: float) -> None:
    """Write ``text`` in place on ``img`` (uint8 RGB) on a ``color`` band just above pixel ``(x, y)``
    (inside, below it, when there is no room above), kept within the image; font scale ``scale``."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    h, w = img.shape[:2]
    x = min(max(x, 0), max(w - tw - 2, 0))
    top = y - th - base - 2
    if top < 0:  # no room above the box: put it inside
        top = y + 1
    cv2.rectangle(img, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
    cv2.putText(img, text, (x + 1, top + th + 1), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)


def overlay(image: np.ndarray, saliency: np.ndarray | None = None, mask: np.ndarray | None = None,
            boxes: np.ndarray | None = None, labels: Sequence[str] | None = None,
            gt_boxes: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """Draw what the localizer found on a copy of ``image``.

    Args:
        image: uint8 ``[H, W, 3]`` RGB (a ``[H, W]`` gray image is expanded).
        saliency: float ``[h, w]``, any range, any resolution (resized to the image); blended
            as ``(1 - alpha) * image + alpha * heatmap``.
        mask: bool ``[H, W]``: its outline is drawn.
        boxes: ``[M, 4]`` predicted boxes (xyxy), with ``labels[i]`` (e.g. class names) on top.
        gt_boxes: ``[G, 4]`` ground-truth boxes, drawn in another colour.
        alpha: heatmap weight in [0, 1].

    Returns:
        uint8 ``[H, W, 3]``; ``image`` itself is not modified.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {img.dtype} {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = np.ascontiguousarray(img.copy())
    h, w = out.shape[:2]
    if saliency is not None:
        heat = heatmap(saliency, (h, w))
        out = cv2.addWeighted(out, 1.0 - alpha, heat, alpha, 0.0)
    t = _thickness(out.shape)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (h, w):
            raise ValueError(f"mask {m.shape} does not match the image {(h, w)}")
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, MASK_COLOR, t)
    scale = max(0.35, min(h, w) / 600)
    for box in np.asarray(gt_boxes if gt_boxes is not None else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4):
        px = box_pixels(box, out.shape)
        if px:
            cv2.rectangle(out, px[:2], px[2:], GT_COLOR, t)
    boxes = np.asarray(boxes if boxes is not None else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4)
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
    for i, box in enumerate(boxes):
        px = box_pixels(box, out.shape)
        if px:
            cv2.rectangle(out, px[:2], px[2:], BOX_COLOR, t)
            if labels is not None and labels[i]:
                draw_label(out, str(labels[i]), px[0], px[1], BOX_COLOR, scale)
    return out


def to_rgb(a: np.ndarray) -> np.ndarray:
    """Any picture -> uint8 ``[H, W, 3]``: uint8 RGB as is, gray uint8 repeated, float ``[H, W]``
    as a heatmap, float ``[H, W, 3]`` taken as values in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2) if a.dtype == np.uint8 else heatmap(a)
    if a.ndim == 3 and a.shape[2] == 3:
        if a.dtype == np.uint8:
            return a
        return np.clip(np.rint(np.asarray(a, np.float64) * 255), 0, 255).astype(np.uint8)
    raise ValueError(f"cannot show an array of shape {a.shape} as a picture")


def _text_band(texts: Sequence[str], widths: Sequence[int], height: int, scale: float) -> np.ndarray:
    band = np.full((height, int(sum(widths)), 3), 255, np.uint8)
    x = 0
    for text, w in zip(texts, widths):
        t = str(text)
        while t and cv2.getTextSize(t, _FONT, scale, 1)[0][0] > w - 4:
            t = t[:-1]
        (tw, th), _ = cv2.getTextSize(t, _FONT, scale, 1)
        cv2.putText(band, t, (x + max((w - tw) // 2, 2), (height + th) // 2), _FONT, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
        x += w
    return band


def grid(images: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str] | None = None,
         col_titles: Sequence[str] | None = None, cell: tuple[int, int] | None = None,
         gap: int = 2) -> np.ndarray:
    """Tile pictures: ``images[r][c]`` is row ``r`` (e.g. an image), column ``c`` (e.g. a method).

    Each picture (anything :func:`to_rgb` accepts; ``None`` leaves the cell blank) is resized
    to ``cell`` = (height, width), default the size of the first picture; rows may be ragged.
    Titles are drawn in white bands above the columns and left of the rows.

    Returns:
        uint8 ``[H, W, 3]`` RGB.
    """
    rows = [list(r) for r in images]
    if not rows or not any(x is not None for r in rows for x in r):
        raise ValueError("grid needs at least one picture")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"{len(row_titles)} row titles for {len(rows)} rows")
    ncols = max(len(r) for r in rows)
    if col_titles is not None and len(col_titles) != ncols:
        raise ValueError(f"{len(col_titles)} column titles for {ncols} columns")
    if cell is None:
        cell = to_rgb(next(x for r in rows for x in r if x is not None)).shape[:2]
    ch, cw = int(cell[0]), int(cell[1])
    scale = max(0.35, min(0.6, cw / 300))
    band = int(cv2.getTextSize("Ag", _FONT, scale, 1)[0][1] * 2 + 8)
    left = 0
    if row_titles is not None:
        left = max(cv2.getTextSize(str(t), _FONT, scale, 1)[0][0] for t in row_titles) + 10
    top = band if col_titles is not None else 0
    H = top + len(rows) * ch + (len(rows) - 1) * gap
    W = left + ncols * cw + (ncols - 1) * gap
    out = np.full((H, W, 3), 255, np.uint8)
    if col_titles is not None:
        out[:band, left:] = _text_band(col_titles, [cw + gap] * (ncols - 1) + [cw], band, scale)
    for r, row in enumerate(rows):
        y = top + r * (ch + gap)
        if row_titles is not None:
            (tw, th), _ = cv2.getTextSize(str(row_titles[r]), _FONT, scale, 1)
            cv2.putText(out, str(row_titles[r]), (4, y + (ch + th) // 2), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
        for c, pic in enumerate(row):
            if pic is None:
                continue
            p = to_rgb(pic)
            if p.shape[:2] != (ch, cw):
                p = cv2.resize(p, (cw, ch), interpolation=cv2.INTER_AREA if p.shape[0] > ch else cv2.INTER_LINEAR)
            x = left + c * (cw + gap)
            out[y:y + ch, x:x + cw] = p
    return out


def save_png(path: str | os.PathLike, image: np.ndarray) -> str:
    """Write a uint8 RGB (or gray) image as PNG, creating the parent folder; returns the path.

    Raises OSError when the file cannot be written.
    """
    path = os.fspath(path)
    img = to_rgb(image) if np.asarray(image).dtype != np.uint8 or np.asarray(image).ndim == 3 else np.asarray(image)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    bgr = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return path
