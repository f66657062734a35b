"""Joining shard folders (``--shard I/N`` job arrays, torchrun ranks) into one run.

The merged folder has the layout of an unsharded run (:mod:`wsloc.run.outputs`), and since
every shard computed its images in the same batches as a single process would, its
``results.json`` is byte for byte the one a single process writes.
"""

from __future__ import annotations

import contextlib
import glob
import heapq
import os

from ..errors import WslocError
from . import outputs
from .resume import config_differences
from .lock import RunLock
from .shard import SHARDS_DIR, make_batches, shard_batches


def find_shards(out_dir: str) -> list[str]:
    """Shard folders under ``out_dir/shards`` (sorted)."""
    return sorted(p for p in glob.glob(os.path.join(out_dir, SHARDS_DIR, "*-of-*")) if os.path.isdir(p))


def _check(shard_dirs: list[str]) -> tuple[list[dict], dict]:
    if not shard_dirs:
        raise WslocError("no shard folders to merge")
    configs = []
    for d in shard_dirs:
        path = os.path.join(d, outputs.CONFIG)
        if not os.path.exists(path):
            raise WslocError(f"{d}: not a shard of a run (no {outputs.CONFIG})")
        configs.append(outputs.read_json(path))
    counts = {int(c["shard"][1]) for c in configs}
    if len(counts) != 1:
        raise WslocError(f"shards of different splits cannot be merged (N = {sorted(counts)})")
    n = counts.pop()
    have = sorted(int(c["shard"][0]) for c in configs)
    if have != list(range(n)):
        missing = sorted(set(range(n)) - set(have))
        dup = sorted({i for i in have if have.count(i) > 1})
        raise WslocError(f"cannot merge: shards {missing} of {n} missing" + (f", {dup} given twice" if dup else ""))
    for d, c in zip(shard_dirs[1:], configs[1:]):
        diffs = config_differences(configs[0], c, keys=("localizer", "dataset", "inputs"))
        if diffs:
            raise WslocError(f"{d}: was run with other options than {shard_dirs[0]} ({'; '.join(diffs)})")
    for d, c in zip(shard_dirs, configs):
        summary_path = os.path.join(d, outputs.SUMMARY)
        summary = outputs.read_json(summary_path) if os.path.exists(summary_path) else {}
        if not summary.get("complete"):
            raise WslocError(f"{d}: shard {c['shard'][0]}/{n} is not finished; run it again with --resume")
        verify_shard(d, c)
    return configs, configs[0]


def expected_indices(config: dict) -> list[int]:
    """The dataset indices a run's ``config.json`` says it covers (its shard's batches)."""
    n = int(config["dataset"]["images"])
    bs = int(config["localizer"]["batch_size"])
    i, count = (int(v) for v in config["shard"])
    return [k for b in shard_batches(make_batches(n, bs), i, count) for k in b]


def verify_shard(shard_dir: str, config: dict) -> int:
    """Check that a shard's ``images.jsonl`` holds exactly one line for each image of its
    share, no more, no fewer, no repeats (a shard whose last writes were lost says
    ``complete`` in vain). Returns the line count.

    Raises:
        WslocError: naming the shard and the first missing, repeated or foreign image.
    """
    path = os.path.join(shard_dir, outputs.IMAGES)
    expected = expected_indices(config)
    want = set(expected)
    seen: set[int] = set()
    n_lines = 0
    try:
        for rec in outputs.iter_jsonl(path):
            n_lines += 1
            k = int(rec["index"])
            if k in seen:
                raise WslocError(f"{path}: image index {k} appears twice; run the shard again with --overwrite")
            if k not in want:
                raise WslocError(f"{path}: image index {k} is not part of shard {config['shard'][0]}/"
                                 f"{config['shard'][1]}; run the shard again with --overwrite")
            seen.add(k)
    except FileNotFoundError:
        raise WslocError(f"{shard_dir}: no {outputs.IMAGES}; run the shard again") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise WslocError(f"{path}: damaged line {n_lines + 1} ({exc}); run the shard again with --overwrite") from None
    if len(seen) != len(want) or config.get("shard_images", len(want)) != len(want):
        missing = sorted(want - seen)
        raise WslocError(f"{shard_dir}: incomplete shard: {len(seen)} of {len(want)} images written (missing index "
                         f"{missing[0] if missing else '?'}{' and more' if len(missing) > 1 else ''}); run it again "
                         "with --resume")
    return n_lines


def merge(out_dir: str, shard_dirs: list[str] | None = None) -> dict:
    """Merge finished shards into ``out_dir``: images.jsonl, results.json, errors.json,
    config.json and summary.json (stage seconds summed, wall time the longest shard's).

    Raises:
        WslocError: no shards, shards missing, unfinished or with lines missing or repeated
            (:func:`verify_shard`), run with different options, or a folder in use by a live run.
    """
    shard_dirs = find_shards(out_dir) if shard_dirs is None else list(shard_dirs)
    with contextlib.ExitStack() as locks:
        locks.enter_context(RunLock(out_dir))  # no other merge or run writes here meanwhile
        for d in shard_dirs:
            if os.path.isdir(d):
                locks.enter_context(RunLock(d))  # no shard is still being written
        return _merge(out_dir, shard_dirs)


def _merge(out_dir: str, shard_dirs: list[str]) -> dict:
    configs, config = _check(shard_dirs)
    paths = [os.path.join(d, outputs.IMAGES) for d in shard_dirs]

    def records():
        return heapq.merge(*(outputs.iter_jsonl(p) for p in paths), key=lambda r: r["index"])

    os.makedirs(out_dir, exist_ok=True)
    outputs.atomic_write(os.path.join(out_dir, outputs.IMAGES), (outputs.dumps(r) + "\n" for r in records()))
    counts = outputs.finalize(out_dir, records)
    merged_config = {**config, "shard": [0, 1], "shard_images": counts["images"],
                     "merged_from": [os.path.relpath(d, out_dir) for d in shard_dirs]}
    outputs.write_json(os.path.join(out_dir, outputs.CONFIG), merged_config)
    summaries = [outputs.read_json(os.path.join(d, outputs.SUMMARY)) for d in shard_dirs]
    stages: dict[str, float] = {}
    for s in summaries:
        for k, v in s.get("stage_seconds", {}).items():
            stages[k] = round(stages.get(k, 0.0) + v, 3)
    wall = max(s.get("wall_seconds", 0.0) for s in summaries)
    summary = {"complete": True, "merged_shards": len(shard_dirs), "images": counts["images"],
               "ok": counts["ok"], "errors": counts["errors"], "results": counts["results"],
               "wall_seconds_longest_shard": wall, "stage_seconds": stages,
               "shards": [{"shard": s.get("shard"), "wall_seconds": s.get("wall_seconds"),
                           "images_per_second": s.get("images_per_second"),
                           "memory_mb_peak_tree": s.get("memory_mb", {}).get("peak_tree")} for s in summaries]}
    outputs.write_json(os.path.join(out_dir, outputs.SUMMARY), summary)
    return summary
