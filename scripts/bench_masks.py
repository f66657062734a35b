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
* one row per ``--row NAME:KEY=VALUE,...``: the default preset's SegmentConfig with those changes;
* ``paper preset``: the simonyan2014 preset end to end (its own gradient maps and segmenter).

Printed: mIoU over all pairs and per size bucket, the share with IoU >= 0.5, mask AP (COCOeval
``segm`` on the mapped categories, each pair's mask scored by its category's folded probability),
the PxAP of the map the row segments, and the segmentation seconds per map; then the same mIoU
figures on the tuning half (even image ids) and the held-out half (odd ids). The map-driven rows
share the maps, so they compare segmenters. ``--cache DIR`` keeps the maps and the peer's masks
between runs; ``--peer-subset`` scores only the pairs whose peer mask is cached; ``--time-maps N``
times the peer and the rows one after the other on the same N maps.

    python scripts/bench_masks.py --limit 10            # a quick check (10 images)
    python scripts/bench_masks.py --folds               # max vs logsumexp fold: top-1/top-5 category hits
    nice -n 5 python scripts/bench_masks.py --json masks.json   # all 158 images (CPU-heavy: run alone)
    python scripts/bench_masks.py --cache /tmp/maskcache --row "soft seeds:q_fg=50,q_fg_hard=70,gamma=20"
"""

from __future__ import annotations

import argparse
import dataclasses
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


def image_maps(loc, image: np.ndarray, cats: list[int], cache: str | None, preset: str,
               image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 maps ``[K, h, w]``, category ids ``[K]``) of the image's annotated mapped categories,
    from ``cache/maps-PRESET/IMAGE_ID.npz`` when there, else from the network (and saved there)."""
    path = Path(cache) / f"maps-{preset}" / f"{image_id}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return z["maps"], z["classes"]
    net = loc.network(loc.preprocess.batch([image]), [cats])
    maps, classes, _, _ = net.image(0)
    maps, classes = np.asarray(maps, np.float32), np.asarray(classes, np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, maps=maps, classes=classes)
    return maps, classes


def map_changes(sets: list[str]) -> dict:
    """``--set KEY.PATH=VALUE`` strings -> LocalizerConfig changes (read as ``wsloc localize --set`` reads them)."""
    from wsloc.config import parse_assignment

    return dict(parse_assignment(text) for text in sets)


def maps_suffix(sets: list[str]) -> str:
    """The cache folders' suffix of maps made with ``--set`` changes ("" without): a short digest of them."""
    import hashlib

    return "" if not sets else "-" + hashlib.sha1("\n".join(sorted(sets)).encode()).hexdigest()[:10]


def cached_grabcut(image: np.ndarray, full: np.ndarray, cache: str | None, image_id: int,
                   c: int, suffix: str = "") -> tuple[np.ndarray, float]:
    """(:func:`grabcut_from_map`'s mask, its seconds), read from / saved to ``cache/grabcut{suffix}/IMAGE_ID_C.npz``
    (bit-packed mask and the seconds of the run that made it) when a cache is given (``suffix``: of the maps,
    :func:`maps_suffix`)."""
    path = Path(cache) / f"grabcut{suffix}" / f"{image_id}_{c}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return np.unpackbits(z["bits"], count=full.size).reshape(full.shape).astype(bool), float(z["seconds"])
    t0 = time.perf_counter()
    mask = grabcut_from_map(image, full)
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, bits=np.packbits(mask.ravel()), seconds=seconds)
    return mask, seconds


GRABCUT = "cv2.grabCut (3 iterations)"
HALVES = (("tuning (even ids)", 0), ("held-out (odd ids)", 1))


