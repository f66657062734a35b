"""The box chosen per image (issue 12): candidates, the evidence selector and the oracle, GT-known, by size.

For every image of ``../shared/data/imagenet-val-fullres-dev`` (463) and ``../shared/data/imagenet-val-1300``
(1,298) and its ground-truth class (GT-known protocol), with the default preset (``wsloc.Localizer()``:
Grad-CAM fused over 224 and 448 px, fraction seeds 40/20, GraphCut, union box):

* the default box (``Localizer``'s box for that class: :func:`wsloc.segment.segment` of the fused map
  with the preset's SegmentConfig, what :func:`wsloc.localizer.localize_maps` runs);
* every candidate rule of :func:`wsloc.boxes_select.rule_boxes` (mask union = the default box, mask
  largest component, the map at fractions 0.1 ... 0.6 of its maximum: largest component and union, the
  whole image), each alone;
* the selector (:func:`wsloc.boxes_select.score_from_stats`, every variant and area weight; the one
  kept is chosen on the tuning halves of both sets, see ``choose``) and the oracle (best IoU per image);

GT-known accuracy (IoU >= 0.5 with a ground-truth box, ``box_iou`` convention "devkit", as ``wsloc
evaluate``) overall and per bucket of the largest ground-truth box's share of the image (< 25 %, 25-50 %,
> 50 %: ``wsloc.evaluate.run.SIZE_BUCKETS``, the share computed as ``wsloc evaluate`` does from the
annotated image size), on all images and on the held-out half (odd dataset positions, as
``scripts/reproduce.py``: nothing is chosen on them). Also the selector's extra cost: the network inputs
and batched forward passes per image (counted, not timed).

The selector settings tried: every variant of :data:`wsloc.boxes_select.VARIANTS` x area weight
(:data:`AREA_WEIGHTS`, times the box's share of the image) x switch margin (:data:`MARGINS`: None picks the
best candidate; a number keeps the default box unless another scores more than that above it). The one kept
is chosen on the tuning halves (even positions) of both sets (:func:`choose`); the held-out half shows it.

The network outputs (the true class's fused maps, every rule's box, the candidates' logit statistics) are
cached in ``/tmp/boxsel-cache/<set>/``, appended 32 images at a time (a killed run keeps its chunks), so
reruns are cheap; ``--cached-only`` computes nothing and reports the images cached so far (the first K of
a set; it says so). Without the data it prints "skipped" and exits 0::

    nice -n 15 python scripts/bench_box_select.py                # both sets
    nice -n 15 python scripts/bench_box_select.py --limit 40     # a quick look
    nice -n 15 python scripts/bench_box_select.py --cached-only  # the tables from the cache alone
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SETS = {"imagenet-val-fullres-dev": DATA / "imagenet-val-fullres-dev" / "annotations.json",
        "imagenet-val-1300": DATA / "imagenet-val-1300" / "annotations.json"}
CACHE = Path("/tmp/boxsel-cache")
AREA_WEIGHTS = (0.0, -0.25, -0.5, -1.0, -2.0, -4.0, -8.0, 0.25, 0.5, 1.0, 2.0)
MARGINS = (None, 0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0)  # None: the best box; else: default unless beaten by more
MAX_BATCH = 64
CHUNK = 32

from wsloc.evaluate.run import SIZE_BUCKETS as BUCKETS  # noqa: E402  (the buckets of `wsloc evaluate`)


def load_set(ann: Path, limit: int | None) -> dict:
    """paths, labels, ground-truth boxes (xyxy), sizes (H, W) and largest-box shares of a COCO set."""
    from wsloc.io import CocoDataset

    ds = CocoDataset(str(ann))
    n = len(ds) if limit is None else min(limit, len(ds))
    samples = [ds[i] for i in range(n)]
    gt = [np.asarray(s.boxes, np.float64).reshape(-1, 4) for s in samples]
    share = []
    for s, g in zip(samples, gt):  # the rule of wsloc.evaluate.run: annotated size, clipped lengths
        area = np.clip(g[:, 2] - g[:, 0], 0, None) * np.clip(g[:, 3] - g[:, 1], 0, None)
        share.append(float(area.max() / (s.width * s.height)) if len(g) and s.width > 0 else float("nan"))
    return {"paths": [s.path for s in samples], "labels": np.array([s.label for s in samples], np.int64),
            "gt": gt, "share": np.array(share), "n": n}


def true_class_maps(loc, data: dict, lo: int, hi: int) -> np.ndarray:
    """float32 [hi - lo, h, w] fused maps of the ground-truth class of images lo..hi-1, as the default
    Localizer makes them (``Localizer.saliency`` with that class as the target)."""
    import torch

    from wsloc.io import load_image

    out = []
    for i in range(lo, hi, 8):
        sl = slice(i, min(hi, i + 8))
        x = loc.preprocess.batch([load_image(p) for p in data["paths"][sl]])
        sal = loc.saliency(x, targets=torch.as_tensor(data["labels"][sl])[:, None])
        out.append(sal.maps[:, 0].detach().float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def image_rows(loc, image: np.ndarray, fused: np.ndarray, label: int, names: list) -> tuple:
    """One image: every rule's box [R, 4] (the default box is the mask's union box, checked), the true
    class's (crop logit, crop logsumexp, masked logit, masked logsumexp) per rule [R, 4] (computed once
    per distinct box), and (distinct candidates M, batched forward passes)."""
    from wsloc.boxes_select import box_evidence, class_stats, dedupe_boxes, rule_boxes
    from wsloc.segment import segment

    seg = segment(image, fused[None], loc.segment_config)[0]
    named = rule_boxes(seg.mask, fused, image.shape[:2])
    assert np.array_equal(named["mask_union"], seg.box), "the mask's union box is the default box"
    table = np.array([named[k] for k in names])
    boxes, _ = dedupe_boxes({str(r): b for r, b in enumerate(table)})
    ev = box_evidence(loc.classifier.model, image, boxes, loc.classifier.preprocess, max_batch=MAX_BATCH)
    per_box = np.stack([*class_stats(ev.crop, label), *class_stats(ev.masked, label)], 1)  # [M, 4]
    stats = np.array([per_box[next(j for j, d in enumerate(boxes) if np.array_equal(d, b))] for b in table])
    return table, stats, (len(boxes), ev.passes)


def load_cache(cache: Path, names: list, maps: bool = True) -> dict:
    """The cached rows of a set (the first K images), or empty arrays (``maps=False``: without the
    maps, which only a computing run needs)."""
    files = {k: cache / f"{k}.npy" for k in ("maps", "rules", "evidence", "counts")[0 if maps else 1:]}
    meta = cache / "meta.json"
    if all(f.exists() for f in files.values()) and meta.exists() and json.loads(meta.read_text()) == names:
        try:
            arrays = {k: np.load(f) for k, f in files.items()}
        except (OSError, ValueError, EOFError):  # a file cut short by a killed run: start again
            return {}
        k = min(len(a) for a in arrays.values())
        return {key: a[:k] for key, a in arrays.items()}
    return {}


def network_rows(loc, data: dict, cache: Path, names: list, compute: bool) -> dict:
    """maps [N, h, w], rules [N, R, 4], evidence [N, R, 4], counts [N, 2] of the set's first N images,
    computed CHUNK images at a time and appended to the cache (a killed run keeps its chunks);
    ``compute=False``: only the cached images (N may shrink)."""
    from wsloc.io import load_image

    have = load_cache(cache, names, maps=compute)
    k = len(have.get("rules", ()))
    while compute and k < data["n"]:
        hi = min(data["n"], k + CHUNK)
        full = cache / "maps_full.npy"  # maps of a whole earlier run, if one left them
        maps = np.load(full, mmap_mode="r")[k:hi].copy() if full.exists() and len(np.load(
            full, mmap_mode="r")) == data["n"] else true_class_maps(loc, data, k, hi)
        rows = [image_rows(loc, load_image(data["paths"][i]), maps[i - k], int(data["labels"][i]), names)
                for i in range(k, hi)]
        new = {"maps": maps, "rules": np.stack([r[0] for r in rows]), "evidence": np.stack([r[1] for r in rows]),
               "counts": np.array([r[2] for r in rows], np.int64)}
        have = {key: np.concatenate([have[key], a]) if have else a for key, a in new.items()}
        for key, a in have.items():
            np.save(cache / f"{key}.npy", a)
        (cache / "meta.json").write_text(json.dumps(names))
        k = hi
        print(f"  {cache.name}: {k}/{data['n']} images", file=sys.stderr, flush=True)
    return {key: a[:data["n"]] for key, a in have.items()}


def hits_of(boxes: np.ndarray, data: dict) -> np.ndarray:
    """bool [N]: IoU >= 0.5 (devkit) with one of the image's ground-truth boxes."""
    from wsloc.evaluate.iou import box_iou

    return np.array([len(g) > 0 and box_iou(b, g, "devkit").max() >= 0.5 for b, g in zip(boxes, data["gt"])])


