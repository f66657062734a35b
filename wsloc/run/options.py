"""How a dataset run is executed: :class:`RunOptions` (none of them change the results)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WslocError


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
        lanes: threads that each run the network on a part of every batch, each with its own
            copy of the network and one torch thread (:class:`wsloc.run.network.NetworkStage`;
            ``threads`` is then 1); None: from the machine.
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
        save_masks: also write every result's mask as a PNG (``out_dir/masks/<image_id>_<category_id>.png``;
            :mod:`wsloc.run.saved_masks`).
    """

    out_dir: str
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    overwrite: bool = False
    workers: int | None = None
    segment_workers: int | None = None
    threads: int | None = None
    lanes: int | None = None
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
    save_masks: bool = False

    def validate(self) -> None:
        """Raise :class:`WslocError` naming the first invalid option."""
        def bad(name, value, what):
            raise WslocError(f"--{name.replace('_', '-')} {value!r}: {what}")

        positive = ("threads", "lanes", "limit")
        for name in ("workers", "segment_workers", *positive):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if name in positive else 0)):
                bad(name, v, "must be a positive integer" if name in positive else "must be 0 or a positive integer")
        if (self.lanes or 1) > 1 and (self.threads or 1) > 1:
            bad("threads", self.threads, f"with --lanes {self.lanes} each lane runs one torch thread: give --threads 1")
        for name in ("max_pixels", "min_side"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, v, "must be a positive integer")
        if isinstance(self.overlays, bool) or not isinstance(self.overlays, int) or self.overlays < 0:
            bad("overlays", self.overlays, "must be 0 or a positive integer")
        if self.resume and self.overwrite:
            raise WslocError("--resume and --overwrite exclude each other: choose one")
