"""COCO-style results files: what the pipeline writes and ``wsloc evaluate`` reads.

A results file is a JSON list with one entry per guess::

    {"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float,
     "rank": int (optional), "segmentation": {"size": [h, w], "counts": str} (optional),
     "gt_known": bool (optional)}

* ``bbox`` is COCO ``[x, y, w, h]`` in the image's pixels; internally ``[x, y, x + w, y + h]``.
  ``w`` and ``h`` must be >= 0.
* Order of an image's guesses: by ``rank`` (ascending) when the image's entries carry it,
  else by ``score`` descending (ties keep file order). Top-1 uses the first, top-5 the first five.
* ``gt_known: true`` marks a guess made from the ground-truth class's map for the GT-known
  metric; such entries are *not* guesses for the top-k errors or COCO AP.
* ``segmentation``: COCO RLE (compressed ``counts`` string, or uncompressed list) of the
  image's size.

What the scorer does with a file that does not play by these rules:

* refused (:class:`wsloc.errors.DatasetError`): non-finite (NaN / infinity) scores or box
  values, negative box sizes, non-integer ids, unknown image / category ids, and a JSON nested
  too deeply to read.
* repeated classes: the ILSVRC top-k errors and GT-known count each class **once per image**,
  at its best-ranked guess; the later guesses of a class already guessed are dropped (counted
  in ``ImageGuesses.repeated``, reported as a warning). The ILSVRC task asks for up to five
  *class* guesses with one box each; five copies of one class with five nested boxes would
  otherwise buy five tries at the box and score better than an honest file (on
  imagenet-val-1300 with Lite0, ``scripts/gaming_results.py``: 40.1 % top-5 localization error
  for the top-1 class with five nested boxes, against 53.5 % for the top-5 classes with
  whole-image boxes; counted once, the gaming file scores 59.4 %, its top-1 figure). The file is
  not refused because a COCO detection file
  rightly holds several boxes of one class per image, and COCO AP (which counts every entry,
  the extra ones as false positives unless they match another object) is computed from it.
* exact duplicate entries: counted (``ImageGuesses.duplicates``) and reported as a warning.
* boxes beyond the image: clipped to it (:func:`clip_to_images`) for every figure; boxes
  extending more than 1 px outside are counted and reported as a warning. Clipping cannot
  help a file: the clipped box is one it could have given itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..errors import DatasetError

__all__ = ["load_results", "validate_results", "write_results", "make_result", "ImageGuesses",
           "group_guesses", "clip_to_images", "scoring_warnings"]


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _name(source) -> str:
    return source if isinstance(source, str) else "results"


def load_results(source, dataset=None) -> list[dict]:
    """Read and validate a results file (path) or list of result dicts.

    Args:
        source: path of a JSON results file, or a list of dicts.
        dataset: optional :class:`wsloc.io.CocoDataset` to check image / category ids against.

    Raises:
        DatasetError: missing file, invalid JSON, malformed entries, unknown ids (named).
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: results file not found")
        try:
            with open(path, "r", encoding="utf-8") as f:
                results = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: not a results JSON file ({exc})") from exc
        except RecursionError:
            raise DatasetError(f"{path}: not a results JSON file (nested too deeply; expected a list of "
                               "result objects)") from None
        name = path
    else:
        results, name = source, "results"
    return validate_results(results, dataset, name)


