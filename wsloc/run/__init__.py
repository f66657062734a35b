"""Localization runs at dataset scale: the overlapped batch loop, resumable outputs, shards.

* :func:`run_dataset` / :class:`RunOptions` (:mod:`.runner`): one process's shard of a dataset.
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