def selector_picks(table: np.ndarray, stats: np.ndarray, variant: str, weight: float, margin: float | None
                   ) -> np.ndarray:
    """int [N]: the rule index picked per image by a scoring variant, area weight and switch margin
    (None: the best candidate; a number: the default box (rule 0, mask_union) unless another scores more
    than ``margin`` above it, :func:`wsloc.boxes_select.select_box`)."""
    from wsloc.boxes_select import box_share, score_from_stats, select_box

    whole = table[:, -1]  # the last rule is the whole image: (0, 0, W, H)
    share = np.stack([box_share(t, (w[3], w[2])) for t, w in zip(table, whole)])
    scores = score_from_stats(*np.moveaxis(stats, -1, 0), variant=variant, area_share=share, area_weight=weight)
    prefer = None if margin is None else 0
    return np.array([select_box(row, prefer, margin or 0.0) for row in scores], np.int64)


def oracle_picks(table: np.ndarray, data: dict) -> np.ndarray:
    from wsloc.boxes_select import oracle_box

    return np.array([oracle_box(table[i], data["gt"][i], "devkit")[0] for i in range(data["n"])])


def figures(hits: np.ndarray, share: np.ndarray, which: np.ndarray) -> dict:
    """GT-known accuracy (%) over ``which`` and per size bucket, with counts."""
    out = {"all": (100 * hits[which].mean(), int(which.sum()))}
    for name, lo, hi in BUCKETS:
        sel = which & (share >= lo) & (share < hi)
        out[name] = (100 * hits[sel].mean() if sel.any() else float("nan"), int(sel.sum()))
    return out