def parse_row(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key=value`` -> (NAME, SegmentConfig changes), each ``key=value`` read by
    :func:`wsloc.config.parse_assignment` (as ``wsloc localize --set`` reads it)."""
    from wsloc.config import parse_assignment

    name, _, opts = text.partition(":")
    return name.strip(), dict(parse_assignment(part) for part in opts.split(",") if part.strip())


def image_scores(loc, image: np.ndarray, classes) -> list[float]:
    """The folded probability of each category (the results' ``score``), from one 224 px forward pass."""
    import torch

    from wsloc.labels import fold_logits

    with torch.no_grad():
        logits = loc.classifier.model(loc.classifier.preprocess.batch([image]).to(loc.classifier.device)).float()
    _, probs, _ = fold_logits(logits, loc.class_map.members, loc.config.class_fold)
    return [float(probs[0, loc.class_map.position(int(c))]) for c in classes]


def score_row(pairs, made: dict, scores: dict, ds, cats, mask_ap: bool) -> dict:
    """GT-known figures of one row (all pairs, then each half by image-id parity) and its mask AP."""
    from wsloc.boxes import mask_box, rle_to_mask, xyxy_to_xywh
    from wsloc.evaluate.coco import coco_ap
    from wsloc.evaluate.gt_masks import gt_known_mask_iou

    def predicted(i, c):
        return rle_to_mask(made[(i, c)]) if (i, c) in made else None

    row = gt_known_mask_iou(pairs, predicted)
    row.pop("per_pair")
    for name, parity in HALVES:
        half = gt_known_mask_iou([p for p in pairs if p[0] % 2 == parity], predicted)
        half.pop("per_pair")
        row[name] = half
    if mask_ap:
        entries = [{"image_id": i, "category_id": c, "score": scores[(i, c)], "segmentation": rle,
                    "bbox": [float(v) for v in xyxy_to_xywh(mask_box(rle_to_mask(rle)))]}
                   for (i, c), rle in made.items()]
        row["mask_ap"] = coco_ap(entries, ds, "segm", cat_ids=cats)["AP"]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("annotations", nargs="?", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5,0.6", help="threshold fractions of the map's max")
    ap.add_argument("--no-grabcut", action="store_true", help="skip the (slow) cv2.grabCut row")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper preset row")
    ap.add_argument("--row", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="one more segmentation row on the default preset's maps: its SegmentConfig with these "
                         "changes, e.g. 'hi-res:max_side=160,map_weight=2' (repeatable)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="change the default preset's LocalizerConfig that makes the maps of the map-driven rows "
                         "(all rows but the paper preset's), e.g. 'saliency.fusion=geometric' (repeatable; "
                         "--cache keeps these maps and their peer masks apart from the default's)")
    ap.add_argument("--no-ap", action="store_true", help="skip mask AP (COCOeval segm) and PxAP")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--cache", default=None,
                    help="folder keeping each image's maps and the peer's masks between runs (same annotations "
                         "file and presets only): a rerun segments the cached maps without the network")
    ap.add_argument("--peer-subset", action="store_true",
                    help="score every row only on the pairs whose peer mask is already in --cache (a subset run "
                         "while the peer's masks are still being made: 2.6 s each)")
    ap.add_argument("--folds", action="store_true",
                    help="only compare the class-map folds (max, logsumexp): how often the top-1 / any of the top-5 "
                         "categories is annotated in the image (images with a mapped category; no maps)")
    ap.add_argument("--time-maps", type=int, default=0, metavar="N",
                    help="only time the peer and each segmentation row on N maps (every k-th pair), one after the "
                         "other on each map, so that both see the same machine load; uses --cache's maps")
    args = ap.parse_args(argv)
    if args.folds:
        return compare_folds(args)
    if args.time_maps:
        return time_segmenters(args)

    from wsloc.boxes import mask_to_rle
    from wsloc.evaluate.ground_truth import GroundTruth
    from wsloc.evaluate.gt_masks import gt_known_pxap, gt_union_masks
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
    cats = set(cmap.ids)
    pairs = gt_union_masks(gt.coco, [s.image_id for s in gt.samples], cats)
    if args.peer_subset:
        pairs = [p for p in pairs if args.cache and (Path(args.cache) / f"grabcut{maps_suffix(args.sets)}" / f"{p[0]}_{p[1]}.npz").exists()]
    by_image: dict[int, list[int]] = {}
    for image_id, c, _ in pairs:
        by_image.setdefault(image_id, []).append(c)
    presets = [DEFAULT_PRESET] + ([] if args.no_paper else ["simonyan2014"])
    locs = {p: Localizer(LocalizerConfig.from_preset(p, device=args.device, class_map=cmap.to_entries(),
                                                     targets="gt", **(map_changes(args.sets) if p == DEFAULT_PRESET
                                                                      else {}))) for p in presets}
    suffix = maps_suffix(args.sets)
    base = locs[DEFAULT_PRESET].segment_config
    configs = {"default preset": base, **{name: base.replace(**ch) for name, ch in map(parse_row, args.row)}}
    fractions = [float(v) for v in args.fractions.split(",")]
    thr_rows = [f"map >= {f:g} max" for f in fractions]
    names = ["whole image", *thr_rows, *([] if args.no_grabcut else [GRABCUT]), *configs,
             *([] if args.no_paper else ["paper preset"])]
    made: dict[str, dict] = {k: {} for k in names}  # row -> (image_id, category) -> RLE
    seconds = {k: 0.0 for k in names}
    maps_of = {"default": {}, "paper": {}}  # for PxAP
    scores: dict = {}
    t_all = time.perf_counter()
    for s in gt.samples:
        cats_here = by_image.get(s.image_id)
        if not cats_here:
            continue
        image = load_image(s.path)
        h, w = image.shape[:2]
        for p, loc in locs.items():
            maps, classes = image_maps(loc, image, cats_here, args.cache, p + (suffix if p == DEFAULT_PRESET else ""),
                                       s.image_id)
            if p != DEFAULT_PRESET:
                t0 = time.perf_counter()
                for c, seg in zip(classes, segment(image, maps, loc.segment_config)):
                    made["paper preset"][(s.image_id, int(c))] = mask_to_rle(seg.mask)
                seconds["paper preset"] += time.perf_counter() - t0
                maps_of["paper"].update({(s.image_id, int(c)): m for c, m in zip(classes, maps)})
                continue
            if not args.no_ap:
                scores.update(zip([(s.image_id, int(c)) for c in classes], image_scores(loc, image, classes)))
            maps_of["default"].update({(s.image_id, int(c)): m for c, m in zip(classes, maps)})
            for name, config in configs.items():
                t0 = time.perf_counter()
                for c, seg in zip(classes, segment(image, maps, config)):
                    made[name][(s.image_id, int(c))] = mask_to_rle(seg.mask)
                seconds[name] += time.perf_counter() - t0
            for c, m in zip(classes, maps):
                key = (s.image_id, int(c))
                full = resize_map(m, (h, w))
                top = full.max() if full.max() > 0 else 1.0
                made["whole image"][key] = mask_to_rle(np.ones((h, w), bool))
                for f, row in zip(fractions, thr_rows):
                    made[row][key] = mask_to_rle(full >= f * top)
                if not args.no_grabcut:
                    mask, spent = cached_grabcut(image, full, args.cache, s.image_id, int(c), suffix)
                    made[GRABCUT][key] = mask_to_rle(mask)
                    seconds[GRABCUT] += spent
    wall = time.perf_counter() - t_all
    rows = {k: score_row(pairs, made[k], scores, gt, cats, not args.no_ap) for k in names}
    if not args.no_ap:
        for k in names:
            if k != "whole image":
                which = "paper" if k == "paper preset" else "default"
                rows[k]["pxap"] = gt_known_pxap(pairs, lambda i, c, d=maps_of[which]: d.get((i, c)))["pxap"]
    for k in names:
        rows[k]["seconds_per_map"] = seconds[k] / max(1, len(pairs))
        rows[k]["config"] = dataclasses.asdict(configs[k]) if k in configs else None
    best = max(thr_rows, key=lambda k: rows[k]["miou"])
    show = [k for k in names if k not in thr_rows or k == best]
    print(f"{n} images, {len(pairs)} (image, mapped category) pairs; maps: {DEFAULT_PRESET} preset's saliency"
          f"{' with ' + ', '.join(args.sets) if args.sets else ''}; "
          f"{wall:.0f} s in all")
    print_table(rows, show, None)
    for half, _ in HALVES:
        print(f"\n{half}")
        print_table(rows, show, half)
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n, "pairs": len(pairs), "rows": rows,
                                               "best_fraction": best, "rows_shown": show}, indent=1))
    return 0


