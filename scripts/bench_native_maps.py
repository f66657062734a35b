"""Maps at the photo's own aspect ratio, and pyramids of them, against today's squashed maps (issue 12).

For the ground-truth class of every image (GT-known protocol), the default preset's segmentation
(its :class:`wsloc.segment.SegmentConfig`, the same GraphCut) is fed with the map of each variant,
and the box of the mask is scored as ``wsloc evaluate`` scores it: IoU >= 0.5 with a ground-truth
box of the class, devkit rule (:func:`wsloc.evaluate.iou.box_iou`), per bucket of the largest
ground-truth box's share of the image (:data:`wsloc.evaluate.run.SIZE_BUCKETS`), on all images and
on the held-out half (the odd positions of the dataset, the rule of ``scripts/reproduce.py``).

The network passes (EfficientNet-Lite0; Grad-CAM at its pooled layer = CAM from the linear layer,
one forward pass each, :func:`wsloc.saliency.cam.layer_gradcam`):

* ``sq224``: the whole photo squashed to 224 x 224 (the default preset's first scale and the pass
  that classifies);
* ``sq448``: that 224 px tensor enlarged to 448 x 448 (the default preset's second scale);
* ``nL``: the photo resized from its own pixels (area when shrinking, bilinear when enlarging) so
  that its longer side is ``L``, both sides rounded to a multiple of 32: the photo's own aspect
  (:meth:`wsloc.models.Preprocess.native`, as :func:`wsloc.saliency.multiscale.native_multiscale` runs it;
  ``sq224+nL`` is ``native_multiscale(..., long_side=L, squashed=True)``).

A variant fuses some passes as :func:`wsloc.saliency.multiscale` does: each pass's map upsampled
(bilinear) to its input, then to the fusion grid (the first pass's input), peak-normalised
(:func:`wsloc.normalize.normalize_maps`), averaged. ``today`` (``sq224+sq448``) is checked against
:func:`wsloc.saliency.multiscale` itself on the first images. :func:`wsloc.segment.prepare_maps`
then brings the fused map to the segmenter's working grid at the image's own aspect. A ``@pP``
suffix divides the fused map by its P-th percentile and clips it to [0, 1] before seeding
(percentile normalisation). Cost: forward-pass pixels per image (no timing). Rows ``oracle A | B``
(A the first variant asked for) count an image as localized when either map's box is right: the
headroom of choosing one of two maps per image, not a method.

The raw class maps (before upsampling) of every pass are cached under ``--cache`` (one ``.npz``
per image), with the top-5 classes of each pass (the classification figures of each input).

    nice -n 15 python scripts/bench_native_maps.py                  # both sets, every variant
    nice -n 15 python scripts/bench_native_maps.py --sets fullres --limit 40 --variants today,n448
    nice -n 15 python scripts/bench_native_maps.py --json /tmp/native.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
from wsloc.models.preprocess import native_size  # noqa: E402  (the rule of Preprocess.native)
SETS = {"fullres": DATA / "imagenet-val-fullres-dev" / "annotations.json",
        "1300": DATA / "imagenet-val-1300" / "annotations.json"}

#: name -> the passes it fuses (the first one's input is the fusion grid).
VARIANTS = {
    "today": ("sq224", "sq448"),
    "n448": ("n448",), "n512": ("n512",), "n640": ("n640",),
    "n224+n448": ("n448", "n224"),
    "n224+n512": ("n512", "n224"),
    "n320+n640": ("n640", "n320"),
    "n224+n448+n640": ("n640", "n448", "n224"),
    "sq224+n640": ("n640", "sq224"),
    "today+n640": ("n640", "sq224", "sq448"),
    "n224+n640": ("n640", "n224"),
    "sq224+n448+n640": ("n640", "n448", "sq224"),
    "n224+n320+n448+n640": ("n640", "n448", "n320", "n224"),
    "today@p99": ("sq224", "sq448"),
    "n224+n448@p99": ("n448", "n224"),
    "n224+n448+n640@p99": ("n640", "n448", "n224"),
}


def split_variant(name: str) -> tuple[tuple[str, ...], float | None]:
    """A variant name -> (its passes, the percentile of ``@pP`` or None). Besides :data:`VARIANTS`,
    ``A[:w]*B[:w]...`` (weighted geometric mean) and ``A[:w]+B[:w]...`` (weighted mean) of passes,
    fused on the first pass's grid (see :func:`variant_fusion`)."""
    base, _, pct = name.partition("@p")
    if base in VARIANTS or name in VARIANTS:
        return VARIANTS.get(name, VARIANTS.get(base)), (float(pct) if pct else None)
    op = "*" if "*" in base else "+"
    return tuple(part.split(":")[0] for part in base.split(op)), (float(pct) if pct else None)


