"""Kaggle-style ImageNet localization files: ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt``.

Layout (the "ImageNet Object Localization Challenge" download)::

    LOC_val_solution.csv         ImageId,PredictionString
                                 ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295
    LOC_synset_mapping.txt       n01440764 tench, Tinca tinca      (one class per line, index = line number)
    ILSVRC/Data/CLS-LOC/val/     ILSVRC2012_val_00008726.JPEG ...

``PredictionString`` holds repeated groups ``wnid x_min y_min x_max y_max``. The numbers are the
ILSVRC XML values (1-based inclusive pixel indices), so they are read exactly as
:class:`wsloc.io.VocDataset` reads an XML box: ``[x_min - 1, y_min - 1, x_max, y_max]``
continuous xyxy. The same images give the same samples (ids, boxes, labels) from the XML
folder and from the CSV.

Class index: the 0-based ImageNet-1k index (sorted wnids, :mod:`wsloc.imagenet`). A
``LOC_synset_mapping.txt`` (given, or found next to the CSV) is checked: listing the 1000
ImageNet-1k wnids its order must be the sorted one (it is, in the Kaggle download); listing
another set of wnids its line order becomes the class index (for a classifier trained on
that set).
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np

from wsloc.errors import DatasetError
from wsloc.io.datasets import (CANDIDATE_EXTENSIONS, WNID_RE, BaseDataset, Sample, safe_image_path,
                               size_or_unknown)

__all__ = ["IlsvrcCsvDataset", "read_synset_mapping", "is_ilsvrc_csv", "SOLUTION_HEADER"]

#: The header a solution file starts with.
SOLUTION_HEADER = ("ImageId", "PredictionString")

#: Image folders looked for next to the CSV, in this order (the Kaggle layout first).
_IMAGE_DIRS = (os.path.join("ILSVRC", "Data", "CLS-LOC", "val"), "val", "images", "")

_MAPPING_NAME = "LOC_synset_mapping.txt"


def is_ilsvrc_csv(path: str) -> bool:
    """Whether ``path`` is a ``.csv`` file whose first line is the solution header."""
    if not path.lower().endswith(".csv") or not os.path.isfile(path):
        return False
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(v.strip() for v in first.split(",")) == SOLUTION_HEADER


def read_synset_mapping(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read a ``LOC_synset_mapping.txt``: (wnids, full names) in line order.

    Raises:
        DatasetError: missing file, a line that is not ``wnid name...``, a duplicate wnid.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the synset mapping ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a text synset mapping ({exc})") from exc
    wnids, names, seen = [], [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not WNID_RE.match(wnid):
            raise DatasetError(f"{path}: line {n} does not start with a wnid (n########): {line[:60]!r}")
        if wnid in seen:
            raise DatasetError(f"{path}: line {n}: wnid {wnid} listed twice")
        seen.add(wnid)
        wnids.append(wnid)
        names.append(name.strip() or wnid)
    if not wnids:
        raise DatasetError(f"{path}: empty synset mapping")
    return wnids, names


def _class_index(mapping: str | None) -> tuple[dict[str, int], dict[int, str]]:
    """(wnid -> class index, categories {index: short name})."""
    from wsloc import imagenet

    known = imagenet.wnids()
    if mapping is None:
        return ({w: i for i, w in enumerate(known)},
                {i: str(n) for i, n in enumerate(imagenet.names())})
    wnids, names = read_synset_mapping(mapping)
    if set(wnids) == set(known) and tuple(wnids) != known:
        k = next(i for i, (a, b) in enumerate(zip(wnids, known)) if a != b)
        raise DatasetError(f"{mapping}: lists the ImageNet-1k classes in an order other than the sorted-wnid "
                           f"one that classifiers use (line {k + 1} is {wnids[k]}, expected {known[k]})")
    return {w: i for i, w in enumerate(wnids)}, {i: n.split(",")[0].strip() for i, n in enumerate(names)}


def _find_image_root(csv_path: str) -> str:
    base = os.path.dirname(csv_path)
    for sub in _IMAGE_DIRS:
        cand = os.path.join(base, sub)
        if os.path.isdir(cand):
            return cand
    return base  # pragma: no cover - the CSV's own folder always exists


class IlsvrcCsvDataset(BaseDataset):
    """ImageNet localization ground truth from a Kaggle-style ``LOC_val_solution.csv``.

    Args:
        csv_path: the solution CSV (header ``ImageId,PredictionString``).
        image_root: image folder; default the first of ``ILSVRC/Data/CLS-LOC/val``, ``val``,
            ``images`` next to the CSV that exists, else the CSV's folder.
        synset_mapping: ``LOC_synset_mapping.txt``; default the one next to the CSV if any
            (see the module doc for how it is used).

    Samples: image ids 0..N-1 in sorted ``ImageId`` order (as :class:`VocDataset` numbers its
    files); ``file_name`` is the ``ImageId`` plus the extension found on disk (``.JPEG``,
    ``.jpg``, ...; kept without one when no file exists, so the image fails to load later);
    ``width``/``height`` are read from the image header when a sample is accessed (-1 when
    unreadable); ``label`` is the class shared by the image's boxes (None when they differ).

    Raises:
        DatasetError: missing file, wrong header, a PredictionString that is not groups of
            ``wnid x_min y_min x_max y_max``, an unknown wnid, a duplicate ImageId, an unsafe
            ImageId (absolute, ``..``), a bad synset mapping.
    """

    def __init__(self, csv_path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                 synset_mapping: str | os.PathLike | None = None):
        self.ann_file = os.path.abspath(os.fspath(csv_path))
        af = self.ann_file
        if not os.path.isfile(af):
            raise DatasetError(f"{af}: annotation file not found")
        if synset_mapping is None:
            cand = os.path.join(os.path.dirname(af), _MAPPING_NAME)
            synset_mapping = cand if os.path.isfile(cand) else None
        self.synset_mapping = None if synset_mapping is None else os.path.abspath(os.fspath(synset_mapping))
        index, self.categories = _class_index(self.synset_mapping)
        self.image_root = os.path.abspath(os.fspath(image_root)) if image_root is not None else \
            os.path.abspath(_find_image_root(af))
        records = {}
        try:
            with open(af, "r", encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None or tuple(v.strip() for v in header) != SOLUTION_HEADER:
                    raise DatasetError(f"{af}: not a LOC solution CSV (the first line must be "
                                       f"'ImageId,PredictionString', got {','.join(header or [])[:60]!r})")
                for row in reader:
                    line = reader.line_num
                    if not row or not any(v.strip() for v in row):
                        continue
                    if len(row) != 2:
                        raise DatasetError(f"{af}: line {line}: expected 2 columns, got {len(row)}")
                    image_id, pred = row[0].strip(), row[1]
                    if image_id in records:
                        raise DatasetError(f"{af}: line {line}: ImageId {image_id!r} listed twice")
                    safe_image_path(self.image_root, image_id, af)  # refuse names escaping the root
                    records[image_id] = self._parse(pred, index, f"{af}: line {line}")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{af}: not a text CSV file ({exc})") from exc
        except csv.Error as exc:
            raise DatasetError(f"{af}: malformed CSV ({exc})") from exc
        except OSError as exc:
            raise DatasetError(f"{af}: cannot read annotation file ({exc})") from exc
        self._ids = sorted(records)
        self._records = records

    @staticmethod
    def _parse(pred: str, index: dict[str, int], where: str) -> tuple[np.ndarray, np.ndarray]:
        tokens = pred.split()
        if len(tokens) % 5:
            raise DatasetError(f"{where}: PredictionString must be groups of 'wnid x_min y_min x_max y_max', "
                               f"got {len(tokens)} values")
        boxes, labels = [], []
        for g in range(0, len(tokens), 5):
            wnid = tokens[g]
            if wnid not in index:
                raise DatasetError(f"{where}: unknown wnid {wnid!r}")
            try:
                x0, y0, x1, y1 = (float(v) for v in tokens[g + 1:g + 5])
            except ValueError:
                raise DatasetError(f"{where}: non-numeric box {' '.join(tokens[g + 1:g + 5])!r}") from None
            if not all(np.isfinite([x0, y0, x1, y1])):
                raise DatasetError(f"{where}: non-finite box {' '.join(tokens[g + 1:g + 5])!r}")
            labels.append(index[wnid])
            boxes.append((x0 - 1.0, y0 - 1.0, x1, y1))  # inclusive 1-based indices -> continuous
        return np.array(boxes, np.float64).reshape(-1, 4), np.array(labels, np.int64)

    def _resolve(self, image_id: str) -> tuple[str, str]:
        path = safe_image_path(self.image_root, image_id, self.ann_file)
        if os.path.isfile(path) and re.search(r"\.[A-Za-z]{2,5}$", image_id):
            return image_id, path
        for ext in CANDIDATE_EXTENSIONS:
            cand = image_id + ext
            if os.path.isfile(os.path.join(self.image_root, cand)):
                return cand, safe_image_path(self.image_root, cand, self.ann_file)
        return image_id, path

    def __len__(self) -> int:
        return len(self._ids)

    def _get(self, i: int) -> Sample:
        key = self._ids[i]
        boxes, labels = self._records[key]
        file_name, path = self._resolve(key)
        w, h = size_or_unknown(path)
        uniq = np.unique(labels)
        return Sample(image_id=i, path=path, file_name=file_name, width=int(w), height=int(h),
                      boxes=boxes.copy(), labels=labels.copy(), masks=None,
                      label=int(uniq[0]) if len(uniq) == 1 else None)
