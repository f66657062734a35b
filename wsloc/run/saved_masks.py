"""Masks saved by ``wsloc localize --save-masks``: one PNG per image and class.

``results.json`` already holds every mask as COCO compressed RLE (its ``segmentation`` field), the
form COCOeval and ``wsloc evaluate`` read. ``--save-masks`` adds the same masks as pictures that any
image tool opens (to look at, or to feed another program without pycocotools):

``OUT/masks/<image_id>_<category_id>.png``: 8-bit greyscale, the image's own height and width, 255 on
the object, 0 elsewhere. ``category_id`` is the result's (a dataset category with a class map, else the
classifier class). A run's results name each (image, category) at most once, so the name is unique;
every shard of a sharded run writes into the top folder's ``masks/``. Files are written atomically
(:func:`wsloc.run.outputs.atomic_write`) by the segmentation job, before it hands its record back, so every
line on disk has its masks and a resumed run writes those of the images it still does.

``wsloc evaluate RESULTS ANNOTATIONS --masks RUN_DIR`` scores these PNGs instead of the results'
RLE (:func:`apply_saved_masks`): the same figures when the files are the run's own.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from ..errors import DatasetError

__all__ = ["MASKS", "mask_path", "save_mask", "load_mask", "has_saved_masks",
           "iter_saved_masks", "apply_saved_masks"]

MASKS = "masks"


def mask_path(out_dir: str, image_id: int, category_id: int) -> str:
    """``out_dir/masks/<image_id>_<category_id>.png``."""
    return os.path.join(out_dir, MASKS, f"{int(image_id)}_{int(category_id)}.png")


def save_mask(out_dir: str, image_id: int, category_id: int, mask: np.ndarray) -> str:
    """Write one bool ``[H, W]`` mask as a 0/255 PNG; returns the path."""
    import cv2

    from .outputs import atomic_write

    ok, png = cv2.imencode(".png", np.asarray(mask, bool).view(np.uint8) * np.uint8(255))
    if not ok:  # pragma: no cover (cv2 encodes any uint8 [H, W] with H, W >= 1)
        raise DatasetError(f"{mask_path(out_dir, image_id, category_id)}: PNG encoding failed")
    path = mask_path(out_dir, image_id, category_id)
    atomic_write(path, [png.tobytes()])
    return path


def load_mask(path: str) -> np.ndarray:
    """bool ``[H, W]`` mask of a saved PNG (pixels above 127).

    Raises:
        DatasetError: the file is missing or not a greyscale picture.
    """
    import cv2

    if not os.path.isfile(path):
        raise DatasetError(f"{path}: saved mask not found")
    picture = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if picture is None or picture.ndim != 2:
        raise DatasetError(f"{path}: not a saved-mask PNG (expected one 8-bit grey channel)")
    return picture > 127


def has_saved_masks(out_dir: str) -> bool:
    folder = os.path.join(out_dir, MASKS)
    return os.path.isdir(folder) and any(n.endswith(".png") for n in os.listdir(folder))


def _parse(name: str) -> tuple[int, int] | None:
    stem, ext = os.path.splitext(name)
    parts = stem.split("_")
    if ext != ".png" or len(parts) != 2:
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None


def iter_saved_masks(out_dir: str) -> Iterator[tuple[int, int, str]]:
    """``(image_id, category_id, path)`` of every saved mask, by image id then category."""
    folder = os.path.join(out_dir, MASKS)
    found = sorted((key, n) for n in os.listdir(folder) if (key := _parse(n)) is not None)
    for (image_id, c), n in found:
        yield image_id, c, os.path.join(folder, n)


def apply_saved_masks(results: list[dict], run_dir: str) -> list[dict]:
    """Copies of the result entries whose ``segmentation`` is the saved PNG of their (image, category),
    as COCO RLE.

    Raises:
        DatasetError: ``run_dir/masks/`` is missing, an entry has no saved mask, or a mask's size
            differs from the one its entry's RLE records.
    """
    from ..boxes import mask_to_rle

    folder = os.path.join(os.fspath(run_dir), MASKS)
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: no saved masks (run wsloc localize with --save-masks)")
    out = []
    for r in results:
        path = mask_path(run_dir, r["image_id"], r["category_id"])
        mask = load_mask(path)
        old = r.get("segmentation")
        if isinstance(old, dict) and list(old.get("size", mask.shape)) != list(mask.shape):
            raise DatasetError(f"{path}: mask of size {mask.shape[0]}x{mask.shape[1]}, the result's is "
                               f"{old['size'][0]}x{old['size'][1]}")
        out.append({**r, "segmentation": mask_to_rle(mask)})
    return out
