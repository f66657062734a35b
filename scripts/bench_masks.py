"""Segmentation on real masks: GT-known mask IoU of several segmenters driven by the same maps.

On a COCO file with masks whose categories carry ``imagenet_classes`` (default
``../shared/data/coco2017-masks-dev/annotations.json``), for every (image, annotated mapped
category) pair (:mod:`wsloc.evaluate.gt_masks`: the union of the category's non-crowd instance
masks), the map of the category's best-logit ImageNet class (class map, ``targets="gt"``), made
once with the default preset's saliency (its method, scales, flip), is turned into a mask by:

* ``whole image``: every pixel;
* ``map >= f * max``: the map resized to the image and thresholded at the fixed fraction ``f``
  of its maximum; the best ``f`` of ``--fractions`` is reported (chosen on the same pairs: an
  optimistic row);
* ``cv2.grabCut``: mask initialised from the same map (>= 70 % of its maximum: GC_FGD,
  >= 40 %: GC_PR_FGD, <= 20 %: GC_BGD, else GC_PR_BGD), 3 iterations of GC_INIT_WITH_MASK, the
  peer of issue 13 (no sure-foreground pixel: the PR_FGD pixels start as sure foreground; a
  cv2 error: the PR_FGD region);
* ``default preset``: ``wsloc.segment.segment`` with the default preset's SegmentConfig;
* ``paper preset``: the simonyan2014 preset end to end (its own gradient maps and segmenter).

Printed: mIoU over all pairs and per size bucket, the share with IoU >= 0.5, and the
segmentation seconds per map. The map-driven rows share the maps, so they compare segmenters.

    python scripts/bench_masks.py --limit 10            # a quick check (10 images)
    python scripts/bench_masks.py --folds               # max vs logsumexp fold: top-1/top-5 category hits
    nice -n 5 python scripts/bench_masks.py --json masks.json   # all 158 images (CPU-heavy: run alone)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "coco2017-masks-dev" / "annotations.json"


def grabcut_from_map(image: np.ndarray, sal: np.ndarray, iterations: int = 3) -> np.ndarray:
    """The peer: bool ``[H, W]`` mask of ``cv2.grabCut`` initialised from a map at the image's size."""
    m = sal / sal.max() if sal.max() > 0 else sal
    mask = np.full(m.shape, cv2.GC_PR_BGD, np.uint8)
    mask[m >= 0.4] = cv2.GC_PR_FGD
    mask[m >= 0.7] = cv2.GC_FGD
    mask[m <= 0.2] = cv2.GC_BGD
    if not (mask == cv2.GC_FGD).any():
        mask[mask == cv2.GC_PR_FGD] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, iterations,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return m >= 0.4
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("annotations", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5,0.6", help="threshold fractions of the map's max")
    ap.add_argument("--no-grabcut", action="store_true", help="skip the (slow) cv2.grabCut row")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper preset row")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--folds", action="store_true",
                    help="only compare the class-map folds (max, logsumexp): how often the top-1 / any of the top-5 "
                         "categories is annotated in the image (images with a mapped category; no maps)")
    args = ap.parse_args(argv)
    if args.folds:
        return compare_folds(args)

    from wsloc.evaluate.ground_truth import GroundTruth
    from wsloc.evaluate.gt_masks import gt_known_mask_iou, gt_union_masks
    from wsloc.io import load_image, open_dataset
    from wsloc.labels import ClassMap
    from wsloc.localizer import Localizer, LocalizerConfig
    from wsloc.presets import DEFAULT_PRESET
    from wsloc.segment import segment
    from wsloc.segment.seeds import resize_map

    ds = open_dataset(args.annotations)
    cmap = ClassMap.from_dataset(ds)
    if cmap is None:
        print(f"{args.annotations}: its categories carry no imagenet_classes", file=sys.stderr)
        return 1
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    gt = GroundTruth(ds, range(n))
    pairs = gt_union_masks(gt.coco, [s.image_id for s in gt.samples], set(cmap.ids))
    by_image: dict[int, list[int]] = {}
    for image_id, c, _ in pairs:
        by_image.setdefault(image_id, []).append(c)
    presets = [DEFAULT_PRESET] + ([] if args.no_paper else ["simonyan2014"])
    locs = {p: Localizer(LocalizerConfig.from_preset(p, device=args.device, class_map=cmap.to_entries(),
                                                     targets="gt")) for p in presets}
    fractions = [float(v) for v in args.fractions.split(",")]
    masks: dict[str, dict] = {"whole image": {}, "cv2.grabCut (3 iterations)": {}, "default preset": {},
                              "paper preset": {}, **{f"map >= {f:g} max": {} for f in fractions}}
    seconds = {k: 0.0 for k in masks}
    t_all = time.perf_counter()
    for s in gt.samples:
        cats = by_image.get(s.image_id)
        if not cats:
            continue
        image = load_image(s.path)
        h, w = image.shape[:2]
        for p, loc in locs.items():
            net = loc.network(loc.preprocess.batch([image]), [cats])
            maps, classes, _, _ = net.image(0)
            key = "default preset" if p == DEFAULT_PRESET else "paper preset"
            t0 = time.perf_counter()
            for c, seg in zip(classes, segment(image, maps, loc.segment_config)):
                masks[key][(s.image_id, int(c))] = seg.mask
            seconds[key] += time.perf_counter() - t0
            if p != DEFAULT_PRESET:
                continue
            for c, m in zip(classes, maps):
                full = resize_map(m, (h, w))
                top = full.max() if full.max() > 0 else 1.0
                masks["whole image"][(s.image_id, int(c))] = np.ones((h, w), bool)
                for f in fractions:
                    masks[f"map >= {f:g} max"][(s.image_id, int(c))] = full >= f * top
                if not args.no_grabcut:
                    t0 = time.perf_counter()
                    masks["cv2.grabCut (3 iterations)"][(s.image_id, int(c))] = grabcut_from_map(image, full)
                    seconds["cv2.grabCut (3 iterations)"] += time.perf_counter() - t0
    wall = time.perf_counter() - t_all
    rows = {}
    for name, made in masks.items():
        if made:
            rows[name] = gt_known_mask_iou(pairs, lambda i, c, made=made: made.get((i, c)))
            rows[name].pop("per_pair")
    thr = [k for k in rows if k.startswith("map >= ")]
    best = max(thr, key=lambda k: rows[k]["miou"]) if thr else None
    show = ["whole image"] + ([best] if best else []) + [k for k in ("cv2.grabCut (3 iterations)", "default preset",
                                                                       "paper preset") if k in rows]
    n_pairs = len(pairs)
    heads = list(next(iter(rows.values()))["by_size"])
    print(f"{n} images, {n_pairs} (image, mapped category) pairs; maps: {DEFAULT_PRESET} preset's saliency; "
          f"{wall:.0f} s in all")
    print(f"{'mask':<30}{'mIoU':>7}" + "".join(f"{h.split()[0] + ' (' + str(rows[show[0]]['by_size'][h]['n']) + ')':>14}"
                                              for h in heads) + f"{'IoU>=.5':>9}{'s/map':>8}")
    for k in show:
        r = rows[k]
        cells = "".join(f"{100 * r['by_size'][h]['miou']:>14.1f}" if r["by_size"][h]["miou"] is not None
                        else f"{'-':>14}" for h in heads)
        per = seconds.get(k, 0.0) / max(1, n_pairs)
        print(f"{k:<30}{100 * r['miou']:>7.1f}{cells}{100 * r['iou50']:>9.1f}{per:>8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n, "pairs": n_pairs, "rows": rows, "seconds": seconds,
                                               "best_fraction": best}, indent=1))
    return 0


