"""Choose the defaults of wsloc.segment: GT-known box accuracy and speed of option variants.

Saliency maps are the plain gradient maps (Simonyan et al. 2014: max over colour channels of
|d score / d input|) of EfficientNet-Lite0 for the ground-truth class of each image of
../shared/data/imagenet-val-1300 (227x227 photos).  They come from
``wsloc.saliency.attribute(..., method="gradient")`` when that module is importable, else from
a plain autograd computation in this script; they are cached in ``--cache`` (a folder).

For every variant (the defaults with one or more options changed) the script segments the
true-class map of the first ``--n`` images with ``wsloc.segment.segment`` and prints the
GT-known localization accuracy (the box has IoU >= 0.5 with one ground-truth box, in the devkit
convention of ``wsloc evaluate``, :mod:`wsloc.evaluate.iou`; the continuous convention's figure,
which the tables before issue 16 used, is printed beside it) and the
CPU time per image of colour models + graph cut + boxes (one map per image here; the localizer
segments K maps per image, the per-map cost is what matters).

    nice -n 10 python scripts/tune_segment.py --n 400                 # the default sweep
    nice -n 10 python scripts/tune_segment.py --n 400 --set max_side=96,128 --set gamma=25,50
    nice -n 10 python scripts/tune_segment.py --n 400 --grid "max_side=96,128;colour_space=rgb,lab"
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wsloc.evaluate.iou import box_iou  # noqa: E402
from wsloc.io import CocoDataset, load_image  # noqa: E402
from wsloc.segment import SegmentConfig, segment  # noqa: E402

DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                     "shared", "data", "imagenet-val-1300", "annotations.json"))

# The default sweep: one option at a time around the defaults.
SWEEP = {
    "max_side": [64, 96, 128, 160, 192, None],
    "colour_space": ["rgb", "lab", "ycrcb", "hsv"],
    "saliency_resize": ["area", "bilinear", "nearest", "bicubic"],
    "saliency_blur": [0.0, 1.0, 2.0, 4.0],
    "iterations": [1, 2, 3],
    "hard_seeds": [True, False],
    "max_seed_pixels": [200, 500, 1000, 2000, None],
    "gmm_max_iter": [2, 5, 10, 50],
    "gmm_init": ["random_from_data", "k-means++", "kmeans"],
    "gamma": [10.0, 25.0, 50.0, 100.0],
    "box_rule": ["largest", "mass", "union"],
}


def gradient_maps(clf, images: list[np.ndarray], targets: list[int], batch_size: int = 32) -> np.ndarray:
    """Plain gradient maps ``float32 [N, h, w]`` of the given target classes (one per image)."""
    try:
        from wsloc.saliency import attribute
    except ImportError:
        attribute = None
    out = []
    for i in range(0, len(images), batch_size):
        x = clf.preprocess.batch(images[i:i + batch_size]).to(clf.device)
        t = torch.tensor(targets[i:i + batch_size], device=clf.device)
        if attribute is not None:
            maps = attribute(clf, x, targets=t[:, None], method="gradient").maps[:, 0]
        else:
            x.requires_grad_(True)
            score = clf.model(x).gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(score, x)
            maps = grad.abs().amax(dim=1)
        out.append(maps.detach().float().cpu().numpy())
        print(f"\rmaps {min(i + batch_size, len(images))}/{len(images)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return np.concatenate(out)


def load_data(n: int, cache: str) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """(images uint8 [227,227,3], maps float32 [N,h,w] of the true class, gt boxes [M,4] xyxy) for the first n.

    The maps are cached as ``cache/NNNNN.npy`` chunks of 32 images (float16), so an interrupted
    run resumes and a run with a larger ``n`` only computes the missing chunks.
    """
    samples = list(CocoDataset(DATA))[:n]
    os.makedirs(cache, exist_ok=True)
    clf = None
    chunks = []
    for i in range(0, len(samples), 32):
        path = os.path.join(cache, f"{i:05d}.npy")
        batch = samples[i:i + 32]
        if not os.path.exists(path) or len(np.load(path, mmap_mode="r")) < len(batch):
            if clf is None:
                from wsloc.models import load_classifier

                clf = load_classifier("efficientnet_lite0", device="cpu")
            maps = gradient_maps(clf, [load_image(s.path) for s in batch], [int(s.label) for s in batch])
            np.save(path, maps.astype(np.float16))
        chunks.append(np.load(path)[: len(batch)])
    images = [load_image(s.path) for s in samples]
    return images, np.concatenate(chunks).astype(np.float32), [s.boxes for s in samples]


#: IoU rule of the accuracy, then the other one (printed for comparison).
CONVENTIONS = ("devkit", "continuous")


def evaluate(config: SegmentConfig, images, maps, gts) -> tuple[dict, float, dict]:
    """({convention: GT-known accuracy}, CPU seconds per map, flag counts) of one configuration.

    CPU time of this process (``time.process_time``, single-threaded numerics) rather than
    wall time: the tuning machine is shared, and CPU time is what a change costs.
    """
    hits, seconds, flags = dict.fromkeys(CONVENTIONS, 0), 0.0, {}
    for image, smap, gt in zip(images, maps, gts):
        t = time.process_time()
        (seg,) = segment(image, smap[None], config)
        seconds += time.process_time() - t
        for conv in CONVENTIONS:
            hits[conv] += bool((box_iou(seg.box[None], gt, conv) >= 0.5).any())
        if seg.flag:
            flags[seg.flag] = flags.get(seg.flag, 0) + 1
    return {c: h / len(images) for c, h in hits.items()}, seconds / len(images), flags


def parse_value(text: str):
    """A command-line value as ``wsloc localize --set`` reads it (JSON: 50, 0.5, true, null; else the
    text), with None / True / False also spelled as in Python."""
    from wsloc.config import parse_value as config_value

    return {"None": None, "none": None, "True": True, "False": False}.get(text, config_value(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="number of images (first n of the set)")
    ap.add_argument("--cache", default="/tmp/wsloc_tune/chunks", help="folder of cached maps")
    ap.add_argument("--set", action="append", default=[], metavar="OPTION=V1,V2",
                    help="sweep this option over these values (one option at a time); repeatable")
    ap.add_argument("--grid", default="", metavar="'A=1,2;B=x,y'", help="full grid over these options")
    ap.add_argument("--base", default="", metavar="'A=1;B=x'", help="change the defaults first")
    args = ap.parse_args()
    if not os.path.exists(DATA):
        print(f"skipped: {DATA} not found", file=sys.stderr)
        return 0
    torch.set_num_threads(1)
    images, maps, gts = load_data(args.n, args.cache)
    base = SegmentConfig()
    if args.base:
        base = base.with_(**{k: parse_value(v) for k, v in (item.split("=", 1) for item in args.base.split(";"))})
    print(f"{len(images)} images; base config: {base}")
    variants: list[dict] = [{}]
    if args.grid:
        options = [(k, [parse_value(v) for v in vs.split(",")])
                   for k, vs in (item.split("=", 1) for item in args.grid.split(";"))]
        variants += [dict(zip([k for k, _ in options], combo))
                     for combo in itertools.product(*[vs for _, vs in options])]
    else:
        sweep = ({k: [parse_value(v) for v in vs.split(",")] for k, vs in (s.split("=", 1) for s in args.set)}
                 if args.set else SWEEP)
        variants += [{k: v} for k, vs in sweep.items() for v in vs if getattr(base, k) != v]
    for change in variants:
        config = base.with_(**change)
        acc, sec, flags = evaluate(config, images, maps, gts)
        label = ", ".join(f"{k}={v}" for k, v in change.items()) or "defaults"
        print(f"{label:45s} GT-known acc {acc['devkit']:.4f} (continuous {acc['continuous']:.4f})  "
              f"{sec * 1e3:6.1f} ms/map (CPU)  flags {flags}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
