"""The box chosen per image, from the image: candidate boxes from several rules, scored by the classifier.

The default preset draws the box of the whole GraphCut mask, a fixed rule whatever the image. Here
each image gets several candidates and the classifier's own evidence picks one:

* :func:`rule_boxes` / :func:`candidate_boxes`: the boxes of several rules (the GraphCut mask's union
  box and largest component, the fused map thresholded at several fractions of its maximum, its
  largest component and union, and the whole image), deduplicated, each named by its rule(s).
* :func:`box_evidence`: the classifier's logits on each candidate's crop (resized to the network
  input, as the preprocessing resizes a whole image) and on the image with the candidate filled with
  the preprocessing mean (the box masked out); all ``2 M`` inputs of an image in one batched forward
  pass (chunks of ``max_batch``), and one pass gives every class's logits, so the top-k classes of an
  image share the crops of their common candidates.
* :func:`score_boxes` (variants :data:`VARIANTS`): e.g. ``logit_crop - logit_masked``; :func:`select_box`
  the best; :func:`oracle_box` the candidate closest to the ground truth (the headroom of any selector).

Measured by ``scripts/bench_box_select.py`` (BENCHMARKS.md). Boxes are float64 xyxy in continuous pixel
coordinates (:mod:`wsloc.boxes`). The candidate functions are numpy only; torch is imported by
:func:`box_evidence` when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FRACTIONS", "VARIANTS", "BoxEvidence", "box_evidence", "candidate_boxes", "class_stats",
           "box_share", "dedupe_boxes", "evidence_inputs", "oracle_box", "rule_boxes", "rule_names", "score_boxes",
           "score_from_stats", "select_box"]

#: Fractions of the fused map's maximum at which it is thresholded (one largest-component and one
#: union box each).
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)

#: Scoring variants of :func:`score_from_stats` (for class c, crop = the candidate resized to the input,
#: masked = the image with the candidate filled with the preprocessing mean):
#: "logit_diff" ``z_crop - z_masked``; "prob_diff" ``p_crop - p_masked`` (softmax over all classes);
#: "logprob_diff" ``log p_crop - log p_masked``; "crop_logit" ``z_crop``; "masked_drop" ``-z_masked``;
#: "prob_product" ``p_crop * (1 - p_masked)``.
VARIANTS = ("logit_diff", "prob_diff", "logprob_diff", "crop_logit", "masked_drop", "prob_product")


def rule_names(fractions=FRACTIONS, with_mask: bool = True) -> list[str]:
    """The rule names :func:`rule_boxes` gives, in its order: ``mask_union``, ``mask_largest`` (with a
    mask), ``map0.10_largest``, ``map0.10_union``, ... per fraction, then ``whole``."""
    names = ["mask_union", "mask_largest"] if with_mask else []
    for f in fractions:
        names += [f"map{f:.2f}_largest", f"map{f:.2f}_union"]
    return names + ["whole"]


def _map_at(fused_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 ``[H, W]`` map as fractions of its maximum (:func:`wsloc.segment.seeds.relative_map`)."""
    from .segment.seeds import clean_map, relative_map, resize_map

    m, _ = clean_map(np.asarray(fused_map, np.float32))
    if m is None or m.max() <= m.min():
        return np.zeros(size, np.float32)
    return relative_map(resize_map(m, size, "bilinear"))


def rule_boxes(mask, fused_map, image_size: tuple[int, int], fractions=FRACTIONS,
               connectivity: int = 8) -> dict[str, np.ndarray]:
    """The box of every rule (not deduplicated), in the order of :func:`rule_names`.

    Args:
        mask: bool ``[H, W]`` GraphCut mask at the image's resolution, or None (no mask rules).
        fused_map: float ``[h, w]`` saliency map of the class at any resolution (brought to ``[H, W]``
            bilinearly; negative values count as 0, see :func:`wsloc.segment.seeds.relative_map`).
        image_size: ``(H, W)``.
        fractions: threshold levels in ``(0, 1]`` of the map's maximum.
        connectivity: 8 or 4 for the connected components.

    Returns:
        rule name -> float64 ``[4]`` xyxy. A rule whose region is empty (an empty mask, a flat map)
        gives the whole image.
    """
    from .boxes import component_boxes, mask_box

    h, w = int(image_size[0]), int(image_size[1])
    whole = np.array([0.0, 0.0, float(w), float(h)])
    out: dict[str, np.ndarray] = {}

    def add(prefix: str, region: np.ndarray, union_first: bool) -> None:
        comps = component_boxes(region, connectivity)
        largest = comps[0] if len(comps) else whole.copy()
        union = mask_box(region)
        union = union if union is not None else whole.copy()
        pairs = [("union", union), ("largest", largest)]
        for kind, box in (pairs if union_first else pairs[::-1]):
            out[f"{prefix}_{kind}"] = box

    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (h, w):
            raise ValueError(f"rule_boxes: mask of shape {mask.shape} for an image of size {(h, w)}")
        add("mask", mask, True)
    rel = _map_at(fused_map, (h, w))
    for f in fractions:
        region = rel >= float(f) if rel.max() > 0 else np.zeros((h, w), bool)
        add(f"map{f:.2f}", region, False)
    out["whole"] = whole
    return out


