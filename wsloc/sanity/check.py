"""Run a randomization test for one saliency method on a set of images and tabulate it.

For every step of the test (step 0 = the original model, then one per block, see
:mod:`wsloc.sanity.randomize`) the maps of the same images for the same target classes are
computed with :func:`wsloc.saliency.attribute` and compared with the original model's maps
(:mod:`wsloc.sanity.similarity`). With ground-truth boxes the same maps are also scored on
localization: GT-known box accuracy, the fraction of images whose box from the map has
IoU >= 0.5 with one of the image's ground-truth boxes (the target is the ground-truth class;
the IoU in the devkit convention of ``wsloc evaluate``, :mod:`wsloc.evaluate.iou`).

Maps compared (per image, one target):

* ``spearman_abs``, ``ssim``, ``hog`` use ``SaliencyMaps.maps`` (the map the localizer uses);
* ``spearman`` (signed) uses the channel sum of ``SaliencyMaps.attributions`` (asked for with
  ``return_attributions=True``) when the method provides them (gradient, guided backprop,
  integrated gradients: the signed per-pixel attribution), else ``maps`` itself (Grad-CAM, whose
  published map is rectified, so its signed and absolute Spearman coincide).

Box from a map (:func:`map_box`, cheap and the same for every method): the map resized to
the image, ``|map|`` smoothed by a Gaussian of ``sigma = 0.02 * min(H, W)`` pixels, thresholded
at ``threshold`` times its maximum, the box of the largest 8-connected component.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..boxes import largest_component_box
from ..evaluate.iou import box_iou
from ..errors import MethodError
from .randomize import Block, cascading_randomization, independent_randomization
from .similarity import METRICS, compare_maps

LOC_IOU = 0.5
#: The IoU rule of the GT-known hits: ``wsloc evaluate``'s (:mod:`wsloc.evaluate.iou`).
LOC_CONVENTION = "devkit"


@dataclass
class SanityResult:
    """The outcome of one randomization test for one method.

    Attributes:
        method: saliency method name.
        mode: "cascading" or "independent".
        steps: step names: ``"original"``, then the block randomized at each step.
        metrics: metric name -> float64 ``[S, N]`` (step, image); step 0 compares the
            original maps with themselves.
        loc_correct: bool ``[S, N]`` GT-known box hits, or None without ground truth.
        boxes: float64 ``[S, N, 4]`` boxes from the maps (NaN where the map gave none), in image pixels.
        maps: float32 ``[S, n_keep, H, W]`` the maps of the first ``n_keep`` images (for figures).
        targets: int64 ``[N]`` the class explained in every image.
        constant: bool ``[S, N]`` maps without any variation (e.g. Grad-CAM all zero after its ReLU).
        fallback: parameters re-initialised by the fallback initializer (see randomize).
    """

    method: str
    mode: str
    steps: list[str]
    metrics: dict[str, np.ndarray]
    loc_correct: np.ndarray | None
    boxes: np.ndarray
    maps: np.ndarray
    targets: np.ndarray
    constant: np.ndarray | None = None
    fallback: tuple[str, ...] = field(default_factory=tuple)

    def rows(self) -> list[dict]:
        """One dict per step: method, mode, step, block, n, mean of every metric (NaNs ignored), loc_acc,
        const_frac (fraction of constant maps)."""
        out = []
        n = len(self.targets)
        for s, name in enumerate(self.steps):
            row = {"method": self.method, "mode": self.mode, "step": s, "block": name, "n": n}
            for m in METRICS:
                v = self.metrics[m][s]
                row[m] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            row["loc_acc"] = float(self.loc_correct[s].mean()) if self.loc_correct is not None else float("nan")
            row["const_frac"] = float(self.constant[s].mean()) if self.constant is not None else float("nan")
            out.append(row)
        return out


def map_box(saliency: np.ndarray, image_size: tuple[int, int], threshold: float = 0.2,
            sigma_frac: float = 0.02) -> np.ndarray | None:
    """Box (float64 ``[4]`` xyxy, image pixels) from a map ``[h, w]``; None when the map is empty.

    See the module docstring for the rule.
    """
    h, w = int(image_size[0]), int(image_size[1])
    s = np.abs(np.nan_to_num(np.asarray(saliency, dtype=np.float32)))
    if s.shape != (h, w):
        s = cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = sigma_frac * min(h, w)
    if sigma > 0:
        s = cv2.GaussianBlur(s, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    peak = float(s.max())
    if not peak > 0:
        return None
    return largest_component_box(s >= threshold * peak)


def _signed_and_abs(sm) -> tuple[np.ndarray, np.ndarray]:
    maps = sm.maps[:, 0].detach().float().cpu().numpy()
    att = getattr(sm, "attributions", None)
    if att is not None:
        signed = att[:, 0].detach().float().sum(dim=1).cpu().numpy()
        if signed.shape != maps.shape:
            signed = maps
    else:
        signed = maps
    return maps, signed


def compute_maps(model, x: torch.Tensor, targets: torch.Tensor, method: str, options: dict,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    from ..saliency import attribute

    maps, signed = [], []
    device = getattr(model, "device", None)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        tb = targets[i:i + batch_size]
        if device is not None:
            xb, tb = xb.to(device), tb.to(device)
        sm = attribute(model, xb, targets=tb, method=method, return_attributions=True, **options)
        m, s = _signed_and_abs(sm)
        maps.append(m)
        signed.append(s)
    return np.concatenate(maps), np.concatenate(signed)


def _resolve_targets(model, x: torch.Tensor, targets, batch_size: int) -> torch.Tensor:
    """int64 ``[N]`` on the CPU: ``targets`` as given, or the model's top-1 class of each image."""
    if targets is None:
        net = model.model if hasattr(model, "model") else model
        with torch.no_grad():
            dev = next(net.parameters()).device
            targets = torch.cat([net(x[i:i + batch_size].to(dev)).argmax(1).cpu()
                                 for i in range(0, len(x), batch_size)])
    return torch.as_tensor(targets, dtype=torch.long).reshape(-1).cpu()


