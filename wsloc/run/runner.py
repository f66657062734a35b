"""The batch runner: a localizer over a whole dataset, overlapped, resumable and sharded.

Three kinds of process work at once::

    DataLoader workers: decode + preprocess batch b+2     (images only, never the model)
    main process:       network on batch b+1               (the only process with the model)
    segmentation pool:  colour models + GraphCut of batch b (numpy arrays in, JSON records out)

The main process writes the per-image records in dataset order as their segmentations
finish (``images.jsonl``, fsync'ed), so a crash loses at most the images in flight; a
resumed run repeats the unfinished batches whole (same batches, same numbers) and writes
only the missing lines. Memory stays flat: at most ``max_pending`` batches wait for the
pool, and nothing accumulates per image in the main process (results are streamed to disk
and read back from there at the end).

Stage times (``summary.json``, seconds summed over the processes that did the work):
``decode`` and ``preprocess`` (loader workers), ``network`` (main), ``prepare`` (map resizing
and seeds), ``colour_models``, ``graph_cut``, ``boxes``, ``encode`` (RLE and record) and
``overlays`` (pool), ``writing`` (main, including fsync), ``release_memory`` (main,
malloc_trim), ``wait_data`` / ``wait_segment`` (main blocked on the loader / on the pool).
They are wall-clock seconds in the process that did the work (so they include time a busy
machine did not give it); ``segment_cpu`` is the CPU time of the four segmentation stages
together. Their sum exceeds the wall time when processes overlap, which is the point.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..errors import ImageLoadError, WslocError
from ..localizer import _single_threaded
from . import outputs, resume, shard as sharding
from .lock import RunLock
from .pool import PoolBroken, WorkerDied
from .saved_maps import save_image_maps
from .segment_worker import (MemoryReleaser, SegmentJob, exit_with_parent, make_pool, rss_bytes,  # noqa: F401
                             segment_job)

log = logging.getLogger("wsloc.run")

_RELEASE = None  # this loader process's MemoryReleaser (set by _loader_init)

SEGMENT_STAGES = ("prepare", "colour_models", "graph_cut", "boxes")
STAGES = ("decode", "preprocess", "network", *SEGMENT_STAGES, "segment_cpu", "encode", "overlays", "writing",
          "release_memory", "wait_data", "wait_segment")


# --------------------------------------------------------------------------- options

@dataclass
class RunOptions:
    """How a dataset run is executed (none of these change the results).

    Attributes:
        out_dir: output folder (shards write to ``out_dir/shards/IIIII-of-NNNNN``).
        shard: (index, count) of this process's share of the batches.
        resume: continue the run already in ``out_dir``.
        overwrite: replace the run already in ``out_dir``.
        workers: decoding processes (DataLoader workers); None: from the machine.
        segment_workers: segmentation processes; 0: segment in the main process; None: from the machine.
        threads: torch threads of the main process; None: from the machine.
        overlays: write PNG pictures of the first this many images of the shard.
        max_pixels: images with more pixels are refused (recorded as errors).
        min_side: images with a side shorter than this are refused (recorded as errors).
        limit: run on the first ``limit`` images of the dataset only.
        progress: show a progress bar.
        max_pending: batches allowed to wait for the segmentation pool.
        memory_check: refuse, before the first batch, a configuration whose estimated memory
            exceeds what the machine has available (:mod:`wsloc.run.memory`).
        release_memory: hand the C heap's free pages back to the system when a process's
            memory has grown (:class:`MemoryReleaser`, in every process of the run), so that
            heap fragmentation cannot make memory creep up over a long run.
        cpus: CPUs this process's worker plan may use (None: all it may use; a torchrun rank:
            its share).
        calibrate: choose the counts left None by timing the stages on the first batch
            (:mod:`wsloc.run.policy`); None: when at least 64 images are left to do (a shorter
            run uses :func:`wsloc.run.policy.default_counts`).
        save_maps: also write every image's saliency maps (float16 ``.npz``, one per image,
            in ``out_dir/maps/``; :mod:`wsloc.run.saved_maps`).
    """

    out_dir: str
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    overwrite: bool = False
    workers: int | None = None
    segment_workers: int | None = None
    threads: int | None = None
    overlays: int = 0
    max_pixels: int = 50_000_000
    min_side: int = 8
    limit: int | None = None
    progress: bool = True
    max_pending: int = 2
    release_memory: bool = True
    memory_check: bool = True
    cpus: int | None = None
    calibrate: bool | None = None
    save_maps: bool = False

    def validate(self) -> None:
        """Raise :class:`WslocError` naming the first invalid option."""
        def bad(name, value, what):
            raise WslocError(f"--{name.replace('_', '-')} {value!r}: {what}")

        for name in ("workers", "segment_workers", "threads", "limit"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if name in (
                    "threads", "limit") else 0)):
                bad(name, v, "must be a positive integer" if name in ("threads", "limit")
                    else "must be 0 or a positive integer")
        for name in ("max_pixels", "min_side"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, v, "must be a positive integer")
        if isinstance(self.overlays, bool) or not isinstance(self.overlays, int) or self.overlays < 0:
            bad("overlays", self.overlays, "must be 0 or a positive integer")
        if self.resume and self.overwrite:
            raise WslocError("--resume and --overwrite exclude each other: choose one")


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def auto_workers(cpus: int, cuda: bool = False) -> tuple[int, int, int]:
    """(decode workers, segmentation workers, torch threads) for ``cpus`` CPUs without a
    measurement: :func:`wsloc.run.policy.default_counts` (the policy lives there)."""
    from .policy import default_counts

    return default_counts(cpus, cuda)


def _worker_plan(localizer, dataset, todo, opts: RunOptions, cuda: bool):
    """The run's :class:`wsloc.run.policy.WorkerPlan`: measured on the first batch when a count
    is left to the machine and the run is long enough (``opts.calibrate``), the user's counts
    applied on top."""
    from . import policy

    cpus = cpu_count() if opts.cpus is None else max(1, opts.cpus)
    left = sum(len(b) for b in todo)
    wanted = opts.calibrate if opts.calibrate is not None else left >= 64
    if todo and wanted and None in (opts.workers, opts.segment_workers, opts.threads):
        first = DecodeBatches(dataset, todo[:1], localizer.preprocess, opts.max_pixels, opts.min_side)[0]
        plan = policy.plan_run(localizer, first, cpus)
    else:
        plan = policy.WorkerPlan(*policy.default_counts(cpus, cuda), why="default counts (not measured)")
    given = {"decode": opts.workers, "segment": opts.segment_workers, "threads": opts.threads}
    for name, value in given.items():
        if value is not None:
            setattr(plan, name, value)
    if any(v is not None for v in given.values()):
        plan.why += "; given: " + ", ".join(f"{k}={v}" for k, v in given.items() if v is not None)
    log.info("worker plan: %s", plan.why)
    return plan


# --------------------------------------------------------------------------- decoding (loader workers)

@dataclass
class DecodedBatch:
    """One batch as the loader workers give it.

    Attributes:
        number: position of the batch in the shard's list.
        items: per image a dict: index, image_id, file_name, path, and either ``image``
            (uint8 [H, W, 3]) or ``stage`` + ``reason`` (an error).
        x: float32 ``[n_ok, 3, h, w]`` network input of the images that loaded, or None.
        timings: {"decode": s, "preprocess": s}.
    """

    number: int
    items: list
    x: object
    timings: dict


class DecodeBatches:
    """Map-style dataset of batches for ``torch.utils.data.DataLoader`` (batch_size=None)."""

    def __init__(self, dataset, batches, preprocess, max_pixels: int | None, min_side: int):
        self.dataset = dataset
        self.batches = [list(b) for b in batches]
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, number: int) -> DecodedBatch:
        import torch

        from ..io import load_image
        from .overlay import sample_gt

        decode = prep = 0.0
        items, tensors = [], []
        for index in self.batches[number]:
            item = {"index": index, "image_id": index, "file_name": None, "path": None}
            t0 = time.perf_counter()
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
                items.append(item)
                decode += time.perf_counter() - t0
                continue
            except Exception as exc:  # a reader bug must not stop the run; it is recorded
                item.update(stage="decode", reason=f"{type(exc).__name__}: {exc}")
                items.append(item)
                decode += time.perf_counter() - t0
                continue
            t1 = time.perf_counter()
            tensors.append(self.preprocess(image))
            prep += time.perf_counter() - t1
            decode += t1 - t0
            item["image"] = image
            items.append(item)
        x = torch.stack(tensors) if tensors else None
        if _RELEASE is not None:
            _RELEASE()
        return DecodedBatch(number, items, x, {"decode": decode, "preprocess": prep})


def _identity(x):
    return x


# --------------------------------------------------------------------------- segmentation (pool)

def error_record(item: dict) -> dict:
    return {"index": item["index"], "image_id": item["image_id"], "file_name": item["file_name"],
            "path": item["path"], "status": "error", "stage": item["stage"], "reason": item["reason"]}


def _loader_init(parent: int, release: bool, worker_id: int) -> None:
    global _RELEASE
    exit_with_parent(parent)
    _RELEASE = MemoryReleaser() if release else None


# --------------------------------------------------------------------------- memory

def _pss_bytes(pid: int | str) -> int:
    """Proportional set size (shared pages divided among their users), or the RSS where
    ``smaps_rollup`` is unavailable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss_bytes(pid)


