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
from ..localization import coco_entry, localize_maps, round_sig
from . import outputs
from .overlay import render_overlay

_LIMITS = None  # threadpoolctl's limits, kept alive for the process's life


@dataclass
class SegmentJob:
    """Everything one image's segmentation needs (plain arrays; pickled to a pool process)."""

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
    gt: dict | None = None  # ground truth drawn on the overlay (wsloc.run.overlay.sample_gt)


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
                        keep_maps=False)
    timings = dict(loc.timings)
    timings["segment_cpu"] = time.process_time() - cpu
    t0 = time.perf_counter()
    record = ok_record(job, loc)
    timings["encode"] = time.perf_counter() - t0
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


class MemoryReleaser:
    """Keep a long-running process's C heap from creeping up.

    glibc's allocator keeps freed memory in its heaps, and buffers of varying lifetimes (the
    network's activations, pickled jobs and results) fragment them, so a process's resident
    memory can grow by hundreds of MB over a run although nothing is kept (measured: +176 MB
    in 600 images of the benchmark). Calling it (after each batch / job) runs glibc's
    ``malloc_trim`` when the resident set exceeds the lowest level seen after a trim by more
    than ``slack`` bytes; then the free pages go back to the system. A no-op where
    ``malloc_trim`` does not exist.
    """

    def __init__(self, slack: int = 64 * 2**20):
        self.slack = slack
        self.floor: int | None = None
        self.trims = 0
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def __call__(self) -> bool:
        """Trim if needed; returns whether it trimmed."""
        if self._trim is None:
            return False
        rss = rss_bytes("self")
        if self.floor is not None and rss <= self.floor + self.slack:
            return False
        self._trim(0)
        self.trims += 1
        after = rss_bytes("self")
        self.floor = after if self.floor is None else min(self.floor, after)
        return True


_RELEASE: MemoryReleaser | None = None  # this worker process's releaser (set by the initializers)


def rss_bytes(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


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
    try:
        from threadpoolctl import threadpool_limits

        global _LIMITS
        _LIMITS = threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover
        pass
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
