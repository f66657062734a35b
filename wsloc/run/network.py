"""The network stage of a dataset run: the localizer's batched network pass (main process only).

For a :class:`wsloc.run.decode.DecodedBatch` it gives each image's classes and maps
(:meth:`wsloc.Localizer.network`: the top-k, or the annotated categories with
``targets="gt"``) and turns them into the :class:`wsloc.run.segment_worker.SegmentJob` of
the image: what the segmentation stage needs, nothing more (the image's working copy and its
maps on the working grid, :func:`wsloc.segment.prepare_maps`).

With ``lanes`` > 1 the batch is cut into that many contiguous parts, each run by its own
thread on its own copy of the network (:meth:`wsloc.Localizer.replica`) with one torch thread:
the lanes never wait for each other inside a layer, as the OpenMP threads of one pass do at
every layer (and badly when a segmentation process shares their cores), and torch releases
the GIL inside its kernels. The parts are cut at multiples of the localizer's network call
(:attr:`wsloc.Localizer.max_pixels`), so every image goes through the same calls, and gets
the same maps, as with one lane.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ..saliency.core import images_per_call
from ..segment import prepare_maps
from .segment_worker import SegmentJob

__all__ = ["NetworkStage", "lane_parts", "split_batch"]


def split_batch(n: int, lanes: int, align: int = 1) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` parts of a batch of ``n`` for ``lanes`` lanes, each a multiple
    of ``align`` images long but the last, none empty (fewer parts than lanes for a small batch)."""
    align = max(1, int(align))
    size = -(-max(1, -(-n // max(1, lanes))) // align) * align  # ceil(n / lanes), up to a multiple of align
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def lane_parts(localizer, x, lanes: int) -> list[tuple[int, int]]:
    """The parts of the batch ``x`` for ``lanes`` lanes of ``localizer``, cut at its network calls
    (:attr:`wsloc.Localizer.max_pixels`), so each image goes through the calls of one lane."""
    return split_batch(x.shape[0], lanes, images_per_call(localizer.max_pixels, x.shape[-2:]) or 1)


class NetworkStage:
    """The localizer's network on decoded batches.

    Args:
        localizer: the run's :class:`wsloc.Localizer` (its model stays in this process).
        lanes: threads running the network on parts of each batch (1: the calling thread only).

    Attributes:
        seconds: wall time of the network passes so far (the ``network`` stage; with lanes, the
            time each lane was busy, averaged over the lanes).
    """

    def __init__(self, localizer, lanes: int = 1):
        self.localizer = localizer
        self.lanes = [localizer] + [localizer.replica() for _ in range(max(1, int(lanes)) - 1)]
        # one thread per lane: a lane's parts of consecutive batches never run at once on its network
        self._pools = [ThreadPoolExecutor(1, f"wsloc-lane-{i}") for i in range(len(self.lanes))] \
            if len(self.lanes) > 1 else None
        self.seconds = 0.0

    def close(self) -> None:
        """Stop the lanes' threads (a batch in flight is finished first)."""
        for pool in self._pools or ():
            pool.shutdown(wait=True)
        self._pools = None

    def _parts(self, x, wanted) -> list:
        """Futures of :meth:`wsloc.Localizer.network` on the lanes' parts of the batch ``x``
        (each ``(output, start, end)`` seconds on the lane's clock); ``wanted`` cut alike."""
        def lane_run(lane, a, b):
            t0 = time.perf_counter()
            out = lane.network(x[a:b], None if wanted is None else wanted[a:b])
            return out, t0, time.perf_counter()

        return [pool.submit(lane_run, lane, a, b)
                for pool, lane, (a, b) in zip(self._pools, self.lanes, lane_parts(self.localizer, x, len(self.lanes)))]

    def forward(self, x, wanted=None) -> list:
        """:meth:`wsloc.Localizer.network` of the batch ``x`` as a list of outputs of its
        consecutive parts (one per lane used; ``wanted`` cut alike)."""
        return self._outputs(self._start(x, wanted))

    def _start(self, x, wanted):
        if self._pools is None:  # one lane: at once, in this thread
            t0 = time.perf_counter()
            out = self.localizer.network(x, wanted)
            self.seconds += time.perf_counter() - t0
            return [out]
        return self._parts(x, wanted)

    def _outputs(self, started) -> list:
        if self._pools is None:
            return started
        done = [f.result() for f in started]
        self.seconds += sum(end - start for _, start, end in done) / len(self.lanes)  # the lanes' mean busy time
        return [out for out, _, _ in done]

    def submit(self, decoded):
        """Start the network on a :class:`wsloc.run.decode.DecodedBatch`; with lanes it runs in
        their threads while this one goes on (hand the result to :meth:`results`)."""
        if decoded.x is None:  # no image of the batch loaded
            return decoded, []
        wanted = None
        if self.localizer.config.targets == "gt":  # the annotated categories (GT-known protocol)
            wanted = [item["labels"] for item in decoded.items if "image" in item]
        return decoded, self._start(decoded.x, wanted)

    def results(self, submitted) -> Iterator[tuple[dict, tuple | None]]:
        """Per item of a :meth:`submit`-ted batch, in order: ``(item, (maps, classes, logits,
        probs))`` for an image that loaded (its :meth:`wsloc.localizer.NetworkOutput.image`),
        ``(item, None)`` for one that did not (waiting for the lanes first)."""
        decoded, started = submitted
        outs = self._outputs(started) if started else []
        loaded = ((out, i) for out in outs for i in range(out.classes.shape[0]))
        for item in decoded.items:
            if "image" not in item:
                yield item, None
                continue
            out, i = next(loaded)
            yield item, out.image(i)

    def run(self, decoded) -> Iterator[tuple[dict, tuple | None]]:
        """:meth:`results` of :meth:`submit`: one network pass for the whole batch (one per lane)."""
        return self.results(self.submit(decoded))

    def job(self, item: dict, out: tuple, overlay_path: str | None = None, gt: dict | None = None,
            masks_dir: str | None = None) -> SegmentJob:
        """The segmentation job of a loaded ``item`` and its network output ``out``; with an
        ``overlay_path`` the picture is drawn (with ``gt``) on the item's image, which is then
        whole, and on the maps, which then go whole too; else the maps go on the working grid
        (:func:`wsloc.segment.prepare_maps`, run here: a tenth of the bytes to pickle). With a
        ``masks_dir`` the job writes its masks there (``--save-masks``)."""
        maps, classes, logits, probs = out
        if overlay_path is None and len(maps):
            maps = prepare_maps(maps, item["size"], self.localizer.segment_config)
        return SegmentJob(index=item["index"], image_id=item["image_id"], file_name=item["file_name"],
                          path=item["path"], image=item["image"], size=item["size"], maps=maps, classes=classes,
                          logits=logits, probs=probs, names=self.localizer.names_of(classes),
                          config=self.localizer.segment_config, overlay_path=overlay_path, gt=gt,
                          masks_dir=masks_dir)
