"""Saliency maps saved by ``wsloc localize --save-maps``: one compressed ``.npz`` per image.

Layout: ``OUT/maps/IIIIII.npz`` (``IIIIII``: the image's 0-based position in the dataset, six
digits or more; every shard of a sharded run writes into the top folder's ``maps/``, so the
files never collide and need no merging). Each file holds:

=========== ======================================================================
maps        float16 ``[K, h, w]``: the maps the segmenter was given (network input
            resolution, e.g. 224 x 224 for Lite0, fused over the configured scales),
            one per result of the image, in rank order
classes     int64 ``[K]``: the ``category_id`` of each map (the results' ids:
            dataset categories with a class map, else classifier classes)
image_id    int64 scalar: the image's id
size        int64 ``[2]``: the image's height and width (the maps cover the whole
            frame: resize a map to this size to overlay it, as the segmenter does)
=========== ======================================================================

float16 keeps 3 significant digits, plenty for maps in [0, 1] (PxAP thresholds are 0.01
apart); a 224 x 224 map is ~100 KB raw, ~60-90 KB compressed. Files are written atomically
(:func:`wsloc.run.outputs.atomic_write`), so a resumed run rewrites the same bytes.
"""

from __future__ import annotations

import io
import os
from typing import Iterator

import numpy as np

from ..errors import DatasetError

__all__ = ["MAPS", "map_path", "save_image_maps", "load_image_maps", "iter_saved_maps", "has_saved_maps"]

MAPS = "maps"


def map_path(out_dir: str, index: int) -> str:
    """``out_dir/maps/IIIIII.npz`` of the image at dataset position ``index``."""
    return os.path.join(out_dir, MAPS, f"{int(index):06d}.npz")


def save_image_maps(out_dir: str, index: int, image_id: int, maps: np.ndarray, classes, height: int,
                    width: int) -> str:
    """Write one image's maps (float ``[K, h, w]``, stored as float16); returns the path."""
    from .outputs import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, maps=np.asarray(maps, np.float32).astype(np.float16),
                        classes=np.asarray(classes, np.int64).reshape(-1), image_id=np.int64(image_id),
                        size=np.array([int(height), int(width)], np.int64))
    path = map_path(out_dir, index)
    atomic_write(path, [buf.getvalue()])
    return path


def load_image_maps(path: str) -> dict:
    """``{"maps": float16 [K, h, w], "classes": int64 [K], "image_id": int, "size": (h, w)}``.

    Raises:
        DatasetError: the file is missing or not a saved-maps file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {"maps": z["maps"], "classes": z["classes"], "image_id": int(z["image_id"]),
                   "size": tuple(int(v) for v in z["size"])}
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a saved-maps file ({exc})") from None
    if out["maps"].ndim != 3 or len(out["maps"]) != len(out["classes"]):
        raise DatasetError(f"{path}: {len(out['classes'])} classes for maps of shape {out['maps'].shape}")
    return out


def has_saved_maps(out_dir: str) -> bool:
    folder = os.path.join(out_dir, MAPS)
    return os.path.isdir(folder) and any(n.endswith(".npz") for n in os.listdir(folder))


def iter_saved_maps(out_dir: str) -> Iterator[dict]:
    """Every saved image's :func:`load_image_maps` dict, by dataset position."""
    folder = os.path.join(out_dir, MAPS)
    names = sorted((n for n in os.listdir(folder) if n.endswith(".npz") and n[:-4].isdigit()),
                   key=lambda n: int(n[:-4]))
    for n in names:
        yield load_image_maps(os.path.join(folder, n))
