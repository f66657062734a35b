"""The sink of a dataset run: everything it writes to its folder, and what it finds there on resume.

One step per output, each a method of :class:`RunSink`:

* :meth:`RunSink.prepare`: the folder, ``config.json`` and the resume state (:func:`wsloc.run.resume.prepare`:
  which images already have their line, which batches are left);
* :meth:`RunSink.write`: lines of ``images.jsonl`` in dataset order, fsync'ed before they count;
* :meth:`RunSink.save_maps`: an image's maps (``--save-maps``, :mod:`wsloc.run.saved_maps`);
* :meth:`RunSink.overlay`: where an image's overlay goes (``--overlays N``; the segmentation
  process draws it);
* :meth:`RunSink.finish`: ``images.jsonl`` read back, ``results.json`` and ``errors.json``
  (:func:`wsloc.run.outputs.finalize`); :meth:`RunSink.write_summary`: ``summary.json``.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import WslocError
from . import outputs, resume
from .saved_maps import save_image_maps

__all__ = ["RunSink"]


class RunSink:
    """A shard's run folder while the run writes it.

    Args:
        run_dir: the shard's folder; opts: the :class:`wsloc.run.RunOptions`; config: its
        ``config.json``; batches: the shard's batches (lists of dataset indices);
        state: the :class:`wsloc.run.resume.ResumeState` of the folder; stages: the run's stage
        seconds (``writing`` and ``save_maps`` are added to it).

    Attributes:
        todo: the batches with an image still to do (run whole, as an uninterrupted run does).
        total, already: images of the shard / with a line before this session.
        written, ok, errors: lines written by this session / all lines that succeeded / failed.
    """

    def __init__(self, run_dir: str, opts, config: dict, batches: list, state: resume.ResumeState, stages: dict):
        self.run_dir, self.out_dir, self.config, self.stages = run_dir, opts.out_dir, config, stages
        self.maps_wanted = opts.save_maps
        #: where the segmentation jobs write their masks (--save-masks; wsloc.run.saved_masks), or None
        self.masks_dir = opts.out_dir if opts.save_masks else None
        indices = [i for b in batches for i in b]
        self.done = state.done
        self.total = len(indices)
        self.already = sum(1 for i in indices if i in state.done)
        self.todo = [b for b in batches if any(i not in state.done for i in b)]
        self.overlay_at = set(indices[:max(0, opts.overlays)])
        self.written, self.ok, self.errors = 0, state.n_ok, state.n_errors
        self._writer = None
        self._bar = _NoBar()

    @classmethod
    def prepare(cls, run_dir: str, opts, config: dict, batches: list, stages: dict) -> RunSink:
        """Create the folder, check what it holds against ``config`` (``--resume`` /
        ``--overwrite``; :func:`wsloc.run.resume.prepare` raises :class:`WslocError`), write ``config.json``."""
        os.makedirs(run_dir, exist_ok=True)
        state = resume.prepare(run_dir, config, opts.resume, opts.overwrite, expected={i for b in batches for i in b})
        outputs.write_json(os.path.join(run_dir, outputs.CONFIG), config)
        return cls(run_dir, opts, config, batches, state, stages)

    def wants(self, item: dict) -> bool:
        """Whether the image still needs its line (it has none from an earlier session)."""
        return item["index"] not in self.done

    def overlay(self, item: dict) -> tuple[str | None, dict | None]:
        """(path, ground truth) of the image's overlay picture, or (None, None) when it gets none."""
        if item["index"] not in self.overlay_at:
            return None, None
        return outputs.overlay_path(self.out_dir, item), item.get("gt")

    def save_maps(self, item: dict, maps, classes) -> None:
        """Write the image's maps when the run saves them (``--save-maps``)."""
        if not self.maps_wanted:
            return
        t0 = time.perf_counter()
        save_image_maps(self.out_dir, item["index"], item["image_id"], maps, classes, *item["size"])
        self.stages["save_maps"] = self.stages.get("save_maps", 0.0) + time.perf_counter() - t0

    def open(self, progress: bool) -> None:
        """Start appending to ``images.jsonl`` (and show a progress bar when ``progress``)."""
        self._writer = outputs.JsonlWriter(os.path.join(self.run_dir, outputs.IMAGES))
        self._bar = _progress(self.total, self.already, progress)

    def write(self, records: list[dict]) -> None:
        """Append lines (fsync'ed; they count only once on the disk)."""
        if not records:
            return
        t0 = time.perf_counter()
        self._writer.write(records)
        self.written += len(records)
        n_ok = sum(1 for r in records if r["status"] == "ok")
        self.ok += n_ok
        self.errors += len(records) - n_ok
        self.stages["writing"] += time.perf_counter() - t0
        self._bar.update(len(records))

    @property
    def images_done(self) -> int:
        return self.already + self.written

    def close(self) -> OSError | None:
        """Close the progress bar and ``images.jsonl``; returns the error of a last write that did
        not reach the disk (then the run is not complete), else None."""
        self._bar.close()
        if self._writer is None:
            return None
        try:
            self._writer.close()
        except OSError as exc:
            return exc
        return None

    def finish(self) -> tuple[dict | None, WslocError | None]:
        """For a run whose every line was written: read ``images.jsonl`` back (one line per image of
        the shard) and write ``results.json`` and ``errors.json``. Returns (counts, None), or
        (None, the error) when lines are missing on the disk."""
        from .merge import verify_shard

        try:
            verify_shard(self.run_dir, self.config)
        except WslocError as exc:
            return None, exc
        images = os.path.join(self.run_dir, outputs.IMAGES)
        return outputs.finalize(self.run_dir, lambda: outputs.iter_jsonl(images)), None

    def write_summary(self, summary: dict) -> None:
        """Write ``summary.json``."""
        outputs.write_json(os.path.join(self.run_dir, outputs.SUMMARY), summary)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="localize", dynamic_ncols=True, smoothing=0.1,
                mininterval=0.5, file=sys.stderr)
