"""The batch runner: a localizer over a whole dataset, overlapped, resumable and sharded.

A run is four stages, each a module with one job, and :func:`run_dataset` is the loop through them::

    decode   (wsloc.run.decode)         DataLoader workers: read, check, preprocess batch b+2; keep
                                        the working copy segmentation reads (images only, never the model)
    network  (wsloc.run.network)        main process: the localizer's network on batch b+1 (the only
                                        process with the model)
    segment  (wsloc.run.segment_stage)  segmentation pool: colour models + GraphCut of batch b (numpy
                                        arrays in, JSON records out, in order)
    sink     (wsloc.run.sink)           main process: images.jsonl (fsync'ed), saved maps, overlays'
                                        places, results.json / errors.json, summary.json

beside them :mod:`wsloc.run.options` (:class:`RunOptions`), :mod:`wsloc.run.policy` (how many
threads and processes), :mod:`wsloc.run.memory` (the estimate checked before the first batch) and
:mod:`wsloc.run.memory_watch` (sampling and releasing memory as the run goes).

The sink writes the per-image records in dataset order as their segmentations finish, so a
crash loses at most the images in flight; a resumed run repeats the unfinished batches whole
(same batches, same numbers) and writes only the missing lines. Memory stays flat: at most
``max_pending`` batches wait for the pool, and nothing accumulates per image in the main process
(results are streamed to disk and read back from there at the end). Stage times:
:mod:`wsloc.run.summary`.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time

import numpy as np

from ..errors import WslocError
from . import policy, resume, shard as sharding
from .decode import DecodeBatches, error_record, make_loader
from .lock import RunLock
from .memory_watch import MemoryWatch
from .network import NetworkStage
from .options import RunOptions
from .policy import cpu_count  # noqa: F401  (scripts import it from here)
from .segment_stage import SegmentStage
from .sink import RunSink
from .summary import new_stages, run_summary

__all__ = ["RunOptions", "auto_workers", "cpu_count", "describe_dataset", "run_config", "run_dataset"]

log = logging.getLogger("wsloc.run")


def auto_workers(cpus: int, cuda: bool = False) -> tuple[int, int, int]:
    """(decode workers, segmentation workers, torch threads) for ``cpus`` CPUs without a
    measurement: :func:`wsloc.run.policy.default_counts` (the policy lives there)."""
    return policy.default_counts(cpus, cuda)


# --------------------------------------------------------------------------- what config.json records

def versions() -> dict:
    import cv2
    import sklearn
    import torch
    import torchvision

    from .. import __version__

    out = {"wsloc": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
           "scikit-learn": sklearn.__version__}
    try:
        import maxflow

        out["PyMaxflow"] = getattr(maxflow, "__version__", "?")
    except ImportError:  # pragma: no cover
        pass
    return out


def describe_dataset(dataset, path: str) -> dict:
    """What ``config.json`` records about the dataset (and what shards must agree on): path,
    kind, image root, the content hashes of :func:`wsloc.run.resume.dataset_identity`, and the
    largest annotated image size (for the memory check)."""
    images = resume.image_list(dataset)
    return {"path": os.path.abspath(path), "kind": type(dataset).__name__,
            "image_root": getattr(dataset, "image_root", None),
            **resume.dataset_identity(dataset, path, images),
            "largest_image_pixels": max((w * h for _, _, w, h in images if w > 0 and h > 0), default=0)}


def run_config(localizer, dataset_info: dict, opts: RunOptions, n_images: int, shard_images: int) -> dict:
    """``config.json`` of a run (the identity keys decide whether it may be resumed/merged)."""
    return {
        "localizer": localizer.config.result_fields(),  # nested: LocalizerConfig.from_dict reads it (with device)
        "dataset": {**dataset_info, "images": n_images},
        "shard": list(opts.shard),
        "inputs": {"max_pixels": opts.max_pixels, "min_side": opts.min_side, "limit": opts.limit},
        "shard_images": shard_images,
        "device": str(localizer.classifier.device),
        "command": sys.argv,
        "platform": platform.platform(),
        "versions": versions(),
    }


# --------------------------------------------------------------------------- the run

def run_dataset(localizer, dataset, opts: RunOptions, dataset_info: dict | None = None) -> dict:
    """Localize the images of ``dataset`` (this process's shard) into ``opts.out_dir``.

    The shard's folder is locked for the run's life (:class:`wsloc.run.lock.RunLock`: a
    second run on it is refused at once), and the configuration's memory is checked before
    the first batch (:mod:`wsloc.run.memory`).

    Args:
        localizer: a :class:`wsloc.Localizer` (its model stays in this process).
        dataset: a sequence of :class:`wsloc.io.Sample` (``len`` and ``ds[i]``).
        opts: :class:`RunOptions`.
        dataset_info: JSON-able description recorded in ``config.json`` (path, kind, ...).

    Returns:
        the run's summary (also written to ``summary.json``); ``summary["complete"]`` says
        whether every image of the shard has its line, durably written (fsync'ed and read
        back: one line per image, none missing, none repeated).

    Raises:
        WslocError: invalid options, the folder in use by another run, a configuration that
            does not fit in memory, or a run that cannot be resumed.
    """
    opts.validate()
    run_dir = sharding.shard_dir(opts.out_dir, *opts.shard)
    with RunLock(run_dir):
        return _run_locked(localizer, dataset, opts, dataset_info or {})


def _run_locked(localizer, dataset, opts: RunOptions, info: dict) -> dict:
    stages = new_stages()
    sink = _open_sink(localizer, dataset, opts, info, stages)
    decode = DecodeBatches(dataset, sink.todo, localizer.preprocess, opts.max_pixels, opts.min_side,
                           localizer.segment_config.max_side, whole=sink.overlay_at)
    plan = _apply_plan(localizer, opts, sink, decode, info)
    network = NetworkStage(localizer, plan.lanes)
    segmenter = SegmentStage(plan.segment if sink.todo else 0, opts.release_memory, stages)
    memory = MemoryWatch(opts.release_memory)
    loader = make_loader(decode, plan.decode, localizer.classifier.device.type == "cuda", opts.release_memory)
    sink.open(opts.progress)
    t_start, interrupted = time.perf_counter(), False
    try:
        _pipeline(loader, network, segmenter, sink, memory, stages, opts.max_pending)
    except KeyboardInterrupt:
        interrupted = True
        try:
            sink.write(segmenter.collect(keep=segmenter.pending()))  # what is finished is kept
        except Exception:  # pragma: no cover
            pass
        log.warning("interrupted: the %d images written so far are kept; continue with --resume", sink.images_done)
        raise
    finally:
        failed = sys.exc_info()[0] is not None  # an error is on its way out
        stages["network"] = network.seconds
        network.close()
        summary, error = _finish(sink, segmenter, memory, stages, plan, time.perf_counter() - t_start,
                                 interrupted, failed)
    if error is not None:
        raise error
    return summary


def _pipeline(loader, network: NetworkStage, segmenter: SegmentStage, sink: RunSink, memory: MemoryWatch,
              stages: dict, max_pending: int) -> None:
    """decode -> network -> segment -> sink, batch by batch, the records written in order.

    With network lanes, batch b+1's network runs in their threads while this thread hands
    batch b to the segmentation and writes what is finished (and, without decoding
    processes, decodes batch b+2)."""
    previous = None
    for decoded in _timed(loader, stages):
        submitted = network.submit(decoded)
        if previous is not None:
            _segment(previous, network, segmenter, sink, memory, max_pending)
        previous = submitted
        del decoded, submitted
    if previous is not None:
        _segment(previous, network, segmenter, sink, memory, max_pending)
    sink.write(segmenter.collect(keep=0))


def _segment(submitted, network: NetworkStage, segmenter: SegmentStage, sink: RunSink, memory: MemoryWatch,
             max_pending: int) -> None:
    """A submitted batch's network outputs to the segmentation stage; what is finished to the sink."""
    for item, out in network.results(submitted):
        if not sink.wants(item):  # computed as part of its batch only; its line exists already
            continue
        if out is None:
            segmenter.add(error_record(item))
            continue
        sink.save_maps(item, out[0], out[1])
        segmenter.submit(network.job(item, out, *sink.overlay(item), masks_dir=sink.masks_dir))
    segmenter.end_batch()
    sink.write(segmenter.collect(keep=max_pending))
    memory.after_batch(sink.images_done)


def _timed(loader, stages: dict):
    """The loader's batches; the time waited for each (``wait_data``) and its decode timings go to ``stages``."""
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            decoded = next(it)
        except StopIteration:
            return
        stages["wait_data"] += time.perf_counter() - t0
        for k, v in decoded.timings.items():
            stages[k] += v
        yield decoded
        del decoded


def _open_sink(localizer, dataset, opts: RunOptions, info: dict, stages: dict) -> RunSink:
    """The shard's batches, ``config.json`` and what the folder already holds."""
    index, count = opts.shard
    n = len(dataset) if opts.limit is None else min(len(dataset), opts.limit)
    mine = sharding.shard_batches(sharding.make_batches(n, localizer.config.batch_size), index, count)
    run_dir = sharding.shard_dir(opts.out_dir, index, count)
    config = run_config(localizer, info, opts, n, sum(len(b) for b in mine))
    return RunSink.prepare(run_dir, opts, config, mine, stages)


def _apply_plan(localizer, opts: RunOptions, sink: RunSink, decode: DecodeBatches, info: dict):
    """The worker plan (:func:`wsloc.run.policy.worker_plan`), its threads set, its memory checked."""
    import torch

    plan = policy.worker_plan(localizer, opts, sum(len(b) for b in sink.todo), lambda: decode[0])
    torch.set_num_threads(max(1, plan.threads))
    log.info("%d images in this shard (%d done before), %d batches to run; %d decode, %d segmentation workers, "
             "%d torch threads, %d network lane(s)", sink.total, sink.already, len(sink.todo), *plan.counts, plan.lanes)
    if sink.todo and opts.memory_check:
        from .memory import check_run

        pixels = min(int(info.get("largest_image_pixels") or 0), opts.max_pixels)
        # whole images exist only while they are decoded (and for overlays): one batch per decoding process
        check_run(localizer, pixels, plan.segment, max(1, plan.decode))
    return plan


def _finish(sink: RunSink, segmenter: SegmentStage, memory: MemoryWatch, stages: dict, plan, wall: float,
            interrupted: bool, failed: bool) -> tuple[dict, Exception | None]:
    """Close the run: images.jsonl, the pool, the read-back, results.json / errors.json and
    summary.json. Returns (summary, the error to raise or None)."""
    close_error = sink.close()
    memory.sample(sink.images_done, force=True)  # before the pool goes: the memory of the running pipeline
    segmenter.close(wait=not interrupted)
    stages["release_memory"] = memory.seconds
    complete = sink.images_done >= sink.total and not (interrupted or failed) and close_error is None
    counts, lost = sink.finish() if complete else (None, None)
    complete = complete and lost is None
    workers = {"decode": plan.decode, "segment": plan.segment, "torch_threads": plan.threads, "lanes": plan.lanes,
               "segment_deaths": segmenter.deaths, "plan": plan.to_dict()}
    summary = run_summary(sink, stages, wall, complete, interrupted, workers, memory.summary())
    if counts is not None:
        summary["counts"] = counts
    try:
        sink.write_summary(summary)
    except OSError:
        if not failed:
            raise  # else the error already on its way says more
    if close_error is not None:
        return summary, close_error
    if lost is not None:
        return summary, WslocError(f"the run's lines did not all reach the disk ({lost}); continue with --resume")
    return summary, None
