"""Localization runs at dataset scale: the overlapped batch loop, resumable outputs, shards.

* :func:`run_dataset` / :class:`RunOptions` (:mod:`.runner`): one process's shard of a dataset.
* :mod:`.outputs`: the run folder's files and how they are written (atomic, fsync'ed).
* :mod:`.resume`: what a killed run already finished.
* :mod:`.shard`: ``--shard I/N`` and torchrun ranks.
* :func:`merge` (:mod:`.merge`): shard folders -> one run folder.
"""

from .merge import find_shards, merge
from .runner import RunOptions, auto_workers, run_dataset
from .shard import DistEnv, parse_shard

__all__ = ["DistEnv", "RunOptions", "auto_workers", "find_shards", "merge", "parse_shard", "run_dataset"]
