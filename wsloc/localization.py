"""One image's localizations and the step that makes them from its maps: plain numpy, no torch.

:func:`localize_maps` segments an image's K saliency maps and boxes the objects; it is what a
segmentation process of the batch runner runs, so this module (and what it imports) stays
free of torch: a worker that starts without torch starts in a fraction of a second and
takes hundreds of MB less memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClassLocalization:
    """One of an image's top-k classes, localized.

    Attributes:
        rank: 1 for the classifier's best class, ..., K.
        class_id: the classifier's class index (ImageNet: 0-based index 0..999).
        name: class name or None.
        score: softmax probability of the class, in [0, 1].
        logit: the class's pre-softmax output.
        mask: bool ``[H, W]`` object mask at the image's resolution.
        box: float64 ``[4]`` xyxy (continuous pixel coordinates) of the largest component
            (or the segmenter's ``box_rule``).
        boxes: float64 ``[M, 4]`` xyxy boxes of all connected components, largest first.
        flag: None, or the segmenter's note about a fallback (see :mod:`wsloc.segment`).
    """

    rank: int
    class_id: int
    name: str | None
    score: float
    logit: float
    mask: np.ndarray
    box: np.ndarray
    boxes: np.ndarray
    flag: str | None = None


@dataclass
class ImageLocalization:
    """All top-k localizations of one image.

    Attributes:
        height, width: the image's size.
        classes: :class:`ClassLocalization` by rank (best first).
        maps: float32 ``[K, h, w]`` saliency maps at the network's input resolution, or None.
        timings: seconds per stage for this image ("prepare", "colour_models", "graph_cut", "boxes").
    """

    height: int
    width: int
    classes: list[ClassLocalization]
    maps: np.ndarray | None = None
    timings: dict = field(default_factory=dict)

    def to_coco(self, image_id: int) -> list[dict]:
        """COCO detection/segmentation results of this image, one per class, by rank.

        Each entry: ``image_id``, ``category_id`` (the class index), ``bbox`` ``[x, y, w, h]``,
        ``score`` (softmax probability), ``rank`` (1..K), ``segmentation`` (compressed RLE
        with str counts).
        """
        from .boxes import mask_to_rle

        return [coco_entry(image_id, c, mask_to_rle(c.mask)) for c in self.classes]


def round_sig(x: float, digits: int) -> float:
    """Round for output: ``digits`` significant digits (stable text across runs)."""
    return float(f"{float(x):.{digits}g}")


def coco_entry(image_id: int, c: ClassLocalization, rle: dict) -> dict:
    """One COCO results entry (key order fixed, numbers rounded for stable output)."""
    x0, y0, x1, y1 = (float(v) for v in c.box)
    return {"image_id": int(image_id), "category_id": int(c.class_id),
            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            "score": round_sig(c.score, 6), "rank": int(c.rank), "segmentation": rle}


def localize_maps(image: np.ndarray, maps: np.ndarray, classes, logits, probs, segment_config,
                  names=None, keep_maps: bool = True, size: tuple[int, int] | None = None) -> ImageLocalization:
    """Segment each of an image's K maps and box the object (pure numpy; runs in any process).

    Args:
        image: uint8 ``[H, W, 3]`` RGB, or (with ``size``) its working copy
            (:func:`wsloc.segment.seeds.working_image`; the same results).
        maps: float32 ``[K, h, w]`` saliency maps (any resolution), or the image's
            :class:`wsloc.segment.PreparedMaps` (its maps already on the working grid,
            :func:`wsloc.segment.prepare_maps` with ``segment_config``; the same results).
        classes, logits, probs: ``[K]`` class indices, logits, probabilities (best first).
        segment_config: :class:`wsloc.segment.SegmentConfig`.
        names: ``[K]`` class names or None.
        keep_maps: keep ``maps`` in the result (prepared maps: their working-grid array).
        size: ``(H, W)`` of the image when ``image`` is its working copy; None: ``image.shape[:2]``
            (prepared maps: their ``size``).
    """
    from .segment import PreparedMaps, prepare_maps, segment_prepared

    prepared = maps if isinstance(maps, PreparedMaps) else None
    if prepared is not None:
        size, maps = prepared.size, prepared.maps
    height, width = (int(v) for v in (image.shape[:2] if size is None else size))
    if len(maps) == 0:  # nothing to localize (targets="gt" on an image without a mapped category)
        return ImageLocalization(height=height, width=width, classes=[], maps=maps if keep_maps else None)
    if prepared is None:
        prepared = prepare_maps(maps, (height, width), segment_config)
    segs = segment_prepared(image, prepared, segment_config)
    timings: dict[str, float] = {}
    out = []
    for k, s in enumerate(segs):
        for key, sec in s.timings.items():
            timings[key] = timings.get(key, 0.0) + float(sec)
        out.append(ClassLocalization(rank=k + 1, class_id=int(classes[k]),
                                     name=None if names is None else names[k], score=float(probs[k]),
                                     logit=float(logits[k]), mask=s.mask, box=np.asarray(s.box, np.float64),
                                     boxes=np.asarray(s.boxes, np.float64).reshape(-1, 4), flag=s.flag))
    return ImageLocalization(height=height, width=width, classes=out, maps=maps if keep_maps else None,
                             timings=timings)


def single_threaded():
    """A context manager that limits BLAS/OpenMP pools to one thread inside the block
    (threadpoolctl, a scikit-learn dependency; a no-op without it). Wrap :func:`localize_maps`
    in it in a process whose pools have many threads: its GMM fits are small, and starting
    threads costs more than they save."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