def print_table(rows: dict, show: list, half: str | None) -> None:
    """mIoU overall and per bucket, IoU >= 0.5, mask AP, PxAP, seconds per map (in %, except the seconds)."""
    first = rows[show[0]] if half is None else rows[show[0]][half]
    heads = list(first["by_size"])
    print(f"{'mask':<34}{'mIoU':>7}" + "".join(f"{h.split()[0] + ' (' + str(first['by_size'][h]['n']) + ')':>14}"
                                              for h in heads)
          + f"{'IoU>=.5':>9}" + (f"{'maskAP':>8}{'PxAP':>7}{'s/map':>8}" if half is None else ""))
    for k in show:
        r = rows[k] if half is None else rows[k][half]
        cells = "".join(f"{100 * r['by_size'][h]['miou']:>14.1f}" if r["by_size"][h]["miou"] is not None
                        else f"{'-':>14}" for h in heads)
        tail = ""
        if half is None:
            ap_, px = r.get("mask_ap"), r.get("pxap")
            tail = (f"{100 * ap_:>8.1f}" if ap_ is not None else f"{'-':>8}") + (
                f"{100 * px:>7.1f}" if px is not None else f"{'-':>7}") + f"{r['seconds_per_map']:>8.3f}"
        print(f"{k:<34}{100 * r['miou']:>7.1f}{cells}{100 * r['iou50']:>9.1f}{tail}")