def dedupe_boxes(named: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Distinct boxes of ``{rule: box}`` in first-seen order; each named by its rules joined with "+"."""
    boxes: list[np.ndarray] = []
    names: list[list[str]] = []
    for name, box in named.items():
        b = np.asarray(box, np.float64).reshape(4)
        for j, other in enumerate(boxes):
            if np.array_equal(other, b):
                names[j].append(name)
                break
        else:
            boxes.append(b)
            names.append([name])
    return np.array(boxes, np.float64).reshape(-1, 4), ["+".join(n) for n in names]


def candidate_boxes(mask, fused_map, fractions=FRACTIONS, image_size: tuple[int, int] | None = None,
                    connectivity: int = 8) -> tuple[np.ndarray, list[str]]:
    """Deduplicated candidate boxes of an image and class (:func:`rule_boxes`, then :func:`dedupe_boxes`).

    Args:
        mask, fused_map, fractions, connectivity: as :func:`rule_boxes`.
        image_size: ``(H, W)``; None: the mask's shape (required without a mask).

    Returns:
        (float64 ``[M, 4]`` xyxy, M names: the rule(s) giving each box, e.g. ``"mask_union+map0.40_union"``).
    """
    if image_size is None:
        if mask is None:
            raise ValueError("candidate_boxes: give image_size when there is no mask")
        image_size = np.asarray(mask).shape[:2]
    return dedupe_boxes(rule_boxes(mask, fused_map, image_size, fractions, connectivity))


def _pixel_box(box, h: int, w: int) -> tuple[int, int, int, int]:
    """Integer ``(x0, y0, x1, y1)`` covering the box, clipped to the image, at least one pixel."""
    x0 = min(max(int(np.floor(box[0])), 0), w - 1)
    y0 = min(max(int(np.floor(box[1])), 0), h - 1)
    x1 = max(min(int(np.ceil(box[2])), w), x0 + 1)
    y1 = max(min(int(np.ceil(box[3])), h), y0 + 1)
    return x0, y0, x1, y1


def evidence_inputs(image: np.ndarray, boxes, preprocess):
    """The ``2 M`` network inputs of M candidates: float32 ``[2M, 3, h, w]``, first the M crops
    (each resized to the input by ``preprocess``), then the M masked images (the whole image
    preprocessed once, then each box, brought to the input grid and widened to whole input pixels,
    set to 0: the preprocessing mean after normalisation)."""
    import torch

    image = np.asarray(image)
    h, w = image.shape[:2]
    base = preprocess(image)
    ih, iw = base.shape[1:]
    crops, masked = [], []
    for box in np.asarray(boxes, np.float64).reshape(-1, 4):
        x0, y0, x1, y1 = _pixel_box(box, h, w)
        crops.append(preprocess(image[y0:y1, x0:x1]))
        filled = base.clone()
        gx0, gy0, gx1, gy1 = _pixel_box((box[0] * iw / w, box[1] * ih / h, box[2] * iw / w, box[3] * ih / h), ih, iw)
        filled[:, gy0:gy1, gx0:gx1] = 0.0
        masked.append(filled)
    return torch.stack(crops + masked)


@dataclass
class BoxEvidence:
    """The classifier's logits on an image's candidates.

    Attributes:
        crop: float32 ``[M, C]`` logits of each candidate's crop.
        masked: float32 ``[M, C]`` logits of the image with the candidate masked out.
        inputs: network inputs run (``2 M``); passes: batched forward passes run.
    """

    crop: np.ndarray
    masked: np.ndarray
    inputs: int = 0
    passes: int = 0


def box_evidence(model, image: np.ndarray, boxes, preprocess, device=None, max_batch: int = 64) -> BoxEvidence:
    """Run the classifier on every candidate's crop and masked image (:func:`evidence_inputs`).

    Args:
        model: callable ``[N, 3, h, w]`` float32 -> ``[N, C]`` logits (a :class:`wsloc.Classifier` or its
            ``model``), in eval mode.
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: float ``[M, 4]`` xyxy candidates.
        preprocess: the classifier's :class:`wsloc.Preprocess`.
        device: where to run (None: the model's parameters' device, else the CPU).
        max_batch: inputs per forward pass (the ``2 M`` inputs go in ``ceil(2 M / max_batch)`` passes).
    """
    import torch

    x = evidence_inputs(image, boxes, preprocess)
    if device is None:
        net = getattr(model, "model", model)
        param = next(net.parameters(), None) if hasattr(net, "parameters") else None
        device = param.device if param is not None else torch.device("cpu")
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), max_batch):
            outs.append(model(x[i:i + max_batch].to(device)).float().cpu())
    logits = torch.cat(outs).numpy()
    m = len(x) // 2
    return BoxEvidence(logits[:m], logits[m:], inputs=len(x), passes=len(outs))


def class_stats(logits: np.ndarray, class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(logit of ``class_id``, logsumexp over all classes), float64 ``[M]`` each, of logits ``[M, C]``;
    all that :func:`score_from_stats` needs of them."""
    z = np.asarray(logits, np.float64)
    top = z.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]
    return z[:, int(class_id)], lse


