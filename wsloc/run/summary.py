"""``summary.json`` of a dataset run: counts, speed, stage times, workers, memory.

Stage times (seconds summed over the processes that did the work): ``decode`` and
``preprocess`` (loader workers), ``network`` (main; with network lanes, the time a lane was
busy, averaged over the lanes), ``prepare`` (map resizing and seeds),
``colour_models``, ``graph_cut``, ``boxes``, ``encode`` (RLE and record) and ``overlays``
(pool), ``writing`` (main, including fsync), ``release_memory`` (main, malloc_trim),
``wait_data`` / ``wait_segment`` (main blocked on the loader / on the pool), ``save_maps``
(main, ``--save-maps`` only). They are wall-clock seconds in the process that did the work
(so they include time a busy machine did not give it); ``segment_cpu`` is the CPU time of the
four segmentation stages together. Their sum exceeds the wall time when processes overlap,
which is the point.
"""

from __future__ import annotations

__all__ = ["SEGMENT_STAGES", "STAGES", "new_stages", "run_summary"]

SEGMENT_STAGES = ("prepare", "colour_models", "graph_cut", "boxes")
STAGES = ("decode", "preprocess", "network", *SEGMENT_STAGES, "segment_cpu", "encode", "overlays", "writing",
          "release_memory", "wait_data", "wait_segment")


def new_stages() -> dict:
    """Stage name -> 0.0 seconds, in the order ``summary.json`` lists them."""
    return {s: 0.0 for s in STAGES}


def run_summary(sink, stages: dict, wall: float, complete: bool, interrupted: bool, workers: dict,
                memory: dict) -> dict:
    """The summary of a run.

    Args:
        sink: the run's :class:`wsloc.run.sink.RunSink` (counts, shard, images).
        stages: stage seconds; wall: wall seconds of the run; complete, interrupted: its end.
        workers: ``{"decode", "segment", "torch_threads", ...}``; memory: ``memory_mb``
            (:meth:`wsloc.run.memory_watch.MemoryWatch.summary`).
    """
    processed = sink.written
    segmentation = sum(stages.get(k, 0.0) for k in ("colour_models", "graph_cut", "boxes"))
    return {
        "complete": complete,
        "interrupted": interrupted,
        "shard": sink.config["shard"],
        "images": sink.total,
        "done_before": sink.already,
        "processed": processed,
        "ok": sink.ok,
        "errors": sink.errors,
        "wall_seconds": round(wall, 3),
        "images_per_second": round(processed / wall, 3) if wall > 0 else None,
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "stage_fraction_of_wall": {k: round(v / wall, 4) if wall > 0 else None for k, v in stages.items()},
        "segmentation_fraction_of_wall": round(segmentation / wall, 4) if wall > 0 else None,
        "workers": workers,
        "memory_mb": memory,
    }