def process_tree_memory() -> tuple[float, float, float]:
    """(RSS of this process, PSS and RSS summed over it and all its descendants), in MB
    (Linux /proc; else 0).

    PSS counts a page shared by several processes once in total, so the tree's PSS is the
    memory the run really holds; but it also moves when *other* processes on the machine that
    map the same libraries (torch's are hundreds of MB) start or exit. The RSS sum counts
    shared pages once per process, so it overstates the total, but only the run's own
    allocations move it: its growth is the measure of a leak.
    """
    me = os.getpid()
    children: dict[int, list[int]] = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0, 0.0, 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(p))
    total, rss, stack = 0, 0, [me]
    while stack:
        pid = stack.pop()
        total += _pss_bytes(pid)
        rss += rss_bytes(pid)
        stack.extend(children.get(pid, []))
    return rss_bytes(me) / 2**20, total / 2**20, rss / 2**20


# --------------------------------------------------------------------------- the run

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


@dataclass
class _Slot:
    index: int
    value: object  # a record dict, or a Future of (record, timings)
    write: bool  # False when the line was written by an earlier session
    job: SegmentJob | None = None


@dataclass
class RunState:
    stages: dict = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    written: int = 0
    ok: int = 0
    errors: int = 0
    memory: list = field(default_factory=list)


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
        return _run_locked(localizer, dataset, opts, dataset_info)


