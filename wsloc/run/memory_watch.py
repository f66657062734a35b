"""A run's memory while it runs: sampling the process tree, handing free heap pages back.

Plain ``/proc`` reads and glibc's ``malloc_trim``: no torch, so segmentation processes
(:mod:`wsloc.run.segment_worker`) import it too. The estimate made before a run starts is
:mod:`wsloc.run.memory`'s.
"""

from __future__ import annotations

import os
import time

__all__ = ["MemoryReleaser", "MemoryWatch", "process_tree_memory", "pss_bytes", "rss_bytes"]


def rss_bytes(pid: int | str) -> int:
    """Resident set size of process ``pid`` (or ``"self"``) in bytes (``/proc/PID/statm``; 0 where unknown)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def pss_bytes(pid: int | str) -> int:
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


def _children() -> dict[int, list[int]] | None:
    """parent pid -> child pids of every process in ``/proc`` (None where unreadable)."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(p))
    return children


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
    children = _children()
    if children is None:
        return 0.0, 0.0, 0.0
    total, rss, stack = 0, 0, [me]
    while stack:
        pid = stack.pop()
        total += pss_bytes(pid)
        rss += rss_bytes(pid)
        stack.extend(children.get(pid, []))
    return rss_bytes(me) / 2**20, total / 2**20, rss / 2**20


class MemoryReleaser:
    """Keep a long-running process's C heap from creeping up.

    glibc's allocator keeps freed memory in its heaps, and buffers of varying lifetimes (the
    network's activations, pickled jobs and results) fragment them, so a process's resident
    memory can grow by hundreds of MB over a run although nothing is kept (measured: +176 MB
    in 600 images of the benchmark). Calling it (after each batch / job) runs glibc's
    ``malloc_trim`` when the resident set exceeds the lowest level seen after a trim by more
    than ``slack`` bytes; then the free pages go back to the system. A no-op where
    ``malloc_trim`` does not exist.
    """

    def __init__(self, slack: int = 64 * 2**20):
        self.slack = slack
        self.floor: int | None = None
        self.trims = 0
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def __call__(self) -> bool:
        """Trim if needed; returns whether it trimmed."""
        if self._trim is None:
            return False
        rss = rss_bytes("self")
        if self.floor is not None and rss <= self.floor + self.slack:
            return False
        self._trim(0)
        self.trims += 1
        after = rss_bytes("self")
        self.floor = after if self.floor is None else min(self.floor, after)
        return True


class MemoryWatch:
    """The main process's memory stage: after each batch, release free heap pages
    (:class:`MemoryReleaser`, when ``release``) and sample the process tree at most every
    ``interval`` seconds.

    Attributes:
        samples: ``[images_done, main_rss, tree_pss, tree_rss]`` rows (MB; :data:`COLUMNS`).
        seconds: time spent releasing (the ``release_memory`` stage).
    """

    COLUMNS = ["images_done", "main_rss", "tree_pss", "tree_rss"]

    def __init__(self, release: bool = True, interval: float = 2.0):
        self.releaser = MemoryReleaser() if release else None
        self.interval = interval
        self.samples: list[list[float]] = []
        self.seconds = 0.0
        self._next = 0.0

    def after_batch(self, images_done: int) -> None:
        """Release (if asked) and sample (if due)."""
        if self.releaser is not None:
            t0 = time.perf_counter()
            self.releaser()
            self.seconds += time.perf_counter() - t0
        self.sample(images_done)

    def sample(self, images_done: int, force: bool = False) -> None:
        """Record one sample when ``interval`` has passed since the last one (or ``force``)."""
        now = time.perf_counter()
        if force or now >= self._next:
            main, tree, tree_rss = process_tree_memory()
            self.samples.append([images_done, round(main, 1), round(tree, 1), round(tree_rss, 1)])
            self._next = now + self.interval

    def summary(self) -> dict:
        """``summary.json``'s ``memory_mb``: this process's peak RSS, the samples' peaks, the samples."""
        import resource

        peak_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return {"peak_main": round(peak_main, 1),
                "peak_tree": round(max((m[2] for m in self.samples), default=0.0), 1),
                "peak_tree_rss": round(max((m[3] for m in self.samples), default=0.0), 1),
                "samples": self.samples, "columns": list(self.COLUMNS)}