def _boxes_and_hits(maps: np.ndarray, sizes, gt_boxes, box_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(float64 ``[N, 4]`` box of each map, NaN where none; bool ``[N]`` GT-known hits, IoU >= LOC_IOU)."""
    n = len(maps)
    boxes = np.full((n, 4), np.nan)
    hit = np.zeros(n, bool)
    for i in range(n):
        b = map_box(maps[i], sizes[i], threshold=box_threshold)
        if b is not None:
            boxes[i] = b
            if gt_boxes is not None and len(gt_boxes[i]):
                iou = box_iou(b[None], np.asarray(gt_boxes[i], np.float64), LOC_CONVENTION)
                hit[i] = bool(iou[0].max() >= LOC_IOU)
    return boxes, hit


def sanity_check(model, x: torch.Tensor, method: str, targets: Sequence[int] | torch.Tensor | None = None,
                 mode: str = "cascading", blocks: Sequence[Block | str] | None = None, seed: int = 0,
                 gt_boxes: Sequence[np.ndarray] | None = None,
                 image_sizes: Sequence[tuple[int, int]] | None = None, options: dict | None = None,
                 batch_size: int = 10, keep_maps: int = 4, box_threshold: float = 0.2,
                 log: Callable[[str], None] | None = None) -> SanityResult:
    """Randomization test of ``method`` on a batch of preprocessed images.

    Args:
        model: a ``Classifier`` (or ``nn.Module``) in eval mode; never modified.
        x: float32 ``[N, 3, H, W]`` network inputs.
        method: a :func:`wsloc.saliency.attribute` method name.
        targets: ``[N]`` class per image (kept for every step); default the original model's top-1.
        mode: "cascading" (top blocks first, cumulatively) or "independent" (one block at a time).
        blocks: block names or :class:`Block` objects (default: all, top first).
        seed: randomization seed (see :mod:`wsloc.sanity.randomize`).
        gt_boxes: per image float ``[G, 4]`` xyxy ground-truth boxes in image pixels; enables
            ``loc_correct``.
        image_sizes: per image (H, W) of the original image (the boxes' frame); default the input size.
        options: extra keyword arguments for ``attribute`` (e.g. ``{"steps": 32}``).
        batch_size: images per ``attribute`` call.
        keep_maps: how many images' maps to keep for figures.
        box_threshold: see :func:`map_box`.
        log: called with a line per finished step (progress).
    """
    if mode not in ("cascading", "independent"):
        raise MethodError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise MethodError(f"expected inputs [N, 3, H, W], got {tuple(x.shape)}")
    n = len(x)
    options = dict(options or {})
    targets = _resolve_targets(model, x, targets, batch_size)
    if len(targets) != n:
        raise MethodError(f"{len(targets)} targets for {n} images")
    if gt_boxes is not None and len(gt_boxes) != n:
        raise MethodError(f"{len(gt_boxes)} ground-truth box sets for {n} images")
    sizes = list(image_sizes) if image_sizes is not None else [tuple(x.shape[2:])] * n

    def run(m):
        maps, signed = compute_maps(m, x, targets, method, options, batch_size)
        return (maps, signed, *_boxes_and_hits(maps, sizes, gt_boxes, box_threshold))

    orig_maps, orig_signed, boxes0, hit0 = run(model)
    k = min(keep_maps, n)
    steps, kept, all_boxes, hits = ["original"], [orig_maps[:k]], [boxes0], [hit0]
    constant = [np.ptp(orig_maps.reshape(n, -1), axis=1) == 0]
    scores: list[dict[str, np.ndarray]] = []

    def score(maps, signed):
        sim = compare_maps(orig_maps, maps)
        if signed is not maps or orig_signed is not orig_maps:
            sim["spearman"] = compare_maps(orig_signed, signed)["spearman"]
        scores.append(sim)

    score(orig_maps, orig_signed)
    if log:
        log(f"{method}: original done")
    gen = cascading_randomization if mode == "cascading" else independent_randomization
    fallback: tuple[str, ...] = ()
    for r in gen(model, blocks, seed):
        maps, signed, b, hit = run(r.model)
        score(maps, signed)
        steps.append(r.block)
        kept.append(maps[:k])
        all_boxes.append(b)
        hits.append(hit)
        constant.append(np.ptp(maps.reshape(n, -1), axis=1) == 0)
        fallback = tuple(sorted(set(fallback) | set(r.fallback)))
        del r, maps, signed
        if log:
            log(f"{method}: {mode} step {len(steps) - 1} ({steps[-1]}) done")
    return SanityResult(
        method=method, mode=mode, steps=steps,
        metrics={m: np.stack([sc[m] for sc in scores]) for m in METRICS},
        loc_correct=np.stack(hits) if gt_boxes is not None else None,
        boxes=np.stack(all_boxes), maps=np.stack(kept).astype(np.float32),
        targets=targets.numpy(), constant=np.stack(constant), fallback=fallback)


@dataclass
class SampleBatch:
    """Images of a dataset prepared for :func:`sanity_check`.

    Attributes:
        images: uint8 ``[H, W, 3]`` RGB per image (original size).
        x: float32 ``[N, 3, h, w]`` preprocessed inputs.
        targets: int64 ``[N]`` ground-truth classes, or None when the dataset has none for some image.
        gt_boxes: per image float64 ``[G, 4]`` boxes of the target class, or None.
        sizes: per image (H, W).
        paths: the files.
    """

    images: list
    x: torch.Tensor
    targets: torch.Tensor | None
    gt_boxes: list | None
    sizes: list
    paths: list


def load_batch(classifier, dataset, limit: int | None = 20) -> SampleBatch:
    """Read the first ``limit`` samples of ``dataset`` (a path for :func:`wsloc.io.open_dataset`
    or a dataset object) and preprocess them with ``classifier.preprocess``.

    Targets are the samples' image-level labels (``Sample.label``, else the label shared by all
    its boxes); ground-truth boxes are those with the target's label. Raises DatasetError when
    the dataset is empty.
    """
    from ..errors import DatasetError
    from ..io import load_image, open_dataset

    ds = open_dataset(dataset) if isinstance(dataset, (str, os.PathLike)) else dataset
    n = len(ds) if limit is None else min(int(limit), len(ds))
    if n <= 0:
        raise DatasetError(f"{dataset}: no images to check")
    images, labels, boxes, paths = [], [], [], []
    for i in range(n):
        s = ds[i]
        img = load_image(s.path)
        images.append(img)
        paths.append(s.path)
        label = s.label
        if label is None and len(s.labels) and (s.labels == s.labels[0]).all():
            label = int(s.labels[0])
        labels.append(label)
        boxes.append(np.asarray(s.boxes, np.float64)[np.asarray(s.labels) == label] if label is not None
                     else np.zeros((0, 4)))
    have = all(lb is not None for lb in labels)
    x = classifier.preprocess.batch(images)
    return SampleBatch(images=images, x=x, targets=torch.tensor(labels, dtype=torch.long) if have else None,
                       gt_boxes=boxes if have and any(len(b) for b in boxes) else None,
                       sizes=[im.shape[:2] for im in images], paths=paths)