def variant_fusion(name: str) -> tuple[str, tuple[float, ...] | None]:
    """("mean" or "geometric", per-pass weights or None) of a variant name."""
    base = name.partition("@p")[0]
    if base in VARIANTS or name in VARIANTS:
        return "mean", None
    op = "*" if "*" in base else "+"
    weights = tuple(float(part.split(":")[1]) if ":" in part else 1.0 for part in base.split(op))
    return ("geometric" if op == "*" else "mean"), weights


# --------------------------------------------------------------------------- data

def load_set(ann: Path, limit: int | None) -> list[dict]:
    """Per image: path, id, label, gt boxes float64 [M, 4] xyxy, (H, W), share of the largest box."""
    from wsloc.io import CocoDataset

    ds = CocoDataset(str(ann))
    n = len(ds) if limit is None else min(limit, len(ds))
    out = []
    for i in range(n):
        s = ds[i]
        b = np.asarray(s.boxes, np.float64).reshape(-1, 4)
        share = (float((np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)).max()
                       / (s.width * s.height)) if len(b) and s.width > 0 and s.height > 0 else float("nan"))
        out.append({"path": s.path, "id": int(s.image_id), "label": int(s.label), "gt": b,
                    "share": share, "position": i})
    return out


# --------------------------------------------------------------------------- network passes (cached)

def pass_input(image: np.ndarray, name: str, preprocess) -> torch.Tensor:
    """float32 [1, 3, h, w] network input of one pass (see the module docstring)."""
    import torch.nn.functional as F

    if name == "sq224":
        return preprocess.batch([image])
    if name == "sq448":
        x = preprocess.batch([image])
        return F.interpolate(x, size=(448, 448), mode="bilinear", align_corners=False, antialias=False)
    if name.startswith("s"):  # sL: the photo squashed to L x L from its own pixels
        side = int(name[1:])
        return dataclasses.replace(preprocess, size=(side, side)).batch([image])
    return preprocess.native(image, int(name[1:]))[None]