def time_segmenters(args) -> int:
    """Seconds per map of cv2.grabCut and of each segmentation row, interleaved on the same maps."""
    from wsloc.evaluate.ground_truth import GroundTruth
    from wsloc.evaluate.gt_masks import gt_union_masks
    from wsloc.io import load_image, open_dataset
    from wsloc.labels import ClassMap
    from wsloc.localizer import Localizer, LocalizerConfig
    from wsloc.presets import DEFAULT_PRESET
    from wsloc.segment import segment
    from wsloc.segment.seeds import resize_map

    ds = open_dataset(args.annotations)
    cmap = ClassMap.from_dataset(ds)
    gt = GroundTruth(ds, range(len(ds)))
    pairs = gt_union_masks(gt.coco, [s.image_id for s in gt.samples], set(cmap.ids))
    step = max(1, len(pairs) // args.time_maps)
    chosen = pairs[::step][:args.time_maps]
    loc = Localizer(LocalizerConfig.from_preset(DEFAULT_PRESET, device=args.device, class_map=cmap.to_entries(),
                                                targets="gt"))
    base = loc.segment_config
    configs = {"default preset": base, **{name: base.replace(**ch) for name, ch in map(parse_row, args.row)}}
    spent = {GRABCUT: 0.0, **{k: 0.0 for k in configs}}
    samples = {s.image_id: s for s in gt.samples}
    for image_id, c, _ in chosen:
        image = load_image(samples[image_id].path)
        cats = sorted({p[1] for p in pairs if p[0] == image_id})
        maps, classes = image_maps(loc, image, cats, args.cache, DEFAULT_PRESET, image_id)
        m = maps[list(classes).index(c)]
        t0 = time.perf_counter()
        grabcut_from_map(image, resize_map(m, image.shape[:2]))
        spent[GRABCUT] += time.perf_counter() - t0
        for name, config in configs.items():
            t0 = time.perf_counter()
            segment(image, m, config)
            spent[name] += time.perf_counter() - t0
    print(f"{len(chosen)} maps (every {step}th pair), seconds per map (the peer's clock starts after the map is "
          "resized to the image; ours includes its own resizing)")
    for name, sec in spent.items():
        ratio = "" if name == GRABCUT else f"   {spent[GRABCUT] / sec:6.1f}x faster than the peer"
        print(f"{name:<34}{sec / len(chosen):>8.3f}{ratio}")
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
