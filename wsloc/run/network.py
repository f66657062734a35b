"""The network stage of a dataset run: the localizer's batched network pass (main process only).

For a :class:`wsloc.run.decode.DecodedBatch` it gives each image's classes and maps
(:meth:`wsloc.Localizer.network`: the top-k, or the annotated categories with
``targets="gt"``) and turns them into the :class:`wsloc.run.segment_worker.SegmentJob` of
the image: what the segmentation stage needs, nothing more (the image's working copy and its
maps on the working grid, :func:`wsloc.segment.prepare_maps`).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..segment import prepare_maps
from .segment_worker import SegmentJob

__all__ = ["NetworkStage"]


class NetworkStage:
    """The localizer's network on decoded batches.

    Attributes:
        localizer: the run's :class:`wsloc.Localizer` (its model stays in this process).
        seconds: wall time of the network passes so far (the ``network`` stage).
    """

    def __init__(self, localizer):
        self.localizer = localizer
        self.seconds = 0.0

    def run(self, decoded) -> Iterator[tuple[dict, tuple | None]]:
        """Per item of ``decoded``, in order: ``(item, (maps, classes, logits, probs))`` for an
        image that loaded (its :meth:`wsloc.localizer.NetworkOutput.image`), ``(item, None)``
        for one that did not. One network pass for the whole batch."""
        net = None
        if decoded.x is not None:  # at least one image of the batch loaded
            wanted = None
            if self.localizer.config.targets == "gt":  # the annotated categories (GT-known protocol)
                wanted = [item["labels"] for item in decoded.items if "image" in item]
            net = self.localizer.network(decoded.x, wanted)
            self.seconds += net.seconds
        k = 0
        for item in decoded.items:
            if "image" not in item:
                yield item, None
                continue
            yield item, net.image(k)
            k += 1

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