def _run_locked(localizer, dataset, opts: RunOptions, dataset_info: dict | None) -> dict:
    import torch

    index, count = opts.shard
    n = len(dataset) if opts.limit is None else min(len(dataset), opts.limit)
    bs = localizer.config.batch_size
    mine = sharding.shard_batches(sharding.make_batches(n, bs), index, count)
    run_dir = sharding.shard_dir(opts.out_dir, index, count)
    os.makedirs(run_dir, exist_ok=True)
    total = sum(len(b) for b in mine)
    config = run_config(localizer, dataset_info or {}, opts, n, total)
    state0 = resume.prepare(run_dir, config, opts.resume, opts.overwrite, expected={i for b in mine for i in b})
    outputs.write_json(os.path.join(run_dir, outputs.CONFIG), config)
    done = state0.done
    todo = [b for b in mine if any(i not in done for i in b)]
    first = [i for b in mine for i in b][:max(0, opts.overlays)]
    overlay_at = set(first)

    cuda = localizer.classifier.device.type == "cuda"
    plan = _worker_plan(localizer, dataset, todo, opts, cuda)
    d_workers, s_workers, threads = plan.counts
    d_workers = d_workers if opts.workers is None else opts.workers
    s_workers = s_workers if opts.segment_workers is None else opts.segment_workers
    threads = threads if opts.threads is None else opts.threads
    torch.set_num_threads(max(1, threads))
    log.info("%d images in this shard (%d done before), %d batches to run; %d decode, %d segmentation workers, "
             "%d torch threads", total, len(done & set(i for b in mine for i in b)), len(todo), d_workers,
             s_workers, threads)
    if todo and opts.memory_check:
        from .memory import check_run

        pixels = min(int((dataset_info or {}).get("largest_image_pixels") or 0), opts.max_pixels)
        check_run(localizer, pixels, s_workers, opts.max_pending + 1 + 2 * d_workers)

    st = RunState(ok=state0.n_ok, errors=state0.n_errors)
    pool = make_pool(s_workers, opts.release_memory) if todo else None
    loader = torch.utils.data.DataLoader(
        DecodeBatches(dataset, todo, localizer.preprocess, opts.max_pixels, opts.min_side), batch_size=None,
        shuffle=False, num_workers=d_workers, collate_fn=_identity,
        prefetch_factor=2 if d_workers > 0 else None, pin_memory=cuda,
        worker_init_fn=functools.partial(_loader_init, os.getpid(), opts.release_memory) if d_workers > 0 else None)
    writer = outputs.JsonlWriter(os.path.join(run_dir, outputs.IMAGES))
    already = sum(1 for b in mine for i in b if i in done)
    bar = _progress(total, already, opts.progress)
    pending: deque[list[_Slot]] = deque()
    release = MemoryReleaser() if opts.release_memory else None
    t_start = time.perf_counter()
    next_sample = [0.0]
    interrupted = False

    def sample_memory(force: bool = False) -> None:
        now = time.perf_counter()
        if force or now >= next_sample[0]:
            main, tree, tree_rss = process_tree_memory()
            st.memory.append([already + st.written, round(main, 1), round(tree, 1), round(tree_rss, 1)])
            next_sample[0] = now + 2.0

    def drain(keep: int) -> None:
        # write every finished record in order; wait while more than `keep` batches are pending
        lines = []
        while pending:
            batch = pending[0]
            while batch:
                slot = batch[0]
                value = slot.value
                if isinstance(value, Future):
                    if not value.done():
                        if len(pending) <= keep:
                            break
                        t0 = time.perf_counter()
                        try:
                            value.result()
                        except Exception:
                            pass
                        st.stages["wait_segment"] += time.perf_counter() - t0
                    try:
                        record, timings = value.result()
                        for k, v in timings.items():
                            st.stages[k] = st.stages.get(k, 0.0) + v
                    except PoolBroken:
                        raise
                    except WorkerDied as exc:
                        record = error_record({**_job_item(slot.job), "stage": "segment", "reason": str(exc)})
                    except Exception as exc:
                        record = error_record({**_job_item(slot.job), "stage": "segment",
                                               "reason": f"{type(exc).__name__}: {exc}"})
                else:
                    record = value
                batch.pop(0)
                if slot.write:
                    lines.append(record)
            if batch:
                break
            pending.popleft()
        if lines:
            t0 = time.perf_counter()
            writer.write(lines)  # counted only once written and fsync'ed
            st.written += len(lines)
            n_ok = sum(1 for r in lines if r["status"] == "ok")
            st.ok += n_ok
            st.errors += len(lines) - n_ok
            st.stages["writing"] += time.perf_counter() - t0
            bar.update(len(lines))

    try:
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                decoded = next(it)
            except StopIteration:
                break
            st.stages["wait_data"] += time.perf_counter() - t0
            for k, v in decoded.timings.items():
                st.stages[k] += v
            net = None
            if decoded.x is not None:  # at least one image of the batch loaded
                wanted = None
                if localizer.config.targets == "gt":  # the annotated categories (GT-known protocol)
                    wanted = [item["labels"] for item in decoded.items if "image" in item]
                net = localizer.network(decoded.x, wanted)
                st.stages["network"] += net.seconds
            slots, j = [], 0
            for item in decoded.items:
                write = item["index"] not in done
                if "image" not in item:
                    slots.append(_Slot(item["index"], error_record(item), write))
                    continue
                k = j
                j += 1
                if not write:  # computed as part of its batch only; its line exists already
                    continue
                maps_k, classes_k, logits_k, probs_k = net.image(k)
                if opts.save_maps:
                    t0 = time.perf_counter()
                    save_image_maps(opts.out_dir, item["index"], item["image_id"], maps_k, classes_k,
                                    *item["image"].shape[:2])
                    st.stages["save_maps"] = st.stages.get("save_maps", 0.0) + time.perf_counter() - t0
                job = SegmentJob(index=item["index"], image_id=item["image_id"], file_name=item["file_name"],
                                 path=item["path"], image=item["image"], maps=maps_k, classes=classes_k,
                                 logits=logits_k, probs=probs_k, names=localizer.names_of(classes_k),
                                 config=localizer.segment_config,
                                 overlay_path=_overlay_path(opts.out_dir, item) if item["index"] in overlay_at
                                 else None, gt=item.get("gt") if item["index"] in overlay_at else None)
                if pool is None:
                    fut: Future = Future()
                    try:
                        with _single_threaded():
                            fut.set_result(segment_job(job))
                    except Exception as exc:
                        fut.set_exception(exc)
                else:
                    fut = pool.submit(segment_job, job)
                slots.append(_Slot(item["index"], fut, True, job))
            pending.append(slots)
            del decoded, net, slots
            drain(keep=opts.max_pending)
            if release is not None:
                t0 = time.perf_counter()
                release()
                st.stages["release_memory"] += time.perf_counter() - t0
            sample_memory()
        drain(keep=0)
    except KeyboardInterrupt:
        interrupted = True
        try:
            drain(keep=len(pending))
        except Exception:  # pragma: no cover
            pass
        log.warning("interrupted: the %d images written so far are kept; continue with --resume",
                    already + st.written)
        raise
    finally:
        wall = time.perf_counter() - t_start
        bar.close()
        failed = sys.exc_info()[0] is not None  # an error is on its way out
        close_error = None
        try:
            writer.close()
        except OSError as exc:  # the last lines may not be on the disk: not complete
            close_error = exc
        sample_memory(force=True)  # before the pool goes: the memory of the running pipeline
        if pool is not None:
            pool.shutdown(wait=not interrupted, cancel_futures=True)
        complete = already + st.written >= total and not interrupted and not failed and close_error is None
        lost = None
        if complete:
            from .merge import verify_shard

            try:  # read back: one line per image of the shard, durably there
                verify_shard(run_dir, config)
            except WslocError as exc:
                complete, lost = False, exc
        summary = _summary(st, wall, total, already, complete, interrupted, (d_workers, s_workers, threads), config)
        summary["workers"]["segment_deaths"] = pool.deaths if pool is not None else 0
        summary["workers"]["plan"] = plan.to_dict()
        if complete:
            summary["counts"] = outputs.finalize(
                run_dir, lambda: outputs.iter_jsonl(os.path.join(run_dir, outputs.IMAGES)))
        try:
            outputs.write_json(os.path.join(run_dir, outputs.SUMMARY), summary)
        except OSError:
            if not failed:
                raise  # else the error already on its way says more
    if close_error is not None:
        raise close_error
    if not complete and lost is not None:
        raise WslocError(f"the run's lines did not all reach the disk ({lost}); continue with --resume")
    return summary