def balanced(hits: np.ndarray, share: np.ndarray, which: np.ndarray) -> float:
    f = figures(hits, share, which)
    return float(np.nanmean([f[name][0] for name, _, _ in BUCKETS]))


def print_table(title: str, rows: dict, share: np.ndarray, which: np.ndarray) -> None:
    first = figures(next(iter(rows.values())), share, which)
    print(f"\n{title}")
    head = f"{'row':52s}" + "".join(f"{k + f' ({v[1]})':>22s}" for k, v in first.items())
    print(head)
    for name, hits in rows.items():
        f = figures(hits, share, which)
        print(f"{name:52s}" + "".join(f"{v[0]:22.1f}" for v in f.values()))


def measure(name: str, ann: Path, limit: int | None, loc, compute: bool) -> dict:
    """Everything of one set: the rule table, the evidence, the hits of every rule and the oracle."""
    from wsloc.boxes_select import rule_names

    cache = CACHE / name
    cache.mkdir(parents=True, exist_ok=True)
    data = load_set(ann, limit)
    names = rule_names()
    rows = network_rows(loc, data, cache, names, compute)
    n = len(rows.get("rules", ()))
    if n < data["n"]:
        print(f"{name}: only the first {n} of {data['n']} images are computed (--cached-only)")
        data = load_set(ann, n)
    table, stats, counts = rows["rules"], rows["evidence"], rows["counts"]
    rule_hits = {r: hits_of(table[:, j], data) for j, r in enumerate(names)}
    hit_matrix = np.stack([rule_hits[r] for r in names], 1)  # [N, R]
    oracle = oracle_picks(table, data)
    idx = np.arange(data["n"])
    return {"data": data, "table": table, "names": names, "stats": stats, "m": counts[:, 0],
            "passes": counts[:, 1], "rule_hits": rule_hits, "hit_matrix": hit_matrix, "oracle": hits_of(table[idx, oracle], data),
            "tune": idx % 2 == 0, "held": idx % 2 == 1, "every": np.ones(data["n"], bool)}


def bucket_gain(hits: np.ndarray, base: np.ndarray, share: np.ndarray, which: np.ndarray) -> np.ndarray:
    """GT-known points gained over ``base`` per size bucket (small, medium, large) over ``which``."""
    f, g = figures(hits, share, which), figures(base, share, which)
    return np.array([f[name][0] - g[name][0] for name, _, _ in BUCKETS])


