"""What ``wsloc localize INPUT...`` accepts: a dataset, image files, folders or glob patterns.

:func:`open_inputs` turns command-line arguments into one dataset:

* nothing -> the demo set (:func:`wsloc.paths.demo_annotations`);
* one dataset file (COCO ``.json``, ``LOC_val_solution.csv``) or one folder -> :func:`open_dataset`
  (an XML folder is scored, an image folder is not);
* otherwise image files, folders (their images, recursively) and glob patterns (``"photos/*.jpg"``,
  ``"**"`` recursive; quote them so that the shell leaves them alone), in the order given, each
  file once -> :class:`ImageFiles`, without ground truth.
"""

from __future__ import annotations

import glob
import os
from typing import Sequence

from wsloc.errors import DatasetError
from wsloc.io.datasets import IMAGE_EXTENSIONS, BaseDataset, FolderDataset, Sample, size_or_unknown
from wsloc.io.open import open_dataset

__all__ = ["ImageFiles", "open_inputs", "expand_images"]

_DATASET_EXTENSIONS = (".json", ".csv")
_GLOB_CHARS = set("*?[")


class ImageFiles(BaseDataset):
    """A list of image files, without annotations.

    Args:
        paths: image files (kept in this order).

    ``image_root`` is the deepest folder holding them all; ``file_name`` is each path relative
    to it (``/`` separators). Image ids are 0..N-1; ``categories`` is empty; sizes are read from
    the headers when a sample is accessed (-1 when unreadable; the error surfaces when the image
    is loaded).
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self._paths = [os.path.abspath(os.fspath(p)) for p in paths]
        if not self._paths:
            raise DatasetError("no image files given")
        self.image_root = os.path.commonpath([os.path.dirname(p) for p in self._paths])
        self.categories: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def _get(self, i: int) -> Sample:
        path = self._paths[i]
        w, h = size_or_unknown(path)
        name = os.path.relpath(path, self.image_root).replace(os.sep, "/")
        return Sample(image_id=i, path=path, file_name=name, width=w, height=h)


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def expand_images(inputs: Sequence[str]) -> list[str]:
    """Image files named by ``inputs`` (files, folders, glob patterns), in order, each once.

    Raises:
        DatasetError: a path that does not exist and matches nothing, a file that is not an image,
            a dataset file among other inputs, or no image at all.
    """
    out: list[str] = []
    for arg in inputs:
        p = os.path.abspath(arg)
        if os.path.isdir(p):
            folder = FolderDataset(p)
            found = [os.path.join(folder.image_root, *f.split("/")) for f in folder._files]
            if not found:
                raise DatasetError(f"{p}: no image files in this folder")
        elif os.path.isfile(p):
            if p.lower().endswith(_DATASET_EXTENSIONS):
                raise DatasetError(f"{p}: a dataset file must be the only input (got {len(inputs)} inputs)")
            if not _is_image(p):
                raise DatasetError(f"{p}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)}) "
                                   "nor a dataset (.json, .csv, folder)")
            found = [p]
        elif _GLOB_CHARS & set(arg):
            found = sorted(os.path.abspath(m) for m in glob.glob(arg, recursive=True)
                           if os.path.isfile(m) and _is_image(m))
            if not found:
                raise DatasetError(f"{arg}: no image files match this pattern")
        else:
            raise DatasetError(f"{p}: no such file or folder")
        out.extend(found)
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def open_inputs(inputs: Sequence[str] | None, image_root: str | os.PathLike | None = None):
    """The dataset ``wsloc localize`` runs on (see the module doc).

    Returns:
        (dataset, path recorded in the run's ``config.json``).
    """
    from wsloc.paths import demo_annotations

    inputs = list(inputs or [])
    if not inputs:
        path = demo_annotations()
        return open_dataset(path, image_root=image_root), path
    if len(inputs) == 1:
        p = os.path.abspath(inputs[0])
        if os.path.isdir(p) or (os.path.isfile(p) and p.lower().endswith(_DATASET_EXTENSIONS)):
            return open_dataset(p, image_root=image_root), p
    if image_root is not None:
        raise DatasetError("--image-root applies to a dataset file or folder, not to image files")
    ds = ImageFiles(expand_images(inputs))
    return ds, ds.image_root if len(ds) > 1 else ds._paths[0]
