"""The segmentation stage of a dataset run: jobs submitted to the pool, records collected in order.

Jobs go to a :class:`wsloc.run.pool.SupervisedPool` of segmentation processes (or run at once
in this process, single-threaded, with no pool); their records come back in submission order,
batch by batch, so ``images.jsonl`` is in dataset order. At most ``keep`` batches may wait for
the pool (:meth:`SegmentStage.collect`), which bounds the memory held by jobs in flight. A job
whose process died too often (:class:`wsloc.run.pool.WorkerDied`) or which raised becomes the
image's error record (``stage="segment"``); a broken pool (:class:`wsloc.run.pool.PoolBroken`)
stops the run.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future

from ..localization import single_threaded
from .decode import error_record
from .pool import PoolBroken, WorkerDied
from .segment_worker import SegmentJob, make_pool, segment_job

__all__ = ["SegmentStage"]


class SegmentStage:
    """Segmentation jobs in flight, by batch.

    Args:
        workers: segmentation processes (0: segment in this process at :meth:`submit`).
        release_memory: the processes release their free heap pages after each job.
        stages: the run's stage seconds; the jobs' timings and ``wait_segment`` (this process
            blocked on the pool) are added to it.
    """

    def __init__(self, workers: int, release_memory: bool, stages: dict):
        self.pool = make_pool(workers, release_memory)
        self.stages = stages
        self._pending: deque[list] = deque()  # batches of [job or None, Future of (record, timings) or record]
        self._batch: list = []

    @property
    def deaths(self) -> int:
        """Segmentation processes that died (each was replaced)."""
        return self.pool.deaths if self.pool is not None else 0

    def submit(self, job: SegmentJob) -> None:
        """Queue one image's segmentation in the current batch."""
        if self.pool is not None:
            self._batch.append((job, self.pool.submit(segment_job, job)))
            return
        fut: Future = Future()
        try:
            with single_threaded():
                fut.set_result(segment_job(job))
        except Exception as exc:
            fut.set_exception(exc)
        self._batch.append((job, fut))

    def add(self, record: dict) -> None:
        """Put an already made record (an error) in its place in the current batch."""
        self._batch.append((None, record))

    def end_batch(self) -> None:
        """Close the current batch (an empty one is dropped)."""
        if self._batch:
            self._pending.append(self._batch)
        self._batch = []

    def collect(self, keep: int) -> list[dict]:
        """The records finished so far, in order; waits while more than ``keep`` batches are pending."""
        records = []
        while self._pending:
            batch = self._pending[0]
            while batch:
                job, value = batch[0]
                if isinstance(value, Future):
                    if not value.done() and len(self._pending) <= keep:
                        break
                    value = self._result(job, value)
                batch.pop(0)
                records.append(value)
            if batch:
                break
            self._pending.popleft()
        return records

    def _result(self, job: SegmentJob, fut: Future) -> dict:
        """The record of a finished (or awaited) job; its timings go to the stages."""
        if not fut.done():
            t0 = time.perf_counter()
            try:
                fut.result()
            except Exception:
                pass
            self.stages["wait_segment"] += time.perf_counter() - t0
        try:
            record, timings = fut.result()
        except PoolBroken:
            raise
        except WorkerDied as exc:
            return error_record({**_job_item(job), "stage": "segment", "reason": str(exc)})
        except Exception as exc:
            return error_record({**_job_item(job), "stage": "segment", "reason": f"{type(exc).__name__}: {exc}"})
        for k, v in timings.items():
            self.stages[k] = self.stages.get(k, 0.0) + v
        return record

    def pending(self) -> int:
        """Batches waiting for the pool."""
        return len(self._pending)

    def close(self, wait: bool = True) -> None:
        """Stop the pool (``wait``: let the jobs in flight finish; else kill the processes)."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)


def _job_item(job: SegmentJob) -> dict:
    """The item fields of a job's error record."""
    return {"index": job.index, "image_id": job.image_id, "file_name": job.file_name, "path": job.path}