def _job_item(job: SegmentJob | None) -> dict:
    if job is None:
        return {"index": -1, "image_id": -1, "file_name": None, "path": None}
    return {"index": job.index, "image_id": job.image_id, "file_name": job.file_name, "path": job.path}


def _overlay_path(out_dir: str, item: dict) -> str:
    stem = os.path.splitext(os.path.basename(item["file_name"] or str(item["index"])))[0]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80]
    return os.path.join(out_dir, outputs.OVERLAYS, f"{item['index']:07d}_{safe}.png")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="localize", dynamic_ncols=True, smoothing=0.1,
                mininterval=0.5, file=sys.stderr)


def _summary(st: RunState, wall: float, total: int, already: int, complete: bool, interrupted: bool,
             workers: tuple, config: dict) -> dict:
    import resource

    processed = st.written
    stages = {k: round(v, 3) for k, v in st.stages.items()}
    segmentation = sum(st.stages.get(k, 0.0) for k in ("colour_models", "graph_cut", "boxes"))
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    mem = st.memory
    return {
        "complete": complete,
        "interrupted": interrupted,
        "shard": config["shard"],
        "images": total,
        "done_before": already,
        "processed": processed,
        "ok": st.ok,
        "errors": st.errors,
        "wall_seconds": round(wall, 3),
        "images_per_second": round(processed / wall, 3) if wall > 0 else None,
        "stage_seconds": stages,
        "stage_fraction_of_wall": {k: round(v / wall, 4) if wall > 0 else None for k, v in st.stages.items()},
        "segmentation_fraction_of_wall": round(segmentation / wall, 4) if wall > 0 else None,
        "workers": {"decode": workers[0], "segment": workers[1], "torch_threads": workers[2]},
        "memory_mb": {"peak_main": round(peak_self, 1),
                      "peak_tree": round(max((m[2] for m in mem), default=0.0), 1),
                      "peak_tree_rss": round(max((m[3] for m in mem), default=0.0), 1),
                      "samples": mem, "columns": ["images_done", "main_rss", "tree_pss", "tree_rss"]},
    }
