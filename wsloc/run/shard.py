"""Splitting a dataset across jobs (``--shard I/N``) and across torchrun processes.

The unit of work is a *batch*: the dataset, in order, is cut into consecutive batches of
``batch_size`` images, and shard ``I`` of ``N`` takes batches ``I, I + N, I + 2N, ...``.
Every image is therefore computed in the same batch whatever the number of shards (and
whether a run was resumed), so the network sees the same inputs and the results are the
same bytes as a single-process run.

Under ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) each process is
one more level of sharding: with ``--shard I/N`` and world size ``W``, rank ``r`` runs shard
``I * W + r`` of ``N * W``. The process group uses gloo on CPU and nccl on CUDA (each rank
on ``cuda:LOCAL_RANK``); it is used for one barrier, after which rank 0 merges.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from ..errors import WslocError

SHARDS_DIR = "shards"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        WslocError: malformed text or out-of-range index.
    """
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise WslocError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise WslocError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def make_batches(n_items: int, batch_size: int) -> list[range]:
    """Consecutive batches of ``batch_size`` indices covering ``0..n_items-1``."""
    return [range(s, min(s + batch_size, n_items)) for s in range(0, n_items, batch_size)]


def shard_batches(batches: list, index: int, count: int) -> list:
    """The batches of shard ``index`` of ``count`` (every ``count``-th, starting at ``index``)."""
    return batches[index::count]


def shard_dirname(index: int, count: int) -> str:
    return f"{index:05d}-of-{count:05d}"


def shard_dir(out_dir: str, index: int, count: int) -> str:
    """Where shard ``index``/``count`` writes: ``out_dir`` itself for an unsharded run."""
    if count == 1:
        return out_dir
    return os.path.join(out_dir, SHARDS_DIR, shard_dirname(index, count))


@dataclass(frozen=True)
class DistEnv:
    """The torchrun environment of this process."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_env(cls, environ=os.environ) -> DistEnv | None:
        """None unless ``WORLD_SIZE`` > 1 (torchrun / torch.distributed launch variables)."""
        try:
            world = int(environ.get("WORLD_SIZE", "1"))
        except ValueError:
            return None
        if world <= 1:
            return None
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
        local_world = int(environ.get("LOCAL_WORLD_SIZE", str(world)))
        return cls(rank, world, local_rank, local_world)

    def combine(self, shard: tuple[int, int]) -> tuple[int, int]:
        """``--shard I/N`` and this rank -> the shard this process runs."""
        i, n = shard
        return i * self.world_size + self.rank, n * self.world_size


def device_for_rank(device: str, env: DistEnv | None) -> str:
    """Each rank on its own GPU: "cuda"/"auto" with CUDA -> ``cuda:LOCAL_RANK``."""
    import torch

    if env is None:
        return device
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and ":" not in device:
        return f"cuda:{env.local_rank}"
    return device


def init_process_group(env: DistEnv, device: str, timeout_hours: float = 48.0) -> str:
    """Join torchrun's process group: nccl when this rank runs on CUDA, gloo otherwise.

    The timeout is long because ranks wait at the final barrier for the slowest one.
    Returns the backend name.
    """
    import torch
    import torch.distributed as dist

    cuda = str(device).startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device(device)} if cuda else {}
        dist.init_process_group(backend=backend, timeout=timedelta(hours=timeout_hours), **kwargs)
    return backend


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