def run_pass(net, x: torch.Tensor, label: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [h', w'] Grad-CAM of ``label`` at the pooled layer, int64 [5] top-5 classes)."""
    from wsloc.saliency.cam import layer_gradcam
    from wsloc.saliency.core import as_net

    net = as_net(net)
    x = x.contiguous(memory_format=torch.channels_last)
    m, logits, _ = layer_gradcam(net, x, torch.tensor([[label]]), 1, net.last_conv)
    return m[0, 0].float().numpy(), logits[0].topk(5).indices.numpy()


def load_cached(path: Path) -> dict:
    """The arrays of a cache ``.npz`` by name; {} when it is absent or unreadable (then it is made again)."""
    if not path.exists():
        return {}
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return {}


def passes_of(rec: dict, wanted: set, net, preprocess, cache: Path) -> dict:
    """{pass: (cam [h', w'], input (h, w), top5)} of one image, computed where not cached."""
    from wsloc.io import load_image

    path = cache / f"{rec['id']}.npz"
    have = load_cached(path)
    missing = sorted((p for p in wanted if f"{p}_cam" not in have), key=lambda p: p != "sq224")
    if missing:
        image = load_image(rec["path"])
        for p in missing:
            if p.startswith("n") and native_size(*image.shape[:2], int(p[1:])) == tuple(preprocess.size):
                for part in ("cam", "size", "top5"):  # the same input as the squashed pass
                    have[f"{p}_{part}"] = have[f"sq224_{part}"]
                continue
            x = pass_input(image, p, preprocess)
            cam, top5 = run_pass(net, x, rec["label"])
            have[f"{p}_cam"], have[f"{p}_size"], have[f"{p}_top5"] = cam, np.array(x.shape[-2:]), top5
        np.savez(path, **have)
    return {p: (have[f"{p}_cam"], tuple(int(v) for v in have[f"{p}_size"]), have[f"{p}_top5"]) for p in wanted}


# --------------------------------------------------------------------------- maps, boxes, figures

def fuse(passes: dict, names: tuple[str, ...], percentile: float | None = None, fusion: str = "mean",
         weights: tuple[float, ...] | None = None) -> np.ndarray:
    """float32 [h, w] map of a variant on the first pass's input grid (the multiscale rule;
    ``fusion`` / ``weights`` as :func:`wsloc.saliency.multiscale.fuse_maps` takes them)."""
    from wsloc.saliency.core import upsample_maps
    from wsloc.saliency.multiscale import check_fusion, fuse_maps

    grid = passes[names[0]][1]
    runs = [(upsample_maps(torch.from_numpy(passes[n][0])[None, None], passes[n][1]), i) for i, n in enumerate(names)]
    if len(names) == 1:
        fused = upsample_maps(runs[0][0], grid)[0, 0].numpy()
    else:
        fused = fuse_maps(runs, grid, fusion, check_fusion(fusion, weights, len(names)))[0, 0].numpy()
    if percentile is not None:
        q = float(np.percentile(fused, percentile))
        if q > 0:
            fused = np.clip(fused / q, 0.0, 1.0).astype(np.float32)
    return fused


def check_today(recs: list[dict], net, preprocess, cache: Path, n: int = 3) -> float:
    """Largest |difference| between ``today`` rebuilt from the cached passes and multiscale's own map."""
    from wsloc.io import load_image
    from wsloc.presets import preset
    from wsloc.saliency import multiscale

    sal = preset().saliency
    worst = 0.0
    for rec in recs[:n]:
        x = preprocess.batch([load_image(rec["path"])]).contiguous(memory_format=torch.channels_last)
        ref = multiscale(net, x, torch.tensor([[rec["label"]]]), sal.method, 1, scales=sal.scales,
                         flip=sal.flip, **sal.options).maps[0, 0].numpy()
        mine = fuse(passes_of(rec, {"sq224", "sq448"}, net, preprocess, cache), VARIANTS["today"])
        worst = max(worst, float(np.abs(ref - mine).max()))
    return worst


def boxes_of(recs: list[dict], variant: str, all_passes: list[dict], images: list, seg) -> list[np.ndarray]:
    """xyxy box of the GT class's mask for every image, with the maps of ``variant``."""
    from wsloc.segment import prepare_maps, segment_prepared

    names, pct = split_variant(variant)
    out = []
    for rec, passes, (small, size) in zip(recs, all_passes, images):
        m = fuse(passes, names, pct, *variant_fusion(variant))
        out.append(segment_prepared(small, prepare_maps(m[None], size, seg), seg)[0].box)
    return out


def figures(recs: list[dict], hits: np.ndarray) -> dict:
    """GT-known accuracy (%) and counts: overall and per size bucket, all images and held-out half."""
    from wsloc.evaluate.run import SIZE_BUCKETS

    share = np.array([r["share"] for r in recs])
    odd = np.array([r["position"] % 2 == 1 for r in recs])
    out = {}
    for half, sel in (("all", np.ones(len(recs), bool)), ("held-out", odd)):
        row = {"overall": (100.0 * hits[sel].mean(), int(sel.sum()))}
        for name, lo, hi in SIZE_BUCKETS:
            b = sel & (share >= lo) & (share < hi)
            row[name] = (100.0 * hits[b].mean() if b.any() else float("nan"), int(b.sum()))
        out[half] = row
    return out


def classification(recs: list[dict], all_passes: list[dict], names) -> dict:
    """Top-1 / top-5 accuracy (%) of each pass's own classes."""
    labels = np.array([r["label"] for r in recs])
    out = {}
    for p in names:
        t5 = np.stack([a[p][2] for a in all_passes])
        out[p] = (100.0 * (t5[:, 0] == labels).mean(), 100.0 * (t5 == labels[:, None]).any(1).mean())
    return out


# --------------------------------------------------------------------------- main

