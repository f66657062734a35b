"""Continuing a killed run (``--resume``) without recomputing finished images.

What is finished is what ``images.jsonl`` holds: one complete line per image, written in
dataset order and fsync'ed. On resume the torn last line of a crash is cut off, the stored
configuration is compared with the new one (a run cannot be continued with other options),
and the batches that still hold an unfinished image are run again *whole*, so every image is
computed in the same batch as in an uninterrupted run; only the lines not yet written are
appended.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import WslocError
from .outputs import CONFIG, IMAGES, read_json, read_jsonl

# Entries of config.json that must be equal for a run to be continued or shards merged.
IDENTITY_KEYS = ("localizer", "dataset", "shard", "inputs")


@dataclass
class ResumeState:
    """What a run folder already holds.

    Attributes:
        done: dataset indices with a line in ``images.jsonl``.
        n_ok, n_errors: how many of them succeeded / failed.
    """

    done: set[int] = field(default_factory=set)
    n_ok: int = 0
    n_errors: int = 0


def config_differences(old: dict, new: dict, keys=IDENTITY_KEYS) -> list[str]:
    """Dotted paths where two run configurations differ (only the keys that decide results)."""
    out: list[str] = []

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")

    for k in keys:
        walk(old.get(k), new.get(k), k)
    return out


def holds_run(run_dir: str) -> bool:
    """Whether ``run_dir`` already holds (part of) a run."""
    return os.path.exists(os.path.join(run_dir, IMAGES)) or os.path.exists(os.path.join(run_dir, CONFIG))


def refuse_existing(run_dir: str, resume: bool, overwrite: bool) -> None:
    """Raise :class:`WslocError` when ``run_dir`` holds a run and neither flag says what to do with it."""
    if holds_run(run_dir) and not (resume or overwrite):
        raise WslocError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it")


def prepare(run_dir: str, config: dict, resume: bool, overwrite: bool) -> ResumeState:
    """Check ``run_dir`` for a previous run and return what is already done.

    * nothing there: a fresh run;
    * a previous run and ``resume``: its configuration must match ``config`` (else
      :class:`WslocError` listing the differences); its finished images are returned;
    * a previous run and ``overwrite``: its files are removed;
    * a previous run and neither: :class:`WslocError` telling the user to choose.
    """
    images = os.path.join(run_dir, IMAGES)
    cfg_path = os.path.join(run_dir, CONFIG)
    if not holds_run(run_dir):
        return ResumeState()
    if overwrite:
        from .outputs import ERRORS, METRICS, RESULTS, SUMMARY

        for name in (IMAGES, RESULTS, ERRORS, CONFIG, SUMMARY, METRICS):
            try:
                os.unlink(os.path.join(run_dir, name))
            except FileNotFoundError:
                pass
        return ResumeState()
    refuse_existing(run_dir, resume, overwrite)
    if os.path.exists(cfg_path):
        diffs = config_differences(read_json(cfg_path), config)
        if diffs:
            raise WslocError(f"{run_dir}: cannot resume with different options ({'; '.join(diffs)}); "
                             "use another --out or --overwrite")
    try:
        records = read_jsonl(images, repair=True)
    except ValueError as exc:
        raise WslocError(f"cannot resume: {exc}") from None
    state = ResumeState()
    for rec in records:
        state.done.add(int(rec["index"]))
        if rec.get("status") == "ok":
            state.n_ok += 1
        else:
            state.n_errors += 1
    return state
