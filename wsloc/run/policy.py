"""The worker policy of dataset runs: torch threads, decoding processes and segmentation processes.

One owner for the question "how should this machine split the work?": :func:`worker_plan`
(what :func:`wsloc.run.run_dataset` runs with) and :func:`cpu_count` (the CPUs it may use; a
``torchrun`` rank of ``wsloc localize`` takes ``cpu_count(share=local_world_size)``).
It measures instead of guessing: :func:`calibrate` times the preset's stages on a few
images of the run (network seconds per image on 1 thread and on all threads, segmentation
CPU seconds per image, decoding seconds per image), and :func:`choose` picks the counts
whose predicted throughput is the highest.

The model behind :func:`predict` (seconds per image; ``N(t)`` the network at ``t`` threads,
fitted by Amdahl's law through the measured points; ``S`` segmentation, ``D`` decoding)::

    main process   1 / (N(t) + S [if no segmentation process] + D [if no decoding process])
    segmentation   s / S          (s processes, one thread each)
    decoding       d / D
    all CPUs       cpus / (t * N(t) + S + D)      (CPU seconds the work needs per image)
    images/s = the smallest of these;   t + s <= cpus

    with L network lanes (one torch thread each, :class:`wsloc.run.network.NetworkStage`),
    N_L their measured wall seconds per image:  main 1 / (N_L + ...), all CPUs
    cpus / (L * N_L + S + D); lanes may share cores with segmentation processes

The constraint ``t + s <= cpus`` comes from a measurement (``scripts/benchmark.py``, issue 6):
OpenMP threads that share a core with a busy segmentation process wait for each other at
every parallel region, and ran the network 3x slower. Lanes are plain threads that never wait
for each other inside a layer, so they may share cores: the scheduler hands a core that the
segmentation leaves idle to a lane, and back (on 2 CPUs with the default preset: 2 lanes and
1 segmentation process, BENCHMARKS.md "Speed at the machine's limit"). Decoding processes are light and may
share cores. On CUDA the network's ``N`` is the device time per image, one thread drives
it, and the CPUs go to segmentation and decoding.

What it picks (``tests/test_policy.py``):

* 2 CPUs, Grad-CAM default preset (network 0.28 s on 1 thread, 0.16 s on 2, segmentation
  0.04 s): 2 threads, segmentation in the main process, 1 decoding process, 5.0 images/s
  predicted, against 3.6 for 1 thread + 1 segmentation process (the issue's measurement:
  3.3 and 4.4 images/s): the network scales well enough over two threads that pausing it for
  the short segmentation costs less than giving the segmentation a core of its own.
* a segmentation-heavy preset (network cheap, segmentation dear): 1 thread + 1 segmentation
  process.
* 16-64 CPUs beside a GPU (device time ~2 ms per image, segmentation 40 ms, decoding
  10 ms): one thread drives the GPU and the rest is split so that segmentation and
  decoding keep up with it (32 CPUs: 20 segmentation and 5 decoding processes for the
  GPU's 500 images/s; fewer processes than cores when the GPU is the bound), because the
  GPU does the network in a few ms and segmentation, 20x dearer per image, becomes the
  stage to feed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

__all__ = ["StageCosts", "WorkerPlan", "calibrate", "choose", "cpu_count", "default_counts", "predict", "worker_plan"]

log = logging.getLogger("wsloc.run")


@dataclass(frozen=True)
class StageCosts:
    """Measured cost of one image in each stage.

    Attributes:
        network: {threads: wall seconds per image of the network stage} (at least one entry;
            on CUDA: {1: device seconds per image}).
        segment: CPU seconds per image of the segmentation (colour models, cut, boxes), one thread.
        decode: CPU seconds per image of decoding and preprocessing.
        cuda: whether the network runs on a GPU (then threads do not speed it up).
        lanes: {lanes: wall seconds per image of the network stage with that many lanes of one
            torch thread each (:class:`wsloc.run.network.NetworkStage`)}; may be empty.
    """

    network: dict
    segment: float
    decode: float = 0.0
    cuda: bool = False
    lanes: dict = field(default_factory=dict)

    def network_at(self, threads: int) -> float:
        """Network seconds per image at ``threads`` threads (Amdahl's law through the measured points)."""
        pts = {int(k): float(v) for k, v in self.network.items()}
        if threads in pts:
            return pts[threads]
        if self.cuda:
            return min(pts.values())
        one = pts.get(1)
        if one is None:  # only multi-thread points: take the best one as a floor
            return min(pts.values())
        others = [(t, v) for t, v in pts.items() if t > 1]
        if not others:  # one point: assume perfect scaling (optimistic; calibrate measures two)
            return one / threads
        t_m, v_m = max(others)
        serial = min(1.0, max(0.0, (v_m / one - 1.0 / t_m) / (1.0 - 1.0 / t_m)))
        return one * (serial + (1.0 - serial) / threads)


@dataclass
class WorkerPlan:
    """Process and thread counts of a run, and what the policy expected of them.

    Attributes:
        decode, segment, threads: decoding processes, segmentation processes (0: in the main
            process), torch threads of the main process (of each lane).
        lanes: threads running the network on parts of each batch (:class:`wsloc.run.network.NetworkStage`).
        images_per_second: predicted throughput (0.0 when nothing was measured).
        seconds: wall seconds spent choosing the plan (its calibration), before the run's
            wall clock starts.
        bound: the CPU-time bound, ``cpus / (N(1) + S + D)`` images/s (0.0 when not measured).
        why: one line saying how the counts were chosen.
        costs: the :class:`StageCosts` used, as a dict, or None.
    """

    decode: int
    segment: int
    threads: int
    lanes: int = 1
    images_per_second: float = 0.0
    seconds: float = 0.0
    bound: float = 0.0
    why: str = ""
    costs: dict | None = field(default=None)

    @property
    def counts(self) -> tuple[int, int, int]:
        """(decode, segment, threads), the order of :func:`default_counts`."""
        return self.decode, self.segment, self.threads

    def to_dict(self) -> dict:
        return asdict(self)


def predict(costs: StageCosts, cpus: int, threads: int, segment: int, decode: int, lanes: int = 1) -> float:
    """Predicted images/s of a plan (see the module docstring); 0.0 for a plan that oversubscribes
    OpenMP threads or uses lanes that were not measured."""
    if threads < 1 or segment < 0 or decode < 0:
        return 0.0
    if lanes > 1:  # plain threads of one torch thread each: they may share cores with the segmentation
        if costs.cuda or threads != 1 or lanes not in costs.lanes:
            return 0.0
        n = float(costs.lanes[lanes])
        network_cpu = lanes * n
    else:
        if threads + segment > cpus and not costs.cuda:
            return 0.0
        n = costs.network_at(threads)
        network_cpu = (1.0 if costs.cuda else threads) * n
    main = n + (costs.segment if segment == 0 else 0.0) + (costs.decode if decode == 0 else 0.0)
    rates = [1.0 / main if main > 0 else math.inf]
    if segment:
        rates.append(segment / costs.segment if costs.segment > 0 else math.inf)
    if decode:
        rates.append(decode / costs.decode if costs.decode > 0 else math.inf)
    host = network_cpu + costs.segment + costs.decode
    if host > 0:
        rates.append(cpus / host)
    return min(rates)


def bound(costs: StageCosts, cpus: int) -> float:
    """The CPU-time bound: ``cpus`` divided by the CPU seconds one image needs (network on one thread)."""
    need = costs.network_at(1) + costs.segment + costs.decode
    return cpus / need if need > 0 else math.inf


def choose(costs: StageCosts, cpus: int) -> WorkerPlan:
    """The counts with the highest :func:`predict`; among plans within 1 % of it, the one with
    the fewest processes (then the most threads).

    Args:
        costs: measured :class:`StageCosts`.
        cpus: CPUs this run may use (>= 1).
    """
    cpus = max(1, int(cpus))
    candidates = []
    thread_range = [1] if costs.cuda else range(1, cpus + 1)
    for t in thread_range:
        for s in range(0, max(0, cpus - t if not costs.cuda else cpus - 1) + 1):
            for d in range(0, max(1, cpus - t - s) + 1):
                candidates.append((predict(costs, cpus, t, s, d), t, s, d, 1))
    for lanes in sorted(k for k in costs.lanes if int(k) > 1):
        for s in range(0, cpus + 1):
            for d in range(0, max(1, cpus - s) + 1):
                candidates.append((predict(costs, cpus, 1, s, d, int(lanes)), 1, s, d, int(lanes)))
    candidates = [c for c in candidates if c[0] > 0]
    best = max(c[0] for c in candidates)
    rate, t, s, d, lanes = min((c for c in candidates if c[0] >= 0.99 * best),
                               key=lambda c: (c[2] + c[3], c[4], -c[1]))
    where = ("GPU" if costs.cuda else f"{lanes} lanes of 1 thread" if lanes > 1
             else f"{t} thread{'s' if t > 1 else ''}")
    why = (f"measured network {costs.network_at(1):.3f} s/image on 1 thread"
           + ("" if costs.cuda else f", {costs.network_at(cpus):.3f} on {cpus}")
           + "".join(f", {float(v):.3f} in {k} lanes" for k, v in sorted(costs.lanes.items()))
           + f", segmentation {costs.segment:.3f}, decoding {costs.decode:.3f}: network on {where}, "
           + (f"{s} segmentation process{'es' if s > 1 else ''}" if s else "segmentation in the main process")
           + f", {d} decoding process{'es' if d != 1 else ''}; predicted {rate:.2f} images/s "
           + f"(CPU-time bound {bound(costs, cpus):.2f})")
    return WorkerPlan(decode=d, segment=s, threads=t, lanes=lanes, images_per_second=rate, bound=bound(costs, cpus),
                      why=why, costs=asdict(costs))


def default_counts(cpus: int, cuda: bool = False) -> tuple[int, int, int]:
    """(decode workers, segmentation workers, torch threads) without a measurement.

    Used when there is nothing to calibrate on (an empty run, every image failing to load)
    and by callers that need counts before a model exists. It assumes the network is the
    dearest stage, as for both presets with Lite0 on a CPU: on up to 2 CPUs the network
    takes every core and the segmentation runs between batches (the measured choice of
    :func:`choose` there); beyond that a quarter of the cores (at least one) segment.
    On CUDA one thread drives the GPU and the rest decode (a quarter, up to 4) and segment.
    """
    cpus = max(1, int(cpus))
    decode = 1 if cpus <= 4 else min(4, cpus // 4)
    if cuda:
        return decode, max(1, cpus - decode - 1), 1
    if cpus <= 2:
        return min(decode, cpus - 1) if cpus > 1 else 0, 0, cpus
    segment = max(1, cpus // 4)
    return decode, segment, cpus - segment


def calibrate(localizer, x, images, cpus: int, n_network: int | None = None, n_segment: int = 2,
              sizes=None, repeats: int = 2) -> StageCosts:
    """Time the localizer's stages on a few images of the run (discarding the results).

    Args:
        localizer: the run's :class:`wsloc.Localizer`.
        x: float32 ``[n, 3, h, w]`` preprocessed batch (the run's first batch).
        images: the batch's uint8 ``[H, W, 3]`` images, or their working copies with ``sizes``
            (for the segmentation timing).
        cpus: CPUs the run may use (the network is timed on 1 thread and on ``cpus``).
        n_network, n_segment: images timed per network setting (default: the whole batch, as the
            run computes it: at 448 px a batch of 8 costs more per image than 1 image) / for segmentation.
        sizes: per image its ``(H, W)`` when ``images`` are working copies; None: their shapes.
        repeats: timed passes per setting (1 thread, all threads, ``cpus`` lanes of one thread),
            taken in turn; the fastest of each counts.

    Returns:
        :class:`StageCosts` (decode left 0: the caller knows it from decoding the batch).
        The torch thread count is restored. Cost: a warm-up, then ``repeats`` timed passes
        per setting (default preset, Lite0, 2 CPUs: about 3 s at the start of a run, recorded
        as the run's ``plan`` stage).
    """
    import torch

    from ..localization import localize_maps, single_threaded
    from .network import NetworkStage, lane_parts

    cuda = localizer.classifier.device.type == "cuda"
    xs = x if n_network is None else x[:max(1, n_network)]  # the run's batch: per-image cost depends on it
    before = torch.get_num_threads()
    network: dict[int, float] = {}
    out = None
    try:
        settings = [1] if cuda else sorted({1, max(1, cpus)})
        torch.set_num_threads(settings[-1])
        localizer.network(xs)  # one warm-up on the same shapes: thread pool, kernel choice, allocator
        # as many lanes as the CPUs, or as the batch has parts of whole network calls (fewer on many CPUs)
        n_lanes = len(lane_parts(localizer, xs, cpus))
        stage = None if cuda or n_lanes < 2 else NetworkStage(localizer, n_lanes)
        lanes: dict[int, float] = {}
        try:
            if stage is not None:
                torch.set_num_threads(1)
                stage.forward(xs)  # the lanes' fresh copies of the network, warmed up
            for _ in range(repeats):  # the settings in turn, the best of each: the machine's noise is large
                for t in settings:
                    torch.set_num_threads(t)
                    t0 = time.perf_counter()
                    out = localizer.network(xs)
                    network[t] = min(network.get(t, math.inf), (time.perf_counter() - t0) / len(xs))
                if stage is not None:
                    torch.set_num_threads(1)
                    t0 = time.perf_counter()
                    stage.forward(xs)
                    lanes[n_lanes] = min(lanes.get(n_lanes, math.inf), (time.perf_counter() - t0) / len(xs))
        finally:
            if stage is not None:
                stage.close()
    finally:
        torch.set_num_threads(before)
    k = min(len(images), max(1, n_segment), out.maps.shape[0])
    with single_threaded():
        c0 = time.process_time()
        for i in range(k):
            localize_maps(images[i], out.maps[i], out.classes[i], out.logits[i], out.probs[i],
                          localizer.segment_config, keep_maps=False, size=None if sizes is None else sizes[i])
        seg = (time.process_time() - c0) / k
    return StageCosts(network=network, segment=seg, cuda=cuda, lanes=lanes)


def plan_run(localizer, decoded, cpus: int) -> WorkerPlan:
    """The measured plan for a run whose first decoded batch is ``decoded``
    (a :class:`wsloc.run.decode.DecodedBatch`); :func:`default_counts` when it has no image."""
    cuda = localizer.classifier.device.type == "cuda"
    loaded = [item for item in getattr(decoded, "items", []) if "image" in item]
    images = [item["image"] for item in loaded]
    if decoded is None or decoded.x is None or not images:
        d, s, t = default_counts(cpus, cuda)
        return WorkerPlan(d, s, t, why="no image to measure on: default counts")
    costs = calibrate(localizer, decoded.x, images, cpus, sizes=[item.get("size") for item in loaded])
    spent = sum(decoded.timings.get(k, 0.0) for k in ("decode", "preprocess"))
    costs = replace(costs, decode=spent / len(images))
    return choose(costs, cpus)


def cpu_count(share: int = 1) -> int:
    """CPUs one process of a run may use: its affinity mask's, divided among ``share`` processes
    (the ranks ``torchrun`` starts on one node), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(share)))


def worker_plan(localizer, opts, left: int, first_batch) -> WorkerPlan:
    """The worker plan of a run: measured on its first batch (:func:`plan_run`) when a count is
    left to the machine and the run is long enough, else :func:`default_counts`; the counts the
    user gave replace the chosen ones.

    Args:
        localizer: the run's :class:`wsloc.Localizer`.
        opts: the run's :class:`wsloc.run.RunOptions` (``workers``, ``segment_workers``,
            ``threads``: given counts or None; ``cpus``: None for :func:`cpu_count`;
            ``calibrate``: None for "when at least 64 images are left").
        left: images the run has left to do.
        first_batch: called (only when measuring) for the run's first
            :class:`wsloc.run.decode.DecodedBatch`.
    """
    t0 = time.perf_counter()
    cuda = localizer.classifier.device.type == "cuda"
    cpus = cpu_count() if opts.cpus is None else max(1, opts.cpus)
    wanted = opts.calibrate if opts.calibrate is not None else left >= 64
    if left and wanted and None in (opts.workers, opts.segment_workers, opts.threads):
        plan = plan_run(localizer, first_batch(), cpus)
    else:
        plan = WorkerPlan(*default_counts(cpus, cuda), why="default counts (not measured)")
    given = {"decode": opts.workers, "segment": opts.segment_workers, "threads": opts.threads,
             "lanes": opts.lanes}
    for name, value in given.items():
        if value is not None:
            setattr(plan, name, value)
    if plan.lanes > 1 and plan.threads > 1:  # lanes run one torch thread each: the given count wins
        if given["threads"] is not None and given["lanes"] is None:
            plan.lanes = 1
        else:
            plan.threads = 1
    if any(v is not None for v in given.values()):
        plan.why += "; given: " + ", ".join(f"{k}={v}" for k, v in given.items() if v is not None)
    plan.seconds = time.perf_counter() - t0
    log.info("worker plan: %s", plan.why)
    return plan
