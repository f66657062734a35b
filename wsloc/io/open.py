"""Open a dataset of any supported layout from its path (the one dispatcher over the readers).

It sits above the readers (:mod:`wsloc.io.datasets`, :mod:`wsloc.io.ilsvrc_csv`) so that none of them
imports another's dispatcher: no import cycle.
"""

from __future__ import annotations

import os

from wsloc.errors import DatasetError
from wsloc.io.datasets import CocoDataset, FolderDataset, VocDataset
from wsloc.io.ilsvrc_csv import IlsvrcCsvDataset


def open_dataset(path: str | os.PathLike, image_root: str | os.PathLike | None = None):
    """Open a dataset, guessing its kind from ``path``.

    * a ``.json`` file -> :class:`CocoDataset` (``image_root`` passed on);
    * a ``.csv`` file -> :class:`wsloc.io.ilsvrc_csv.IlsvrcCsvDataset` (Kaggle ``LOC_val_solution.csv``);
    * a folder holding ``Annotations/`` or ``*.xml`` files -> :class:`VocDataset`
      (``image_root`` becomes its ``image_dir``);
    * any other folder -> :class:`FolderDataset` (of ``image_root`` if given, else
      of ``path``);
    * anything else -> :class:`DatasetError`.
    """
    p = os.path.abspath(os.fspath(path))
    if os.path.isfile(p):
        if p.lower().endswith(".json"):
            return CocoDataset(p, image_root=image_root)
        if p.lower().endswith(".csv"):
            return IlsvrcCsvDataset(p, image_root=image_root)
        raise DatasetError(f"{p}: unsupported dataset file (expected a .json COCO file, a LOC_val_solution.csv "
                           "or a folder)")
    if os.path.isdir(p):
        if os.path.isdir(os.path.join(p, "Annotations")) or any(
            f.lower().endswith(".xml") for f in os.listdir(p)
        ):
            return VocDataset(p, image_dir=image_root)
        return FolderDataset(image_root if image_root is not None else p)
    raise DatasetError(f"{p}: dataset path not found")