def bench_set(name: str, args, net, preprocess, seg) -> dict | None:
    from wsloc.evaluate.ilsvrc import gt_known_accuracy
    from wsloc.io import load_image
    from wsloc.segment.seeds import working_image

    ann = SETS[name]
    if not ann.exists():
        print(f"{name}: {ann} is absent: skipped")
        return None
    recs = load_set(ann, args.limit)
    variants = args.variants
    wanted = sorted({p for v in variants for p in split_variant(v)[0]} | {"sq224"})  # sq224: aliases
    cache = Path(args.cache) / name
    cache.mkdir(parents=True, exist_ok=True)
    all_passes, images = [], []
    for i, rec in enumerate(recs):
        all_passes.append(passes_of(rec, set(wanted), net, preprocess, cache))
        image = load_image(rec["path"])
        images.append((working_image(image, seg.max_side), image.shape[:2]))
        print(f"\r{name}: passes {i + 1}/{len(recs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    result = {"n": len(recs), "check_today_max_abs_diff": check_today(recs, net, preprocess, cache),
              "classification": classification(recs, all_passes, wanted), "variants": {}}
    for v in variants:
        boxes = boxes_of(recs, v, all_passes, images, seg)
        _, hits = gt_known_accuracy(boxes, [r["gt"] for r in recs], 0.5, "devkit")
        cost = np.mean([sum(a[p][1][0] * a[p][1][1] for p in split_variant(v)[0]) for a in all_passes])
        result["variants"][v] = {"figures": figures(recs, hits.astype(float)), "pixels_per_image": float(cost),
                                 "hits": hits.astype(int).tolist()}
        print(f"{name}: {v} done", file=sys.stderr)
    first = variants[0]
    for v in variants[1:]:  # headroom of choosing between two maps per image (an oracle, not a method)
        both = np.maximum(result["variants"][first]["hits"], result["variants"][v]["hits"]).astype(float)
        result["variants"][f"oracle {first} | {v}"] = {"figures": figures(recs, both), "pixels_per_image": float(
            result["variants"][first]["pixels_per_image"] + result["variants"][v]["pixels_per_image"])}
    return result


def print_table(name: str, res: dict) -> None:
    from wsloc.evaluate.run import SIZE_BUCKETS

    cols = ["overall"] + [b[0] for b in SIZE_BUCKETS]
    print(f"\n## {name} ({res['n']} images); today rebuilt vs multiscale: max |diff| "
          f"{res['check_today_max_abs_diff']:.2g}")
    print("classification (top-1 / top-5 %) of each pass: "
          + ", ".join(f"{p} {a:.1f} / {b:.1f}" for p, (a, b) in res["classification"].items()))
    for half in ("all", "held-out"):
        first = next(iter(res["variants"].values()))["figures"][half]
        head = " | ".join(f"{c} (n={first[c][1]})" for c in cols)
        print(f"\n{half}: GT-known accuracy %\n| variant | fwd px/image | {head} |")
        print("|---" * (len(cols) + 2) + "|")
        for v, r in res["variants"].items():
            f = r["figures"][half]
            cells = " | ".join(f"{f[c][0]:.1f}" for c in cols)
            print(f"| {v} | {r['pixels_per_image'] / 1000:.0f}k | {cells} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="fullres,1300", help="comma-separated: fullres, 1300")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--cache", default="/tmp/native-cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write every figure here")
    args = ap.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    passes = re.compile(r"^(sq224|sq448|[ns]\d+)(:\d+(\.\d+)?)?$")
    bad = [v for v in args.variants if v not in VARIANTS and not all(
        passes.match(p) for p in v.partition("@p")[0].replace("*", "+").split("+"))]
    if bad:
        ap.error(f"unknown variants {bad}; known: {', '.join(VARIANTS)}, or passes (sq224, sq448, nL, sL) joined "
                 "by * (geometric mean) or + (mean), each with an optional :weight")
    sets = [s for s in args.sets.split(",") if s]
    if not any(SETS[s].exists() for s in sets):
        print("no data set present: nothing to measure")
        return 0
    torch.set_num_threads(args.threads)
    from wsloc.localizer import Localizer
    from wsloc.presets import preset

    loc = Localizer(device="cpu")  # the default preset: its network (channels-last) and segmenter
    seg = preset().segment
    out = {}
    for s in sets:
        res = bench_set(s, args, loc.classifier, loc.classifier.preprocess, seg)
        if res is not None:
            out[s] = res
            print_table(s, res)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