def validate_results(results, dataset=None, name: str = "results") -> list[dict]:
    """Check the structure of result entries (and their ids against ``dataset``); return them.

    The returned entries are the input dicts (not copied). See the module doc for the format.
    """
    if not isinstance(results, list):
        raise DatasetError(f"{name}: a results file must hold a JSON list of results, "
                           f"not {type(results).__name__}")
    sizes = None
    if dataset is not None:
        sizes = {int(im["id"]): (im.get("height"), im.get("width")) for im in dataset.coco.dataset["images"]}
        cats = set(int(c) for c in dataset.categories)
    bad_images: list = []
    bad_cats: list = []
    for k, r in enumerate(results):
        where = f"{name}: results[{k}]"
        if not isinstance(r, dict):
            raise DatasetError(f"{where} is not an object")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise DatasetError(f"{where} lacks {key!r}")
        for key in ("image_id", "category_id"):
            if not isinstance(r[key], int) or isinstance(r[key], bool):
                raise DatasetError(f"{where}: {key} must be an integer, got {r[key]!r}")
        b = r["bbox"]
        if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(_num(v) for v in b):
            raise DatasetError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {b!r}")
        if b[2] < 0 or b[3] < 0:
            raise DatasetError(f"{where}: bbox {list(b)} has negative size (w={b[2]}, h={b[3]})")
        if not _num(r["score"]):
            raise DatasetError(f"{where}: score must be a finite number, got {r['score']!r}")
        if "rank" in r and (not isinstance(r["rank"], int) or isinstance(r["rank"], bool)):
            raise DatasetError(f"{where}: rank must be an integer, got {r['rank']!r}")
        if "gt_known" in r and not isinstance(r["gt_known"], bool):
            raise DatasetError(f"{where}: gt_known must be true or false, got {r['gt_known']!r}")
        seg = r.get("segmentation")
        if seg is not None:
            if not (isinstance(seg, dict) and "counts" in seg and "size" in seg
                    and isinstance(seg["size"], (list, tuple)) and len(seg["size"]) == 2):
                raise DatasetError(f"{where}: segmentation must be COCO RLE {{'size': [h, w], 'counts': ...}}")
        if sizes is not None:
            if r["image_id"] not in sizes:
                bad_images.append(r["image_id"])
            elif seg is not None:
                h, w = sizes[r["image_id"]]
                if h and w and [int(s) for s in seg["size"]] != [int(h), int(w)]:
                    raise DatasetError(f"{where}: segmentation size {list(seg['size'])} differs from "
                                       f"image {r['image_id']}'s size [{h}, {w}]")
            if r["category_id"] not in cats:
                bad_cats.append(r["category_id"])
    if bad_images:
        ids = sorted(set(bad_images))
        raise DatasetError(f"{name}: {len(bad_images)} results refer to image ids not in the annotations: "
                           f"{ids[:10]}{' ...' if len(ids) > 10 else ''}")
    if bad_cats:
        ids = sorted(set(bad_cats))
        raise DatasetError(f"{name}: {len(bad_cats)} results refer to category ids not in the annotations: "
                           f"{ids[:10]}{' ...' if len(ids) > 10 else ''}")
    return results