def compare_folds(args) -> int:
    """Top-1 / top-5 category hit rates of the two folds (one forward pass per image)."""
    import torch

    from wsloc.io import load_image, open_dataset
    from wsloc.labels import FOLDS, ClassMap, fold_logits
    from wsloc.models import load_classifier

    ds = open_dataset(args.annotations)
    cmap = ClassMap.from_dataset(ds)
    clf = load_classifier("efficientnet_lite0", device=args.device)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    hits = {f: [0, 0] for f in FOLDS}
    used = 0
    for i in range(n):
        s = ds[i]
        wanted = {int(c) for c in s.labels} & set(cmap.ids)
        if not wanted:
            continue
        used += 1
        with torch.no_grad():
            logits = clf.model(clf.preprocess.batch([load_image(s.path)]).to(clf.device)).float()
        for f in FOLDS:
            folded = fold_logits(logits, cmap.members, f)[0][0]
            top = [cmap.ids[int(j)] for j in folded.topk(5).indices]
            hits[f][0] += top[0] in wanted
            hits[f][1] += bool(wanted & set(top))
    print(f"{used} images with a mapped category (of {n})")
    for f in FOLDS:
        print(f"fold {f:<10} top-1 annotated {100 * hits[f][0] / max(1, used):5.1f} %   "
              f"top-5 annotated {100 * hits[f][1] / max(1, used):5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