def choose(sets: dict) -> tuple[list, tuple]:
    """Every (variant, area weight, margin) with its figures on the tuning halves (even positions) of each
    set. The one kept: among those that gain on small objects on both tuning halves and lose at most 2
    points on medium and large there, the largest smaller of the two small-object gains; when none
    qualifies, the best mean over the sets of the bucket-balanced GT-known accuracy."""
    from wsloc.boxes_select import VARIANTS

    tried = []
    for variant in VARIANTS:
        for weight in AREA_WEIGHTS:
            for margin in MARGINS:
                per = {}
                for name, s in sets.items():
                    picks = selector_picks(s["table"], s["stats"], variant, weight, margin)
                    hits = s["hit_matrix"][np.arange(s["data"]["n"]), picks]
                    gain = bucket_gain(hits, s["rule_hits"]["mask_union"], s["data"]["share"], s["tune"])
                    per[name] = (balanced(hits, s["data"]["share"], s["tune"]), hits, gain)
                ok = all(v[2][0] > 0 and v[2][1] >= -2 and v[2][2] >= -2 for v in per.values())
                small = min(v[2][0] for v in per.values())
                tried.append((variant, weight, margin, float(np.mean([v[0] for v in per.values()])), per, ok, small))
    good = [t for t in tried if t[5]]
    best = max(good, key=lambda t: (t[6], t[3])) if good else max(tried, key=lambda t: t[3])
    return tried, best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--cached-only", action="store_true", help="compute nothing: the images already cached")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = ap.parse_args(argv)
    present = {k: SETS[k] for k in args.sets if SETS[k].exists()}
    if not present:
        print("skipped: no data at", ", ".join(str(SETS[k]) for k in args.sets))
        return 0
    import torch

    from wsloc.localizer import Localizer

    torch.set_num_threads(args.threads)
    loc = None if args.cached_only else Localizer(device="cpu")
    sets = {name: measure(name, ann, args.limit, loc, not args.cached_only) for name, ann in present.items()}
    tried, best = choose(sets)
    label = lambda t: f"{t[0]:13s} area {t[1]:+5.2f} margin {'best' if t[2] is None else f'{t[2]:4.2f}':>4s}"  # noqa: E731
    print("\nselector settings on the tuning halves (even positions): GT-known points gained over the default, "
          "small / medium / large, per set; bucket-balanced mean")
    for t in sorted(tried, key=lambda t: (-t[6], -t[3]))[:20]:
        print(f"  {label(t)}: " + "  ".join(f"{k[-8:]} {v[2][0]:+5.1f} {v[2][1]:+5.1f} {v[2][2]:+5.1f}"
                                          for k, v in t[4].items()) + f"  mean {t[3]:5.1f}{'  ok' if t[5] else ''}")
    print(f"  ({sum(t[5] for t in tried)} of {len(tried)} settings gain on small objects on both tuning halves "
          "without losing more than 2 points on medium or large)")
    report(sets, tried, best, label)
    return 0


def report(sets: dict, tried: list, best: tuple, label) -> None:
    print(f"\nselector kept: {' '.join(label(best).split())} ({'meets' if best[5] else 'no setting meets'} the rule on the "
          "tuning halves of both sets)")
    plain = {v: next(t for t in tried if t[:3] == (v, 0.0, None)) for v in ("logit_diff", "prob_diff")}
    for name, s in sets.items():
        rows = {"default preset (= mask_union)": s["rule_hits"]["mask_union"]}
        rows.update({f"rule {r}": h for r, h in s["rule_hits"].items()})
        rows[f"selector kept: {label(best)}"] = best[4][name][1]
        top = max(tried, key=lambda t: (t[6], t[3]))  # the largest small-object gain on both tuning halves
        if top is not best:
            rows[f"selector most small: {label(top)}"] = top[4][name][1]
        for v, t in plain.items():
            rows[f"selector {label(t)}"] = t[4][name][1]
        rows["oracle (best IoU per image)"] = s["oracle"]
        share = s["data"]["share"]
        print_table(f"== {name}: all {s['data']['n']} images, GT-known % (devkit IoU >= 0.5)", rows, share, s["every"])
        print_table(f"== {name}: held-out half (odd positions)", rows, share, s["held"])
        print(f"\n{name}: selector cost per image and class: {s['m'].mean():.2f} distinct candidates (min "
              f"{s['m'].min()}, max {s['m'].max()}) -> {2 * s['m'].mean():.2f} network inputs at the network's "
              f"input size in {s['passes'].mean():.2f} batched forward pass(es) (max batch {MAX_BATCH}), on top of "
              "the localizer's own passes")


if __name__ == "__main__":
    raise SystemExit(main())
