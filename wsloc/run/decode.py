"""The decode stage of a dataset run: batches of decoded, preprocessed images (DataLoader workers).

Each image is read, checked (pixel count, shortest side) and preprocessed for the network; what
goes on to segmentation is only what it reads: the image's working copy
(:func:`wsloc.segment.seeds.working_image`, 80 px on the longer side by default) and its size.
The whole image leaves the decoding process only for the images that get an overlay. An image
that cannot be read becomes an error item (``stage="decode"``), and the run goes on.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from ..errors import ImageLoadError
from .memory_watch import MemoryReleaser
from .segment_worker import exit_with_parent

__all__ = ["DecodeBatches", "DecodedBatch", "error_record", "make_loader"]

_RELEASE = None  # this loader process's MemoryReleaser (set by _loader_init)


@dataclass
class DecodedBatch:
    """One batch as the loader workers give it.

    Attributes:
        number: position of the batch in the list given to :class:`DecodeBatches`.
        items: per image a dict: index, image_id, file_name, path, gt, labels, and either
            ``image`` (uint8 ``[h, w, 3]``: the working copy, or the whole image for an overlay)
            with ``size`` (``(H, W)`` of the image), or ``stage`` + ``reason`` (an error).
        x: float32 ``[n_ok, 3, h, w]`` network input of the images that loaded, or None.
        timings: {"decode": s, "preprocess": s}.
    """

    number: int
    items: list
    x: object
    timings: dict


class DecodeBatches:
    """Map-style dataset of batches for ``torch.utils.data.DataLoader`` (batch_size=None).

    Args:
        dataset: a sequence of :class:`wsloc.io.Sample`.
        batches: lists of dataset indices.
        preprocess: the classifier's :class:`wsloc.Preprocess`.
        max_pixels, min_side: images with more pixels / a shorter side are errors.
        max_side: the segmentation's working resolution (``SegmentConfig.max_side``); None: keep
            every image whole.
        whole: indices whose image stays whole (overlays are drawn on them).
    """

    def __init__(self, dataset, batches, preprocess, max_pixels: int | None, min_side: int,
                 max_side: int | None = None, whole=()):
        self.dataset = dataset
        self.batches = [list(b) for b in batches]
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.max_side = max_side
        self.whole = set(whole)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, number: int) -> DecodedBatch:
        import torch

        from ..segment.seeds import working_image

        timings = {"decode": 0.0, "preprocess": 0.0}
        items, tensors = [], []
        for index in self.batches[number]:
            item, image = self._load(index, timings)
            items.append(item)
            if image is None:
                continue
            t1 = time.perf_counter()
            tensors.append(self.preprocess(image))
            t2 = time.perf_counter()
            timings["preprocess"] += t2 - t1
            item["size"] = tuple(int(v) for v in image.shape[:2])
            item["image"] = image if index in self.whole else working_image(image, self.max_side)
            timings["decode"] += time.perf_counter() - t2
        x = torch.stack(tensors) if tensors else None
        if _RELEASE is not None:
            _RELEASE()
        return DecodedBatch(number, items, x, timings)

    def _load(self, index: int, timings: dict):
        """(item, uint8 image or None): one image read and checked; a failure is an error item."""
        from ..io import load_image
        from .overlay import sample_gt

        item = {"index": index, "image_id": index, "file_name": None, "path": None}
        t0 = time.perf_counter()
        image = None
        try:
            sample = self.dataset[index]
            item.update(image_id=int(sample.image_id), file_name=sample.file_name, path=sample.path,
                        gt=sample_gt(sample, getattr(self.dataset, "categories", None)),
                        labels=sorted({int(v) for v in sample.labels}))
            image = load_image(sample.path, max_pixels=self.max_pixels)
            h, w = image.shape[:2]
            if min(h, w) < self.min_side:
                raise ImageLoadError(sample.path, f"image too small ({w}x{h}; the shorter side must be "
                                                  f"at least {self.min_side} pixels)")
        except ImageLoadError as exc:
            item.update(stage="decode", reason=exc.reason)
            image = None
        except Exception as exc:  # a reader bug must not stop the run; it is recorded
            item.update(stage="decode", reason=f"{type(exc).__name__}: {exc}")
            image = None
        timings["decode"] += time.perf_counter() - t0
        return item, image


def error_record(item: dict) -> dict:
    """The ``images.jsonl`` line of an image that failed (``item`` has ``stage`` and ``reason``)."""
    return {"index": item["index"], "image_id": item["image_id"], "file_name": item["file_name"],
            "path": item["path"], "status": "error", "stage": item["stage"], "reason": item["reason"]}


def _identity(x):
    return x


def _loader_init(parent: int, release: bool, worker_id: int) -> None:
    global _RELEASE
    exit_with_parent(parent)
    _RELEASE = MemoryReleaser() if release else None


def make_loader(decode: DecodeBatches, workers: int, pin_memory: bool = False, release_memory: bool = True):
    """A ``DataLoader`` over ``decode``'s batches in order: ``workers`` decoding processes (0: in
    this process), two batches prefetched per process, each process ending with this one and
    releasing its free heap pages after each batch (``release_memory``)."""
    import torch

    return torch.utils.data.DataLoader(
        decode, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_identity,
        prefetch_factor=2 if workers > 0 else None, pin_memory=pin_memory,
        worker_init_fn=functools.partial(_loader_init, os.getpid(), release_memory) if workers > 0 else None)
