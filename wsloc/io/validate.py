"""Ground-truth checks run when a dataset opens: every problem found, one line each.

A reader collects problems in a :class:`Problems` list (``where: field: what``, where names the
entry: ``images[3] (id 1001)``, ``annotations[12] (id 45, image 1001)``, an XML file) and
raises one :class:`wsloc.errors.DatasetError` for all of them at the end
(:meth:`Problems.raise_if_any`), listing at most :data:`MAX_LINES` and the count of the rest.

What is checked (COCO, :func:`check_coco`; VOC XML boxes, :func:`box_problems`):

* ids: image, category and annotation ids and image labels are integers. ``1001``,
  ``1001.0`` and ``"1001"`` are normalised to the int ``1001`` in place (so two images
  ``1001`` and ``"1001"`` are a duplicate, refused); ``1.5``, ``"abc"``, ``true`` are refused.
  Annotations without an ``id`` get the next free ones (pycocotools needs them).
* references: an annotation's image id and category id exist; an image's ``label`` is a category.
* sizes: ``width`` / ``height`` when given are positive integers.
* boxes: 4 finite numbers with positive width and height, inside the image (1 px tolerance)
  when its size is known.
* masks: polygons are lists of at least 3 finite (x, y) pairs; RLE ``size`` is the image's
  ``[height, width]`` and the run lengths (an uncompressed list, or COCO's compressed string,
  decoded by :func:`rle_counts`) are non-negative and sum to ``height * width``.
  (pycocotools' decoder trusts both and writes past its buffer otherwise.)
* ``area`` finite and >= 0, ``iscrowd`` 0 or 1, when given.
"""

from __future__ import annotations

import math
import re

from wsloc.errors import DatasetError

__all__ = ["MAX_LINES", "Problems", "as_int", "box_problems", "rle_counts", "check_coco"]

#: Problems listed in one error message; the rest are counted.
MAX_LINES = 20
#: How far (pixels) a ground-truth box may extend beyond the image before it is refused.
BOX_TOLERANCE = 1.0

_INT_STR = re.compile(r"^[+-]?[0-9]+$")


class Problems:
    """An ordered list of problem lines for one annotation file or folder."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, where: str, field: str | None, what: str) -> None:
        """One line ``where: field: what`` (``where: what`` without a field; ``where`` alone without either)."""
        self.lines.append(": ".join(p for p in (where, field, what) if p))

    def __len__(self) -> int:
        return len(self.lines)

    def raise_if_any(self) -> None:
        """Raise one DatasetError listing the problems (at most MAX_LINES, then "and N more")."""
        if not self.lines:
            return
        n = len(self.lines)
        shown = self.lines[:MAX_LINES]
        more = [f"  ... and {n - MAX_LINES} more"] if n > MAX_LINES else []
        raise DatasetError("\n".join([f"{self.source}: {n} problem{'s' if n > 1 else ''} in the ground truth:"]
                                     + [f"  {line}" for line in shown] + more))


def as_int(value) -> int | None:
    """An integer id from an int, an integral finite float, or a string of decimal digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and _INT_STR.match(value.strip()):
        return int(value.strip())
    return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def box_problems(box_xyxy, width: int | None = None, height: int | None = None) -> list[str]:
    """What is wrong with a ground-truth box ``(x0, y0, x1, y1)`` (continuous pixels); [] if nothing.

    ``width`` / ``height``: the image size, or None / <= 0 when unknown (no bounds check).
    """
    if not all(_finite(v) for v in box_xyxy):
        return [f"coordinates must be finite numbers, got {list(box_xyxy)}"]
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    out = []
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        out.append(f"zero or negative size (width {x1 - x0:g}, height {y1 - y0:g})")
    t = BOX_TOLERANCE
    if width and height and width > 0 and height > 0 and (
            x0 < -t or y0 < -t or x1 > width + t or y1 > height + t):
        out.append(f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}] (xyxy) lies outside the {width}x{height} image")
    return out


