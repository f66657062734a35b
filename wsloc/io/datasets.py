"""Dataset readers: COCO JSON, Pascal-VOC / ImageNet-LOC XML, and plain image folders.

Every reader yields :class:`Sample` objects with boxes in one convention:
``float64 [M, 4]`` **xyxy** in continuous pixel coordinates ``(x0, y0, x1, y1)``,
where the pixel ``(col, row)`` covers ``[col, col+1) x [row, row+1)``. A box covering
the whole ``W x H`` image is ``[0, 0, W, H]``.

* COCO ``bbox = [x, y, w, h]`` -> ``[x, y, x + w, y + h]``.
* VOC / ImageNet XML (1-based inclusive pixel indices) ->
  ``[xmin - 1, ymin - 1, xmax, ymax]``.

Path safety: every image file name read from an annotation file is checked when the
dataset is constructed. Absolute names, names with a ``..`` component, and names that
resolve (following symlinks) outside the image root raise :class:`DatasetError`
naming the annotation file and the offending name.

:func:`wsloc.io.open_dataset` (in :mod:`wsloc.io.open`) picks the reader from a path.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from wsloc.errors import DatasetError, ImageLoadError
from wsloc.io.images import image_size
from wsloc.io.validate import Problems, box_problems, check_coco

__all__ = [
    "Sample",
    "CocoDataset",
    "VocDataset",
    "FolderDataset",
    "IMAGE_EXTENSIONS",
    # shared with the other readers of wsloc.io
    "BaseDataset",
    "CANDIDATE_EXTENSIONS",
    "WNID_RE",
    "safe_image_path",
    "size_or_unknown",
]

#: File extensions (lower case) recognised as images by :class:`FolderDataset`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Extensions tried, in order, when a VOC/ImageNet XML names a file without extension
# (ImageNet LOC_val: "ILSVRC2012_val_00000001") or with one that does not exist.
CANDIDATE_EXTENSIONS = (
    ".JPEG", ".jpg", ".jpeg", ".JPG", ".png", ".PNG", ".bmp", ".BMP",
    ".gif", ".tif", ".tiff", ".webp",
)

#: An ImageNet WordNet id ("n01440764").
WNID_RE = re.compile(r"^n\d{8}$")


@dataclass
class Sample:
    """One image with its annotations.

    Attributes:
        image_id: integer id (COCO: the file's id; VOC/folder: 0..N-1 in sorted order).
        path: absolute path of the image file.
        file_name: path relative to the dataset's image root (as written in the
            annotation, or found on disk).
        width, height: image size in pixels as annotated (or read from the file's
            header); -1 when unknown and unreadable.
        boxes: ``float64 [M, 4]`` xyxy continuous pixel coordinates (see module doc).
        labels: ``int64 [M]`` class id of each box (dataset's category ids).
        masks: per box a COCO RLE dict (``{"size": [h, w], "counts": ...}``) or None;
            ``None`` for the whole field when the image has no segmentation at all.
        label: image-level class id if known (e.g. the single ILSVRC class), else None.
    """

    image_id: int
    path: str
    file_name: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    masks: list | None = None
    label: int | None = None


# --------------------------------------------------------------------------- helpers

def safe_image_path(root: str, name, ann_file: str) -> str:
    """Join ``name`` onto ``root`` refusing anything that could escape ``root``.

    Returns the absolute (not symlink-resolved) path. Raises DatasetError naming
    ``ann_file`` and ``name`` for an empty / non-string / absolute name, a ``..``
    component, or a path whose realpath lies outside ``realpath(root)``.
    """
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{ann_file}: invalid image file name {name!r}")
    if "\x00" in name:
        raise DatasetError(f"{ann_file}: image file name {name!r} contains a NUL byte")
    if (
        os.path.isabs(name)
        or name.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise DatasetError(f"{ann_file}: absolute image path {name!r} is not allowed")
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        raise DatasetError(f"{ann_file}: image path {name!r} contains '..' (path traversal)")
    full = os.path.abspath(os.path.join(root, name))
    real_root = os.path.realpath(root)
    real = os.path.realpath(full)
    if real != real_root and os.path.commonpath([real, real_root]) != real_root:
        raise DatasetError(
            f"{ann_file}: image path {name!r} resolves outside the image root {root!r}"
        )
    return full


def size_or_unknown(path: str) -> tuple[int, int]:
    """(width, height) of an image file from its header, or ``(-1, -1)`` when it cannot be read."""
    try:
        return image_size(path)
    except ImageLoadError:
        return -1, -1


class BaseDataset:
    """Sequence protocol shared by the readers: ``len``, ``iter``, ``ds[i]``."""

    categories: dict[int, str]
    image_root: str

    def __len__(self) -> int:
        raise NotImplementedError

    def _get(self, i: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, not {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"dataset index {i} out of range (size {n})")
        return self._get(i)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self._get(i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, root={self.image_root!r})"


# --------------------------------------------------------------------------- COCO

class CocoDataset(BaseDataset):
    """COCO-format JSON annotations (read through ``pycocotools.coco.COCO``).

    Args:
        ann_file: the JSON file.
        image_root: folder the ``images[].file_name`` are relative to. Default:
            ``<json folder>/images`` if that folder exists, else the json's folder.

    Category ids are used unchanged (ImageNet-style 0-based ids 0..999 are fine).
    Polygon and (compressed or uncompressed) RLE segmentations become one compressed
    RLE per annotation (polygons of one object are merged). ``Sample.label`` is
    ``images[].label`` if present, else the category of the image's first
    annotation, else None. Images are in the order of the JSON ``images`` list.

    Attributes: ``ann_file``, ``image_root`` (absolute), ``coco`` (the COCO object),
    ``categories`` (dict id -> name).

    Raises:
        DatasetError: the file is missing, not JSON, lacks ``images`` /
            ``annotations`` / ``categories``, has annotations referring to unknown
            image or category ids, or an unsafe image file name.
    """

    def __init__(self, ann_file: str | os.PathLike, image_root: str | os.PathLike | None = None):
        from pycocotools.coco import COCO

        self.ann_file = os.path.abspath(os.fspath(ann_file))
        af = self.ann_file
        if not os.path.isfile(af):
            raise DatasetError(f"{af}: annotation file not found")
        try:
            with open(af, "r", encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{af}: not a COCO JSON file (invalid JSON: {exc})") from exc
        except RecursionError:
            raise DatasetError(f"{af}: not a COCO JSON file (nested too deeply)") from None
        except OSError as exc:
            raise DatasetError(f"{af}: cannot read annotation file ({exc})") from exc
        self._validate(data)

        if image_root is None:
            base = os.path.dirname(af)
            cand = os.path.join(base, "images")
            image_root = cand if os.path.isdir(cand) else base
        self.image_root = os.path.abspath(os.fspath(image_root))

        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        self.coco = coco
        self.categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
        self._images = list(data["images"])
        self._paths = [
            safe_image_path(self.image_root, im["file_name"], af) for im in self._images
        ]

    def _validate(self, data) -> None:
        af = self.ann_file
        if not isinstance(data, dict):
            raise DatasetError(f"{af}: not a COCO JSON file (top level is not an object)")
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise DatasetError(f"{af}: not a COCO JSON file (missing key {key!r})")
            if not isinstance(data[key], list):
                raise DatasetError(f"{af}: not a COCO JSON file ({key!r} is not a list)")
        check_coco(data, af)  # ids normalised, every problem listed (wsloc.io.validate)

    def __len__(self) -> int:
        return len(self._images)

    def _rle(self, seg, h: int, w: int):
        from pycocotools import mask as mask_utils

        if isinstance(seg, list):  # polygons
            polys = [p for p in seg if len(p) >= 6]
            if not polys:
                return None
            return mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
        if isinstance(seg, dict) and "counts" in seg:
            if isinstance(seg["counts"], list):  # uncompressed RLE
                sh, sw = seg.get("size", [h, w])
                return mask_utils.frPyObjects(seg, sh, sw)
            rle = dict(seg)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
            return rle
        return None

    def _get(self, i: int) -> Sample:
        from pycocotools import mask as mask_utils

        im = self._images[i]
        path = self._paths[i]
        w, h = im.get("width"), im.get("height")
        if not w or not h:
            w, h = size_or_unknown(path)
        anns = self.coco.imgToAnns.get(im["id"], [])
        boxes = np.zeros((len(anns), 4), np.float64)
        labels = np.zeros((len(anns),), np.int64)
        masks = []
        for k, a in enumerate(anns):
            labels[k] = int(a["category_id"])
            seg = a.get("segmentation")
            rle = self._rle(seg, int(h), int(w)) if seg and h > 0 and w > 0 else None
            masks.append(rle)
            if a.get("bbox") is not None:
                x, y, bw, bh = (float(v) for v in a["bbox"])
            elif rle is not None:
                x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
            else:
                x = y = bw = bh = float("nan")
            boxes[k] = (x, y, x + bw, y + bh)
        if "label" in im and im["label"] is not None:
            label = int(im["label"])
        elif anns:
            label = int(anns[0]["category_id"])
        else:
            label = None
        return Sample(
            image_id=int(im["id"]),
            path=path,
            file_name=im["file_name"],
            width=int(w),
            height=int(h),
            boxes=boxes,
            labels=labels,
            masks=masks if any(m is not None for m in masks) else None,
            label=label,
        )


# --------------------------------------------------------------------------- VOC / ImageNet XML

def _xml_text(node, tag: str):
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _imagenet_index(wnid: str) -> int:
    from wsloc import imagenet  # written by another engineer; imported lazily

    return int(imagenet.wnid_to_index(wnid))


def _imagenet_categories() -> dict[int, str]:
    from wsloc import imagenet

    return {i: str(n) for i, n in enumerate(imagenet.names())}


class VocDataset(BaseDataset):
    """Pascal-VOC / ImageNet-LOC style XML annotations, one XML file per image.

    Layouts:
        * VOC: ``root/Annotations/*.xml`` and ``root/JPEGImages/`` (the defaults).
        * ImageNet LOC: an XML folder and an image folder given explicitly, e.g.
          ``VocDataset(xml_dir, image_dir=val_dir)``.

    Args:
        root: dataset folder.
        image_dir: image folder; default ``root/JPEGImages`` if it exists else ``root``.
        ann_dir: XML folder; default ``root/Annotations`` if it exists else ``root``.
            Relative ``image_dir``/``ann_dir`` are taken relative to the current
            directory (like any path).
        class_names: list of class names; a box's label is its name's index in it.

    ``<filename>`` may lack an extension (ImageNet LOC_val XMLs say
    ``ILSVRC2012_val_00000001``): the file is then found by trying ``.JPEG``, ``.jpg``,
    ``.png`` and other common extensions (also when the given extension does not
    exist on disk). When nothing is found the name is kept as written (the image then
    fails to load later rather than here).

    Coordinates: VOC ``xmin..xmax`` are 1-based inclusive pixel indices; they become
    continuous 0-based xyxy ``[xmin - 1, ymin - 1, xmax, ymax]``.

    Labels: if every ``<name>`` looks like an ImageNet wnid (``n########``) it is
    mapped to the 0-based ImageNet-1k index with ``wsloc.imagenet.wnid_to_index`` and
    ``categories`` holds all 1000 classes; else ``class_names`` is used if given; else
    the sorted set of names found. ``Sample.label`` is the class shared by all boxes
    of an image (None if the boxes disagree or there are none).

    Image ids are 0..N-1 in sorted ``file_name`` order.

    Raises:
        DatasetError: missing folder, no XML files, malformed XML, a name not in
            ``class_names`` or an unknown wnid, or an unsafe file name.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_dir: str | os.PathLike | None = None,
        ann_dir: str | os.PathLike | None = None,
        class_names: list[str] | None = None,
    ):
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise DatasetError(f"{self.root}: dataset folder not found")
        if ann_dir is None:
            cand = os.path.join(self.root, "Annotations")
            ann_dir = cand if os.path.isdir(cand) else self.root
        if image_dir is None:
            cand = os.path.join(self.root, "JPEGImages")
            image_dir = cand if os.path.isdir(cand) else self.root
        self.ann_dir = os.path.abspath(os.fspath(ann_dir))
        self.image_root = os.path.abspath(os.fspath(image_dir))
        if not os.path.isdir(self.ann_dir):
            raise DatasetError(f"{self.ann_dir}: annotation folder not found")
        xml_files = sorted(
            os.path.join(self.ann_dir, f)
            for f in os.listdir(self.ann_dir)
            if f.lower().endswith(".xml")
        )
        if not xml_files:
            raise DatasetError(f"{self.ann_dir}: no .xml annotation files found")

        problems = Problems(self.ann_dir)  # every bad file / box listed in one error (wsloc.io.validate)
        records = []
        for x in xml_files:
            try:
                records.append(self._parse(x, problems))
            except DatasetError as exc:
                problems.add(str(exc), None, "")
        all_names = {n for r in records for n in r["names"]}

        if all_names and all(WNID_RE.match(n) for n in all_names):
            try:
                self.categories = _imagenet_categories()
            except ImportError as exc:
                raise DatasetError(
                    f"{self.ann_dir}: ImageNet wnids found but wsloc.imagenet is unavailable ({exc})"
                ) from exc

            def to_label(name: str, xml: str) -> int:
                try:
                    return _imagenet_index(name)
                except (KeyError, ValueError, IndexError) as exc:
                    raise DatasetError(f"{xml}: unknown ImageNet wnid {name!r}") from exc
        else:
            names = list(class_names) if class_names is not None else sorted(all_names)
            index = {n: i for i, n in enumerate(names)}
            self.categories = dict(enumerate(names))

            def to_label(name: str, xml: str) -> int:
                if name not in index:
                    raise DatasetError(f"{xml}: class name {name!r} not in class_names")
                return index[name]

        for r in records:
            try:
                r["labels"] = np.array([to_label(n, r["xml"]) for n in r["names"]], np.int64)
            except DatasetError as exc:
                problems.add(str(exc), None, "")
        problems.raise_if_any()
        records.sort(key=lambda r: (r["file_name"], r["xml"]))
        self._records = records

    def _resolve_file(self, name: str, xml: str) -> tuple[str, str]:
        """Return (file_name, absolute path) for an XML ``<filename>``."""
        path = safe_image_path(self.image_root, name, xml)
        if os.path.isfile(path):
            return name, path
        stem, ext = os.path.splitext(name)
        bases = [name] if not ext or not re.fullmatch(r"\.[A-Za-z]{2,5}", ext) else [name, stem]
        for base in bases:
            for cand_ext in CANDIDATE_EXTENSIONS:
                cand = base + cand_ext
                cand_path = os.path.join(self.image_root, cand)
                if os.path.isfile(cand_path):
                    return cand, safe_image_path(self.image_root, cand, xml)
        return name, path

    def _parse(self, xml: str, problems: Problems) -> dict:
        try:
            tree = ET.parse(xml)
        except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{xml}: malformed XML annotation ({exc})") from exc
        ann = tree.getroot()
        if ann.tag != "annotation":
            raise DatasetError(f"{xml}: not a VOC annotation (root element <{ann.tag}>)")
        fname = _xml_text(ann, "filename")
        if not fname:
            fname = os.path.splitext(os.path.basename(xml))[0]
        file_name, path = self._resolve_file(fname, xml)
        w = h = 0
        size = ann.find("size")
        try:
            if size is not None:
                w, h = (float(_xml_text(size, t) or 0) for t in ("width", "height"))
                if not all(math.isfinite(v) and v.is_integer() and v >= 0 for v in (w, h)):
                    problems.add(xml, "size", f"width and height must be integers >= 0, got {w:g} x {h:g}")
                    w = h = 0
                w, h = int(w), int(h)
            names, boxes = [], []
            for obj in ann.findall("object"):
                name = _xml_text(obj, "name")
                bb = obj.find("bndbox")
                if not name or bb is None:
                    raise DatasetError(f"{xml}: <object> without <name> or <bndbox>")
                coords = [_xml_text(bb, t) for t in ("xmin", "ymin", "xmax", "ymax")]
                if any(c is None for c in coords):
                    raise DatasetError(f"{xml}: <bndbox> lacks one of xmin/ymin/xmax/ymax")
                xmin, ymin, xmax, ymax = (float(c) for c in coords)
                for what in box_problems((xmin - 1.0, ymin - 1.0, xmax, ymax), w, h):
                    problems.add(f"{xml}: <object> {len(names)} ({name})", "bndbox", what)
                names.append(name)
                boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))
        except ValueError as exc:
            raise DatasetError(f"{xml}: non-numeric size or box coordinate ({exc})") from exc
        return {
            "xml": xml,
            "file_name": file_name,
            "path": path,
            "width": w,
            "height": h,
            "names": names,
            "boxes": np.array(boxes, np.float64).reshape(-1, 4),
        }

    def __len__(self) -> int:
        return len(self._records)

    def _get(self, i: int) -> Sample:
        r = self._records[i]
        w, h = r["width"], r["height"]
        if w <= 0 or h <= 0:
            w, h = size_or_unknown(r["path"])
        labels = r["labels"]
        uniq = np.unique(labels)
        return Sample(
            image_id=i,
            path=r["path"],
            file_name=r["file_name"],
            width=int(w),
            height=int(h),
            boxes=r["boxes"].copy(),
            labels=labels.copy(),
            masks=None,
            label=int(uniq[0]) if len(uniq) == 1 else None,
        )


# --------------------------------------------------------------------------- folder

class FolderDataset(BaseDataset):
    """All image files under a folder, without annotations.

    Files with extensions in :data:`IMAGE_EXTENSIONS` (case-insensitive) are listed,
    sorted by relative path (``recursive=False``: only the top level). Listing never
    opens the files; ``width``/``height`` are read from the header when a sample is
    accessed, and are -1 for an unreadable file (the error surfaces when the image is
    loaded). Boxes are empty, ``label`` is None, ``categories`` is empty. Image ids
    are 0..N-1. Symlinked files are listed as they are (no annotation file is
    involved, so the path-safety check does not apply).
    """

    def __init__(self, root: str | os.PathLike, recursive: bool = True):
        self.image_root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.image_root):
            raise DatasetError(f"{self.image_root}: image folder not found")
        self.categories: dict[int, str] = {}
        files = []
        if recursive:
            for dirpath, dirnames, filenames in os.walk(self.image_root):
                dirnames.sort()
                for f in filenames:
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        files.append(os.path.relpath(os.path.join(dirpath, f), self.image_root))
        else:
            for f in os.listdir(self.image_root):
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(
                    os.path.join(self.image_root, f)
                ):
                    files.append(f)
        self._files = sorted(f.replace(os.sep, "/") for f in files)

    def __len__(self) -> int:
        return len(self._files)

    def _get(self, i: int) -> Sample:
        name = self._files[i]
        path = os.path.join(self.image_root, *name.split("/"))
        w, h = size_or_unknown(path)
        return Sample(image_id=i, path=path, file_name=name, width=w, height=h)
