"""What the evaluation scores against: the ground truth of any dataset, all of it or some images.

:func:`ground_truth` accepts a COCO annotation file, any dataset path :func:`wsloc.io.open_dataset`
opens (an ImageNet / VOC XML folder, a ``LOC_val_solution.csv``), or a dataset object, and gives a
:class:`GroundTruth`: the samples to score and the same annotations as a pycocotools ``COCO``
object (built by :func:`wsloc.io.to_coco.coco_dict`, for COCOeval). With ``indices`` only those
dataset positions are scored (the images a ``--limit`` or sharded run processed).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Iterable, Iterator

from ..errors import DatasetError

__all__ = ["GroundTruth", "ground_truth", "has_ground_truth"]


class GroundTruth:
    """Samples and their COCO form (what :func:`wsloc.evaluate.evaluate_results` needs).

    Attributes:
        samples: the :class:`wsloc.io.Sample` objects scored, in dataset order.
        coco: ``pycocotools.coco.COCO`` of the same images (``coco.dataset`` is the dict).
        categories: {id: name} of the dataset.
        ann_file: the annotation file or folder (for messages), or None.
        n_dataset_images: images in the whole dataset (``len(samples)`` unless a subset).
    """

    def __init__(self, dataset, indices: Iterable[int] | None = None):
        from pycocotools.coco import COCO

        from ..io.to_coco import coco_dict

        idx = None if indices is None else sorted({int(i) for i in indices})
        n = len(dataset)
        if idx is not None and idx and not (0 <= idx[0] and idx[-1] < n):
            raise DatasetError(f"{_name(dataset)}: image positions {idx[0]}..{idx[-1]} are outside the "
                               f"dataset's {n} images")
        positions = range(n) if idx is None else idx
        self.samples = [dataset[i] for i in positions]
        self.categories = dict(dataset.categories)
        self.ann_file = _name(dataset)
        self.n_dataset_images = n
        self.dataset = dataset
        coco = COCO()
        coco.dataset = coco_dict(dataset, idx)
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        self.coco = coco

    @property
    def is_subset(self) -> bool:
        return len(self.samples) != self.n_dataset_images

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator:
        return iter(self.samples)

    def has_boxes(self) -> bool:
        """Whether any scored image has a ground-truth box or class."""
        return bool(self.coco.dataset["annotations"]) or any(s.label is not None for s in self.samples)


def _name(dataset) -> str | None:
    for attr in ("ann_file", "ann_dir", "image_root"):
        v = getattr(dataset, attr, None)
        if v:
            return v
    return None


def has_ground_truth(dataset) -> bool:
    """Whether ``dataset`` can carry ground truth at all (cheap: no image is read).

    A COCO file with annotations, or a reader with categories (XML folders, LOC CSVs);
    image folders and image lists have none.
    """
    coco = getattr(dataset, "coco", None)
    if coco is not None:
        return bool(coco.dataset.get("annotations"))
    return bool(getattr(dataset, "categories", None))


def ground_truth(annotations, image_root=None, indices: Iterable[int] | None = None) -> GroundTruth:
    """A :class:`GroundTruth` from a path (COCO JSON, XML folder, LOC CSV), a dataset object, or a
    GroundTruth (returned as is when ``indices`` is None).

    Raises:
        DatasetError: the path cannot be opened as a dataset, or it has no ground truth.
    """
    if isinstance(annotations, GroundTruth):
        if indices is None:
            return annotations
        annotations = annotations.dataset
    if isinstance(annotations, (str, os.PathLike)):
        from ..io import FolderDataset, open_dataset

        ds = open_dataset(annotations, image_root=image_root)
        if isinstance(ds, FolderDataset):
            raise DatasetError(f"{os.path.abspath(os.fspath(annotations))}: a folder of images without "
                               "annotations (expected a COCO file, an XML folder or a LOC_val_solution.csv)")
    else:
        ds = annotations
    return GroundTruth(ds, indices)
