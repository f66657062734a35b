"""The map carried into feature space (:func:`wsloc.saliency.refine.feature_map`) against the map itself.

For each image the default preset's fused 224 + 448 px Grad-CAM map of a class is computed as the
Localizer computes it, and so are the features of Lite0's ``_blocks.10`` on the 448 px pass (the 224 px
input enlarged, as the preset's second scale). Each row segments either the map itself or the feature
map made from it (logistic regression on the features, positives at >= 50 % of the map's maximum,
negatives at <= 20 %, times the map's fraction to ``map_power``), with the same segmenter.

* ImageNet sets (``fullres``, ``1300``): the ground-truth class's map (GT-known protocol), the default
  preset's segmentation, the box of the mask; hit = IoU >= 0.5 with a ground-truth box, devkit rule,
  per bucket of the largest box's share of the image (:data:`wsloc.evaluate.run.SIZE_BUCKETS`), all
  images and the held-out half (odd positions). Rows ``oracle A | B``: right when either row is right
  (headroom of choosing per image, not a method).
* ``coco`` (coco2017-masks-dev): GT-known mask IoU (:func:`wsloc.evaluate.gt_masks.gt_known_mask_iou`),
  the mapped ImageNet class with the best logit, per mask-size bucket, all pairs and each half by image
  id parity; segmented by the default preset and by "soft seeds" (``q_fg=50, q_fg_hard=70, gamma=20``).

Maps and features are cached under ``--cache`` (one ``.npz`` per image and set).

    nice -n 10 python scripts/bench_feature_maps.py --sets fullres,1300,coco --cache /tmp/featcache
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"fullres": DATA / "imagenet-val-fullres-dev" / "annotations.json",
        "1300": DATA / "imagenet-val-1300" / "annotations.json",
        "coco": DATA / "coco2017-masks-dev" / "annotations.json"}
POWERS = {"feature map": 0.0, "feature map x map^0.25": 0.25, "feature map x map^0.5": 0.5}
SOFT = {"q_fg": 50.0, "q_fg_hard": 70.0, "gamma": 20.0}


def pct(v) -> str:
    """A fraction as a percentage with one decimal ("-" for None or nan: an empty bucket)."""
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def rate(hit: np.ndarray) -> float | None:
    """The share of True in ``hit`` (None when empty)."""
    return float(hit.mean()) if hit.size else None


def maps_and_features(loc, image: np.ndarray, wanted: list[int], path: Path | None):
    """(maps float32 ``[K, h, w]``, classes ``[K]``, features float16 ``[C, h', w']``) of one image, cached."""
    from wsloc.saliency.refine import layer_features

    if path is not None and path.exists():
        with np.load(path) as z:
            return z["maps"], z["classes"], z["features"]
    x = loc.preprocess.batch([image])
    maps, classes, _, _ = loc.network(x, [wanted]).image(0)
    x2 = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    feats = layer_features(loc.classifier.model, x2.to(loc.classifier.device))[0].cpu().numpy().astype(np.float16)
    out = np.asarray(maps, np.float32), np.asarray(classes, np.int64), feats
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, maps=out[0], classes=out[1], features=out[2])
    return out


def variant_maps(m: np.ndarray, feats: np.ndarray) -> dict:
    """Row name -> the map that row segments (the map itself when the feature map has no seeds). The
    regression is fitted once; each power multiplies its probability by ``grid_map ** power``, which is
    what ``feature_map(..., map_power=power)`` returns."""
    from wsloc.saliency.refine import feature_map, grid_map

    out = {"map itself": m}
    p = feature_map(feats.astype(np.float32), m)
    r = None if p is None else grid_map(m, p.shape)
    for name, power in POWERS.items():
        out[name] = m if p is None else (p * r ** power if power else p)
    return out


def imagenet_set(name: str, args) -> None:
    from wsloc.evaluate.iou import box_iou
    from wsloc.evaluate.run import SIZE_BUCKETS
    from wsloc.io import load_image
    from wsloc.localizer import Localizer, LocalizerConfig
    from wsloc.segment import segment

    from reproduce import load_data  # the method table's reader: paths, labels, boxes, largest-box shares

    data = load_data(str(SETS[name]), args.limit)
    n = len(data.paths)
    loc = Localizer(LocalizerConfig.from_preset("gradcam_graphcut", device=args.device))
    hits: dict[str, list[bool]] = {}
    for i, (path, image_id, label, gt) in enumerate(zip(data.paths, data.ids, data.labels, data.gt)):
        image = load_image(path)
        cache = Path(args.cache) / name / f"{image_id}.npz" if args.cache else None
        maps, _, feats = maps_and_features(loc, image, [int(label)], cache)
        for row, m in variant_maps(maps[0], feats).items():
            box = segment(image, m[None], loc.segment_config)[0].box
            ok = box is not None and bool((box_iou(np.asarray(box, float), gt, "devkit") >= 0.5).any())
            hits.setdefault(row, []).append(ok)
        print(f"\r{name}: {i + 1}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    share = data.share
    odd = np.arange(n) % 2 == 1
    rows = {k: np.array(v) for k, v in hits.items()}
    for k in POWERS:
        rows[f"oracle map | {k}"] = rows["map itself"] | rows[k]
    print(f"\n{name} ({n} images): GT-known %, devkit IoU >= 0.5, overall / "
          + " / ".join(b[0] for b in SIZE_BUCKETS))
    for k, hit in rows.items():
        cells = []
        for sel in (np.ones(n, bool), odd):
            parts = [rate(hit[sel])] + [rate(hit[sel & (share >= lo) & (share < hi)]) for _, lo, hi in SIZE_BUCKETS]
            cells.append(" / ".join(map(pct, parts)))
        print(f"  {k:36s} all {cells[0]:28s} held-out {cells[1]}")


def coco_set(args) -> None:
    from wsloc.evaluate.ground_truth import GroundTruth
    from wsloc.evaluate.gt_masks import MASK_SIZE_BUCKETS, gt_known_mask_iou, gt_union_masks
    from wsloc.io import load_image, open_dataset
    from wsloc.labels import ClassMap
    from wsloc.localizer import Localizer, LocalizerConfig
    from wsloc.segment import segment

    ds = open_dataset(str(SETS["coco"]))
    cmap = ClassMap.from_dataset(ds)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    gt = GroundTruth(ds, range(n))
    pairs = gt_union_masks(gt.coco, [s.image_id for s in gt.samples], set(cmap.ids))
    by_image: dict[int, list[int]] = {}
    for image_id, c, _ in pairs:
        by_image.setdefault(image_id, []).append(c)
    loc = Localizer(LocalizerConfig.from_preset("gradcam_graphcut", device=args.device, class_map=cmap.to_entries(),
                                                targets="gt"))
    segs = {"default preset": loc.segment_config, "soft seeds": loc.segment_config.replace(**SOFT)}
    made: dict[str, dict] = {}
    for j, s in enumerate(gt.samples):
        if s.image_id not in by_image:
            continue
        image = load_image(s.path)
        cache = Path(args.cache) / "coco" / f"{s.image_id}.npz" if args.cache else None
        maps, classes, feats = maps_and_features(loc, image, by_image[s.image_id], cache)
        for c, m in zip(classes, maps):
            for row, mm in variant_maps(m, feats).items():
                for seg_name, config in segs.items():
                    made.setdefault(f"{seg_name} on {row}", {})[(s.image_id, int(c))] = \
                        segment(image, mm[None], config)[0].mask
        print(f"\rcoco: {j + 1}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"\ncoco ({n} images, {len(pairs)} pairs): GT-known mask mIoU %, overall / "
          + " / ".join(b[0] for b in MASK_SIZE_BUCKETS))
    for k, d in made.items():
        cells = []
        for parity in (None, 0, 1):
            sel = [p for p in pairs if parity is None or p[0] % 2 == parity]
            r = gt_known_mask_iou(sel, lambda i, c, d=d: d.get((i, c)))
            cells.append(" / ".join(map(pct, [r["miou"]] + [r["by_size"][b[0]]["miou"] for b in MASK_SIZE_BUCKETS])))
        print(f"  {k:44s} all {cells[0]:26s} even {cells[1]:26s} odd {cells[2]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="fullres,1300,coco", help="comma-separated: fullres, 1300, coco")
    ap.add_argument("--cache", default=None, help="folder keeping each image's maps and features")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.sets.split(","):
        if name not in SETS:
            ap.error(f"--sets: unknown set {name!r}; expected {', '.join(SETS)}")
        if not SETS[name].exists():
            print(f"{SETS[name]}: not found, {name} skipped", file=sys.stderr)
            continue
        coco_set(args) if name == "coco" else imagenet_set(name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