def rle_counts(counts: str | bytes) -> list[int]:
    """Run lengths of a COCO compressed RLE string.

    COCO's format: each count is a little-endian sequence of 5-bit groups, one per character
    ``chr(48 + group | 0x20 if more follow)``, the last group's bit 0x10 giving the sign; counts
    after the second are stored as differences to the count two places before.

    Raises:
        ValueError: a character outside the alphabet or a count cut off at the end.
    """
    s = counts.decode("ascii") if isinstance(counts, bytes) else counts
    out: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("the last count is cut off")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {s[p]!r} is not in the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def _mask_problems(seg, height, width) -> list[str]:
    """What is wrong with a COCO segmentation (polygons or RLE); [] if nothing."""
    if isinstance(seg, list):
        bad = [j for j, poly in enumerate(seg)
               if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
                       and all(_finite(v) for v in poly))]
        return [f"polygon {j} must be at least 3 finite (x, y) pairs" for j in bad[:3]]
    if not isinstance(seg, dict) or "counts" not in seg:
        return [f"must be polygons or COCO RLE {{'size': [h, w], 'counts': ...}}, got {type(seg).__name__}"]
    size = seg.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(as_int(v) and as_int(v) > 0 for v in size)):
        return [f"RLE size must be [height, width] of positive integers, got {size!r}"]
    h, w = (as_int(v) for v in size)
    out = []
    if height and width and height > 0 and width > 0 and [h, w] != [height, width]:
        out.append(f"RLE size {[h, w]} differs from the image's [{height}, {width}]")
    counts = seg["counts"]
    try:
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise ValueError("uncompressed counts must be integers")
            runs = counts
        elif isinstance(counts, (str, bytes)):
            runs = rle_counts(counts)
        else:
            raise ValueError(f"counts must be a string or a list, got {type(counts).__name__}")
    except (ValueError, UnicodeDecodeError) as exc:
        return out + [f"RLE counts: {exc}"]
    if any(c < 0 for c in runs):
        out.append("RLE counts has a negative run length")
    elif sum(runs) != h * w:
        out.append(f"RLE counts cover {sum(runs)} pixels, not {h}x{w} = {h * w}")
    return out


def _normalise_id(entry: dict, key: str, problems: Problems, where: str) -> int | None:
    v = as_int(entry.get(key))
    if v is None:
        problems.add(where, key, f"must be an integer, got {entry.get(key)!r}")
        return None
    entry[key] = v
    return v


def _check_categories(data: dict, problems: Problems) -> dict[int, int]:
    """Category id -> its position; ids made ints, missing and duplicate ids recorded."""
    cats: dict[int, int] = {}
    for k, c in enumerate(data["categories"]):
        where = f"categories[{k}]"
        if not isinstance(c, dict) or "id" not in c:
            problems.add(where, None, "lacks 'id'")
            continue
        cid = _normalise_id(c, "id", problems, where)
        if cid is not None:
            if cid in cats:
                problems.add(f"{where} (id {cid})", "id", f"duplicate of categories[{cats[cid]}]")
            cats.setdefault(cid, k)
    return cats


def _check_image_fields(im: dict, where: str, cats: dict, problems: Problems) -> tuple:
    """Normalise an image's ``width``, ``height`` and ``label``; returns its (width, height) (None: unknown)."""
    size = []
    for key in ("width", "height"):
        v = im.get(key)
        if v is None:
            size.append(None)
            continue
        n = as_int(v)
        if n is None or n <= 0:
            problems.add(where, key, f"must be a positive integer, got {v!r}")
            size.append(None)
        else:
            im[key] = n
            size.append(n)
    if im.get("label") is not None:
        label = as_int(im["label"])
        if label is None:
            problems.add(where, "label", f"must be an integer class id, got {im['label']!r}")
        elif cats and label not in cats:
            problems.add(where, "label", f"unknown category id {label}")
        else:
            im["label"] = label
    return tuple(size)


