"""Localization runs at dataset scale: the overlapped batch loop, resumable outputs, shards.

* :func:`run_dataset` / :class:`RunOptions` (:mod:`.runner`, :mod:`.options`): one process's shard of a
  dataset, a loop through its stages: :mod:`.decode` -> :mod:`.network` -> :mod:`.segment_stage` (the
  :mod:`.pool` of :mod:`.segment_worker` processes) -> :mod:`.sink`; :mod:`.policy` chooses the threads
  and processes, :mod:`.memory` checks the memory before and :mod:`.memory_watch` watches it during a run.
* :mod:`.outputs`: the run folder's files and how they are written (atomic, fsync'ed).
* :mod:`.resume`: what a killed run already finished.
* :mod:`.shard`: ``--shard I/N`` and torchrun ranks.
* :func:`merge` (:mod:`.merge`): shard folders -> one run folder.
"""

from __future__ import annotations

import importlib

from .merge import find_shards, merge
from .shard import DistEnv, parse_shard

#: Names of :mod:`.runner`, imported on first use: a segmentation process imports
#: :mod:`.segment_worker`, which must not import the runner (and with it torch).
_RUNNER = ("RunOptions", "auto_workers", "run_dataset")

__all__ = ["DistEnv", "RunOptions", "auto_workers", "find_shards", "merge", "parse_shard", "run_dataset"]


def __getattr__(name: str):
    if name in _RUNNER:
        value = getattr(importlib.import_module(f"{__name__}.runner"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