def score_from_stats(crop_logit, crop_lse, masked_logit, masked_lse, variant: str = "logit_diff",
                     area_share=None, area_weight: float = 0.0) -> np.ndarray:
    """Scores (float64 ``[M]``, higher is better) of M candidates for one class.

    Args:
        crop_logit, crop_lse: ``[M]`` the class's logit and the logsumexp of all logits on the crops.
        masked_logit, masked_lse: the same on the masked images.
        variant: one of :data:`VARIANTS`.
        area_share: ``[M]`` each box's share of the image area in ``[0, 1]`` (needed when
            ``area_weight`` is not 0).
        area_weight: added ``area_weight * area_share`` (negative: a penalty on large boxes).
    """
    zc, lc = np.asarray(crop_logit, np.float64), np.asarray(crop_lse, np.float64)
    zm, lm = np.asarray(masked_logit, np.float64), np.asarray(masked_lse, np.float64)
    if variant == "logit_diff":
        s = zc - zm
    elif variant == "prob_diff":
        s = np.exp(zc - lc) - np.exp(zm - lm)
    elif variant == "logprob_diff":
        s = (zc - lc) - (zm - lm)
    elif variant == "crop_logit":
        s = zc.copy()
    elif variant == "masked_drop":
        s = -zm
    elif variant == "prob_product":
        s = np.exp(zc - lc) * (1.0 - np.exp(zm - lm))
    else:
        raise ValueError(f"score variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if area_weight:
        if area_share is None:
            raise ValueError("score_from_stats: area_weight needs area_share")
        s = s + float(area_weight) * np.asarray(area_share, np.float64)
    return s


def box_share(boxes, image_size: tuple[int, int]) -> np.ndarray:
    """float64 ``[M]``: each xyxy box's area as a share of the image's ``(H, W)``."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return area / float(image_size[0] * image_size[1])


def score_boxes(evidence: BoxEvidence, class_id: int, variant: str = "logit_diff", boxes=None,
                image_size: tuple[int, int] | None = None, area_weight: float = 0.0) -> np.ndarray:
    """Scores (float64 ``[M]``) of an image's candidates for ``class_id`` (:func:`score_from_stats`;
    ``boxes`` and ``image_size`` give the area term when ``area_weight`` is not 0)."""
    zc, lc = class_stats(evidence.crop, class_id)
    zm, lm = class_stats(evidence.masked, class_id)
    share = box_share(boxes, image_size) if area_weight else None
    return score_from_stats(zc, lc, zm, lm, variant, share, area_weight)


def select_box(scores, prefer: int | None = None, margin: float = 0.0) -> int:
    """Index of the best-scoring candidate (the first of equal scores; NaN scores never win).

    With ``prefer`` (e.g. the index of the default rule's box), that candidate is kept unless the best
    one scores more than ``margin`` above it: a selector that leaves the default alone where the
    evidence does not clearly favour another box.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    if not len(s):
        raise ValueError("select_box: no candidates")
    s = np.where(np.isnan(s), -np.inf, s)
    best = int(np.argmax(s))
    if prefer is None or not s[best] > s[int(prefer)] + float(margin):
        return best if prefer is None else int(prefer)
    return best


def oracle_box(boxes, gt_boxes, convention: str = "devkit") -> tuple[int, float]:
    """The candidate with the best IoU against any ground-truth box (:func:`wsloc.evaluate.iou.box_iou`):
    (its index, that IoU). The first of equal IoUs; ``(0, 0.0)`` without ground truth."""
    from .evaluate.iou import box_iou

    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    if not len(b):
        raise ValueError("oracle_box: no candidates")
    if not len(g):
        return 0, 0.0
    best = box_iou(b, g, convention).max(axis=1)
    i = int(np.argmax(best))
    return i, float(best[i])