def make_result(image_id: int, category_id: int, box_xyxy, score: float, rank: int | None = None,
                segmentation: dict | None = None, gt_known: bool | None = None) -> dict:
    """One results entry from an xyxy box (continuous pixel coordinates)."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box_xyxy, np.float64).reshape(4))
    r = {"image_id": int(image_id), "category_id": int(category_id),
         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
    if rank is not None:
        r["rank"] = int(rank)
    if segmentation is not None:
        r["segmentation"] = segmentation
    if gt_known is not None:
        r["gt_known"] = bool(gt_known)
    return r


def write_results(path, results: Iterable[dict]) -> None:
    """Write results entries as a JSON list (validated for structure first)."""
    results = validate_results(list(results), None, os.fspath(path))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f)


@dataclass
class ImageGuesses:
    """One image's guesses in ranking order (see module doc).

    Attributes: ``classes`` int64 ``[K]`` (distinct), ``boxes`` float64 ``[K, 4]`` xyxy,
    ``scores`` float64 ``[K]``, ``segmentations`` list of RLE dicts or None, ``gt_known`` list
    of the entries flagged ``gt_known`` (dicts, file order), ``repeated`` the number of
    guesses dropped because their class was guessed at a better rank, ``duplicates`` the
    number of entries (of any kind) that exactly repeat an earlier entry of the image.
    """

    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segmentations: list = field(default_factory=list)
    gt_known: list = field(default_factory=list)
    repeated: int = 0
    duplicates: int = 0


def _xyxy(bbox) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def group_guesses(results: list[dict], name: str = "results") -> dict[int, ImageGuesses]:
    """Group validated results by image id, each image's guesses in ranking order.

    Each class is kept once, at its best-ranked guess (see the module doc: repeated classes).

    Raises:
        DatasetError: an image whose guesses mix entries with and without ``rank``.
    """
    per: dict[int, list[dict]] = {}
    flagged: dict[int, list[dict]] = {}
    for r in results:
        (flagged if r.get("gt_known") else per).setdefault(r["image_id"], []).append(r)
    out: dict[int, ImageGuesses] = {}
    for image_id in set(per) | set(flagged):
        entries = per.get(image_id, [])
        ranked = ["rank" in r for r in entries]
        if any(ranked) and not all(ranked):
            raise DatasetError(f"{name}: image {image_id} mixes guesses with and without 'rank'")
        if entries and ranked[0]:
            entries = sorted(entries, key=lambda r: r["rank"])
        else:
            entries = sorted(entries, key=lambda r: -r["score"])
        seen_keys = set()
        duplicates = 0
        for r in per.get(image_id, []) + flagged.get(image_id, []):
            key = json.dumps(r, sort_keys=True, default=str)
            duplicates += key in seen_keys
            seen_keys.add(key)
        seen: set = set()
        first = [r for r in entries if not (r["category_id"] in seen or seen.add(r["category_id"]))]
        repeated = len(entries) - len(first)
        entries = first
        out[image_id] = ImageGuesses(
            classes=np.array([r["category_id"] for r in entries], np.int64),
            boxes=np.array([_xyxy(r["bbox"]) for r in entries], np.float64).reshape(-1, 4),
            scores=np.array([r["score"] for r in entries], np.float64),
            segmentations=[r.get("segmentation") for r in entries],
            gt_known=flagged.get(image_id, []),
            repeated=repeated,
            duplicates=duplicates,
        )
    return out


#: How far (pixels) a guessed box may extend beyond its image before it is reported.
OUTSIDE_TOLERANCE = 1.0


def clip_to_images(results: list[dict], sizes: dict) -> tuple[list[dict], int]:
    """Clip each entry's box to its image.

    Args:
        results: validated entries.
        sizes: image id -> (height, width); unknown sizes (None, <= 0) or images not listed are
            left alone.

    Returns:
        (entries, n_outside): the entries in order, a clipped copy for each whose box reached
        beyond the image (the input dicts are not changed), and how many of those extended more
        than :data:`OUTSIDE_TOLERANCE` pixels outside.
    """
    out, n_outside = [], 0
    for r in results:
        h, w = sizes.get(r["image_id"], (None, None))
        if not (h and w and h > 0 and w > 0):
            out.append(r)
            continue
        x0, y0, x1, y1 = _xyxy(r["bbox"])
        c0, c1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        d0, d1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
        if (c0, d0, c1, d1) == (x0, y0, x1, y1):
            out.append(r)
            continue
        t = OUTSIDE_TOLERANCE
        n_outside += x0 < -t or y0 < -t or x1 > w + t or y1 > h + t
        out.append(dict(r, bbox=[c0, d0, c1 - c0, d1 - d0]))
    return out, n_outside


def scoring_warnings(groups: dict[int, ImageGuesses], n_outside: int = 0, name: str = "results") -> list[str]:
    """Warning lines about what the scorer changed or ignored (empty when nothing)."""
    out = []
    rep = [g.repeated for g in groups.values() if g.repeated]
    if rep:
        out.append(f"{name}: {len(rep)} images repeat a class among their guesses ({sum(rep)} repeats); "
                   "the ILSVRC and GT-known figures count each class once, at its best-ranked guess")
    dup = [g.duplicates for g in groups.values() if g.duplicates]
    if dup:
        out.append(f"{name}: {sum(dup)} entries in {len(dup)} images are exact duplicates of an earlier entry")
    if n_outside:
        out.append(f"{name}: {n_outside} boxes extend more than {OUTSIDE_TOLERANCE:g} px beyond their image; "
                   "they are scored clipped to it")
    return out