def _check_images(data: dict, cats: dict, problems: Problems) -> tuple[dict[int, int], dict[int, tuple]]:
    """(image id -> position, image id -> (width, height)); ids made ints, problems recorded."""
    images: dict[int, int] = {}
    sizes: dict[int, tuple] = {}
    for k, im in enumerate(data["images"]):
        where = f"images[{k}]"
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            problems.add(where, None, "lacks 'id' or 'file_name'")
            continue
        iid = _normalise_id(im, "id", problems, where)
        if iid is None:
            continue
        where = f"images[{k}] (id {iid})"
        if iid in images:
            problems.add(where, "id", f"duplicate of images[{images[iid]}]")
            continue
        images[iid] = k
        sizes[iid] = _check_image_fields(im, where, cats, problems)
    return images, sizes


def _check_annotation_shape(a: dict, where: str, size: tuple, problems: Problems) -> None:
    """The bbox, segmentation, area and iscrowd of one annotation against its image's (width, height)."""
    w, h = size
    bbox = a.get("bbox")
    if bbox is None:
        if not a.get("segmentation"):
            problems.add(where, "bbox", "neither bbox nor segmentation given")
    elif not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        problems.add(where, "bbox", f"must be [x, y, width, height], got {bbox!r}")
    else:
        xyxy = (bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]) if all(
            _finite(v) for v in bbox) else tuple(bbox)
        for what in box_problems(xyxy, w, h):
            problems.add(where, "bbox", what.replace("coordinates", "values"))
    seg = a.get("segmentation")
    if seg:
        for what in _mask_problems(seg, h, w):
            problems.add(where, "segmentation", what)
    if "area" in a and not (_finite(a["area"]) and a["area"] >= 0):
        problems.add(where, "area", f"must be a finite number >= 0, got {a['area']!r}")
    if "iscrowd" in a and a["iscrowd"] not in (0, 1):
        problems.add(where, "iscrowd", f"must be 0 or 1, got {a['iscrowd']!r}")


def _check_annotation(k: int, a, ids: dict, missing_ids: list, images: dict, sizes: dict, cats: dict,
                      problems: Problems) -> None:
    """Validate and normalise ``annotations[k]``; its id goes into ``ids`` (or it into ``missing_ids``)."""
    where = f"annotations[{k}]"
    if not isinstance(a, dict):
        problems.add(where, None, "is not an object")
        return
    if "id" in a:
        aid = _normalise_id(a, "id", problems, where)
        if aid is not None:
            if aid in ids:
                problems.add(f"{where} (id {aid})", "id", f"duplicate of annotations[{ids[aid]}]")
            ids.setdefault(aid, k)
            where = f"annotations[{k}] (id {aid})"
    else:
        missing_ids.append(a)
    if "image_id" not in a:
        problems.add(where, "image_id", "missing")
        return
    iid = _normalise_id(a, "image_id", problems, where)
    if iid is None:
        return
    where = f"{where[:-1]}, image {iid})" if where.endswith(")") else f"{where} (image {iid})"
    if iid not in images:
        problems.add(where, "image_id", f"unknown image id {iid}")
    if "category_id" not in a:
        problems.add(where, "category_id", "missing")
    else:
        cid = _normalise_id(a, "category_id", problems, where)
        if cid is not None and cid not in cats:
            problems.add(where, "category_id", f"unknown category id {cid}")
    _check_annotation_shape(a, where, sizes.get(iid, (None, None)), problems)


def check_coco(data: dict, source: str) -> None:
    """Validate and normalise a COCO dict in place (ids become ints; missing annotation ids filled).

    ``data`` has lists ``images``, ``annotations``, ``categories`` (checked by the caller).

    Raises:
        DatasetError: every problem found, one line each (see the module doc).
    """
    problems = Problems(source)
    cats = _check_categories(data, problems)
    images, sizes = _check_images(data, cats, problems)
    ann_ids: dict[int, int] = {}
    missing_ids: list = []
    for k, a in enumerate(data["annotations"]):
        _check_annotation(k, a, ann_ids, missing_ids, images, sizes, cats, problems)
    problems.raise_if_any()
    next_id = max(ann_ids, default=0) + 1
    for a in missing_ids:
        a["id"] = next_id
        next_id += 1
