"""Any dataset's ground truth as a COCO dict: what ``wsloc convert`` writes and the evaluation scores.

:func:`coco_dict` turns the :class:`~wsloc.io.Sample` objects of any reader (COCO, VOC /
ImageNet XML, ``LOC_val_solution.csv``, ...) into one COCO annotation dict::

    images[]:      id (Sample.image_id), file_name, width, height, label (when known)
    annotations[]: id, image_id, category_id, bbox [x, y, w, h], area (w * h), iscrowd 0,
                   segmentation (COCO RLE, when the sample has masks)
    categories[]:  id, name (+ wnid, for ImageNet-1k classes)

Boxes keep the readers' continuous convention: ``xyxy [x0, y0, x1, y1]`` becomes
``bbox = [x0, y0, x1 - x0, y1 - y0]``, so reading the written file back with
:class:`~wsloc.io.CocoDataset` gives the same boxes. For a :class:`CocoDataset` the file's
own entries are kept (only the images asked for, with their annotations).
"""

from __future__ import annotations

import json
import os
from typing import Iterable

import numpy as np

__all__ = ["coco_dict", "write_coco"]


def _imagenet_wnids(categories: dict[int, str]) -> dict[int, str]:
    """wnid of each category when ``categories`` are (a subset of) the ImageNet-1k classes by index."""
    from wsloc import imagenet

    names = imagenet.names()
    if categories and all(0 <= int(i) < len(names) and names[int(i)] == n for i, n in categories.items()):
        wnids = imagenet.wnids()
        return {int(i): wnids[int(i)] for i in categories}
    return {}


def _coco_subset(dataset, indices: Iterable[int] | None) -> dict:
    data = dataset.coco.dataset
    if indices is None:
        return {"images": list(data["images"]), "annotations": list(data["annotations"]),
                "categories": list(data["categories"])}
    keep = {int(dataset._images[i]["id"]) for i in indices}
    return {"images": [im for im in data["images"] if im["id"] in keep],
            "annotations": [a for a in data["annotations"] if a["image_id"] in keep],
            "categories": list(data["categories"])}


def coco_dict(dataset, indices: Iterable[int] | None = None) -> dict:
    """COCO annotation dict of ``dataset`` (all images, or the positions ``indices``).

    Args:
        dataset: any wsloc dataset (``len``, ``ds[i]`` -> Sample, ``categories``).
        indices: positions in the dataset (``ds[i]``), default all.

    Returns:
        dict with ``images``, ``annotations``, ``categories`` (see the module doc); JSON-able.
    """
    from wsloc.io.datasets import CocoDataset

    if isinstance(dataset, CocoDataset):
        return _coco_subset(dataset, indices)
    from pycocotools import mask as mask_utils

    positions = range(len(dataset)) if indices is None else indices
    images, annotations = [], []
    for i in positions:
        s = dataset[int(i)]
        im = {"id": int(s.image_id), "file_name": s.file_name, "width": int(s.width), "height": int(s.height)}
        if s.label is not None:
            im["label"] = int(s.label)
        images.append(im)
        boxes = np.asarray(s.boxes, np.float64).reshape(-1, 4)
        for k, (box, label) in enumerate(zip(boxes, np.asarray(s.labels).reshape(-1))):
            x0, y0, x1, y1 = (float(v) for v in box)
            w, h = x1 - x0, y1 - y0
            a = {"id": len(annotations) + 1, "image_id": int(s.image_id), "category_id": int(label),
                 "bbox": [x0, y0, w, h], "area": max(w, 0.0) * max(h, 0.0), "iscrowd": 0}
            rle = s.masks[k] if s.masks is not None else None
            if rle is not None:
                counts = rle["counts"]
                a["segmentation"] = {"size": [int(v) for v in rle["size"]],
                                     "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
                a["area"] = float(mask_utils.area(rle))
            annotations.append(a)
    wnids = _imagenet_wnids(dataset.categories)
    categories = []
    for cid, name in sorted(dataset.categories.items()):
        c = {"id": int(cid), "name": str(name)}
        if int(cid) in wnids:
            c["wnid"] = wnids[int(cid)]
        categories.append(c)
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(dataset, path: str | os.PathLike, indices: Iterable[int] | None = None) -> dict:
    """Write :func:`coco_dict` of ``dataset`` to ``path`` (JSON); returns the dict.

    Raises OSError when the file cannot be written.
    """
    data = coco_dict(dataset, indices)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.write("\n")
    os.replace(tmp, path)
    return data
