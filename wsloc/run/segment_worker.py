"""What a segmentation process of the batch runner runs: one image's maps in, its record out.

A worker process imports this module (and, through it, numpy, OpenCV, PyMaxflow and
pycocotools) but never torch: it starts in about a second instead of the several a torch
import takes, and a worker replaced after a crash (:class:`wsloc.run.pool.SupervisedPool`) is
back as fast. ``python -c "import wsloc.run.segment_worker, sys; print('torch' in sys.modules)"``
prints False; ``tests/test_segment_worker.py`` checks it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..boxes import mask_to_rle, xyxy_to_xywh
from ..localization import coco_entry, localize_maps, round_sig, single_threaded
from . import outputs
from .memory_watch import MemoryReleaser, rss_bytes  # noqa: F401  (rss_bytes: re-exported)
from .overlay import render_overlay
from .saved_masks import save_mask

_LIMITS = None  # threadpoolctl's limits, kept alive for the process's life


@dataclass
class SegmentJob:
    """Everything one image's segmentation needs and nothing more (plain arrays; pickled to a
    pool process).

    Attributes:
        image: uint8 ``[h, w, 3]``: the image's working copy for segmentation
            (:func:`wsloc.segment.seeds.working_image`), or the whole image when an overlay is
            drawn on it (``overlay_path``).
        size: ``(H, W)`` of the image (None: ``image.shape[:2]``, the whole image).
        maps: float32 ``[K, h', w']`` maps at the network's input resolution, or (what the
            runner sends unless it draws an overlay, which shows them) the image's
            :class:`wsloc.segment.PreparedMaps`: the maps already on the working grid
            (:func:`wsloc.segment.prepare_maps`), about a tenth of the bytes, the same record.
        classes, logits, probs: ``[K]``; names: ``[K]`` or None; config: the
            :class:`wsloc.segment.SegmentConfig`; gt: the ground truth drawn on the overlay
            (:func:`wsloc.run.overlay.sample_gt`); masks_dir: the run folder whose ``masks/``
            receives the masks (``--save-masks``, :mod:`wsloc.run.saved_masks`), or None.
    """

    index: int
    image_id: int
    file_name: str | None
    path: str | None
    image: np.ndarray
    maps: np.ndarray
    classes: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    names: list | None
    config: object
    overlay_path: str | None = None
    gt: dict | None = None
    size: tuple[int, int] | None = None
    masks_dir: str | None = None


def ok_record(job: SegmentJob, loc) -> dict:
    """The ``images.jsonl`` line of a localized image (fixed key order)."""

    results = []
    for c in loc.classes:
        e = coco_entry(job.image_id, c, mask_to_rle(c.mask))
        boxes = np.round(xyxy_to_xywh(c.boxes), 2).tolist() if len(c.boxes) else []
        results.append({"rank": e["rank"], "category_id": e["category_id"], "name": c.name, "score": e["score"],
                        "logit": round_sig(c.logit, 6), "bbox": e["bbox"], "boxes": boxes, "flag": c.flag,
                        "segmentation": e["segmentation"]})
    return {"index": job.index, "image_id": job.image_id, "file_name": job.file_name, "status": "ok",
            "height": loc.height, "width": loc.width, "results": results}


def segment_job(job: SegmentJob) -> tuple[dict, dict]:
    """Segment one image's maps and build its record (runs in a pool process).

    Returns (record, timings).
    """
    cpu = time.process_time()
    loc = localize_maps(job.image, job.maps, job.classes, job.logits, job.probs, job.config, job.names,
                        keep_maps=False, size=job.size)
    timings = dict(loc.timings)
    timings["segment_cpu"] = time.process_time() - cpu
    t0 = time.perf_counter()
    record = ok_record(job, loc)
    timings["encode"] = time.perf_counter() - t0
    if job.masks_dir is not None:  # before the record goes back: a line on disk always has its masks
        t0 = time.perf_counter()
        for c in loc.classes:
            save_mask(job.masks_dir, job.image_id, c.class_id, c.mask)
        timings["writing"] = time.perf_counter() - t0
    if job.overlay_path and loc.classes:  # (none with targets="gt" on an image without a mapped category)
        t0 = time.perf_counter()
        _save_png_atomic(job.overlay_path, render_overlay(job.image, job.maps, loc, job.gt))
        timings["overlays"] = time.perf_counter() - t0
    if _RELEASE is not None:
        del loc
        _RELEASE()
    return record, timings


def _save_png_atomic(path: str, picture: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    outputs.atomic_write(path, [buf.tobytes()])


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Start a daemon thread that ends this process as soon as ``parent`` is no longer its
    parent (the main process was killed): a SIGKILLed run must not leave workers behind,
    and a worker blocked on a pipe nobody reads would otherwise never exit."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(interval)

    threading.Thread(target=watch, name="wsloc-parent-watch", daemon=True).start()


_RELEASE: MemoryReleaser | None = None  # this worker process's releaser (set by the initializers)


def _pool_init(parent: int, release: bool = True) -> None:
    """Pool process start: one thread per library, Ctrl-C left to the main process, exit
    when the main process dies, and memory released as it is freed."""
    global _RELEASE
    _RELEASE = MemoryReleaser() if release else None
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:  # (never imported here; a user's initializer may have)
        sys.modules["torch"].set_num_threads(1)
    global _LIMITS
    _LIMITS = single_threaded()  # threadpoolctl applies the limit when the object is made; kept for the process
    exit_with_parent(parent)


def _warm() -> int:
    import wsloc.localization  # noqa: F401  (imports numpy, cv2, maxflow, pycocotools once)
    import wsloc.segment  # noqa: F401

    return os.getpid()


def make_pool(workers: int, release_memory: bool = True):
    """A supervised, spawn-started process pool (:class:`wsloc.run.pool.SupervisedPool`: no fork
    of a process that runs torch threads; a worker that dies is replaced and its job run
    again), warmed up; None for ``workers <= 0``."""
    if workers <= 0:
        return None
    from .pool import SupervisedPool

    return SupervisedPool(workers, initializer=_pool_init, initargs=(os.getpid(), release_memory), warm=_warm)
