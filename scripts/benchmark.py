"""Throughput of the localizer on ../shared/data/imagenet-val-1300 against a straightforward peer.

Both run the paper's pipeline (Simonyan et al. 2014): gradient saliency maps of the top-5
classes of EfficientNet-Lite0, a colour-model graph cut per map seeded by its percentiles,
the box of the largest connected component. Same process, same run, same images, same model
weights, same decoding and preprocessing; model loading is excluded from both.

* wsloc: ``wsloc.run.run_dataset`` with the ``simonyan2014`` preset: one forward pass per
  batch shared by the 5 classes' backward passes, frozen parameters (input gradients only),
  BatchNorm folded into the convolutions, channels-last memory format; decoding in a
  DataLoader worker; GMM colour models + PyMaxflow GraphCut (at most 128 px a side) in a
  process pool overlapping the next batch's network.
* peer: what one writes first: per image and per class, a forward and a backward pass of
  one image (trainable parameters, default memory format), ``max_c |grad|``, then
  ``cv2.grabCut`` (3 iterations, mask init: > 95th percentile definite foreground,
  < 30th definite background, the rest probable background) at the image's resolution.
  It is timed on ``--peer-images`` images, half before and half after the wsloc run (the
  machine is shared: load drifts), with ``--peer-threads`` torch threads (1 by default:
  measured faster than 2 on this shared 2-core machine).

Prints images/s of both and their ratio, wsloc's stage breakdown (seconds summed over the
processes that did the work, and as a share of the wall time), and memory: the main
process's peak RSS and the PSS of the whole process tree, sampled every 2 s, with its growth
from the 200th image to the end.

    nice -n 10 python scripts/benchmark.py                 # all 1,298 images (about 15 min on 2 cores)
    nice -n 10 python scripts/benchmark.py --limit 300     # quicker look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "imagenet-val-1300"


# --------------------------------------------------------------------------- the peer

def peer_image(model, preprocess, image: np.ndarray, k: int = 5) -> list[tuple[int, list[int]]]:
    """The straightforward pipeline on one image: [(class, [x0, y0, x1, y1])] for its top-k."""
    x = preprocess(image)[None]
    with torch.no_grad():
        classes = model(x)[0].topk(k).indices.tolist()
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    h, w = image.shape[:2]
    out = []
    for c in classes:
        xi = x.clone().requires_grad_(True)
        model.zero_grad()
        model(xi)[0, c].backward()
        sal = xi.grad[0].abs().amax(0).numpy()
        sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
        hi, lo = np.percentile(sal, 95), np.percentile(sal, 30)
        mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        mask[sal > hi] = cv2.GC_FGD
        mask[sal < lo] = cv2.GC_BGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(bgr, mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            pass
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n > 1:
            j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            x0, y0, bw, bh = (int(v) for v in stats[j, :4])
            out.append((c, [x0, y0, x0 + bw, y0 + bh]))
        else:
            out.append((c, [0, 0, w, h]))
    return out


def run_peer(clf, paths: list[str], threads: int) -> tuple[float, int]:
    """(seconds, images) of the peer on ``paths``."""
    from wsloc.io import load_image

    model = copy.deepcopy(clf.model).to(memory_format=torch.contiguous_format).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    torch.set_num_threads(threads)
    peer_image(model, clf.preprocess, load_image(paths[0]))  # warm-up, not timed
    t0 = time.perf_counter()
    for p in paths:
        peer_image(model, clf.preprocess, load_image(p))
    return time.perf_counter() - t0, len(paths)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="COCO annotations folder (default: %(default)s)")
    ap.add_argument("--limit", type=int, help="wsloc on the first N images (default: all)")
    ap.add_argument("--peer-images", type=int, default=40, help="images timed for the peer (default: %(default)s)")
    ap.add_argument("--peer-threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, help="network batch (default: LocalizerConfig's)")
    ap.add_argument("--threads", type=int, help="wsloc network threads (default: from the machine)")
    ap.add_argument("--segment-workers", type=int, help="wsloc segmentation processes (default: from the machine)")
    ap.add_argument("--out", help="keep the wsloc run folder here (default: a temporary folder)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    ap.add_argument("--no-release-memory", dest="release_memory", action="store_false",
                    help="do not malloc_trim after each batch (to see what it prevents)")
    args = ap.parse_args(argv)

    ann = os.path.join(args.data, "annotations.json")
    if not os.path.exists(ann):
        print(f"skipped: {ann} not found")
        return 0
    from wsloc.io import CocoDataset
    from wsloc.localizer import Localizer
    from wsloc.run import RunOptions, run_dataset
    from wsloc.run.runner import cpu_count, describe_dataset

    ds = CocoDataset(ann)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    loc = Localizer(preset="simonyan2014", device="cpu",
                    **({} if args.batch_size is None else {"batch_size": args.batch_size}))
    print(f"{n} images of {args.data}; {cpu_count()} CPUs; torch {torch.__version__}; "
          f"BatchNorm layers folded: {loc.folded}")

    peer_paths = [ds[i].path for i in range(min(args.peer_images, len(ds)))]
    half = len(peer_paths) // 2
    s1, n1 = run_peer(loc.classifier, peer_paths[:half], args.peer_threads)
    print(f"peer (first half): {n1 / s1:.3f} images/s")

    out = args.out or tempfile.mkdtemp(prefix="wsloc-bench-")
    opts = RunOptions(out_dir=out, overwrite=True, limit=n, threads=args.threads,
                      segment_workers=args.segment_workers, progress=True, release_memory=args.release_memory)
    summary = run_dataset(loc, ds, opts, describe_dataset(ds, ann))

    s2, n2 = run_peer(loc.classifier, peer_paths[half:], args.peer_threads)
    peer_ips = (n1 + n2) / (s1 + s2)
    ips = summary["images_per_second"]
    wall = summary["wall_seconds"]
    stages = summary["stage_seconds"]
    seg = sum(stages.get(k, 0.0) for k in ("colour_models", "graph_cut", "boxes"))
    print()
    print(f"peer  : {peer_ips:.3f} images/s ({n1 + n2} images, torch threads {args.peer_threads}; "
          f"halves {n1 / s1:.3f} and {n2 / s2:.3f})")
    print(f"wsloc : {ips:.3f} images/s ({summary['processed']} images in {wall:.1f} s; workers "
          f"{summary['workers']})")
    print(f"ratio : {ips / peer_ips:.2f}x  (target >= 3)")
    print()
    print(f"{'stage':<16s}{'seconds':>10s}{'% of wall':>11s}{'ms/image':>10s}")
    for k, v in stages.items():
        print(f"{k:<16s}{v:10.2f}{100 * v / wall:10.1f}%{1000 * v / max(1, summary['processed']):10.1f}")
    print(f"colour models + graph cut + boxes: {100 * seg / wall:.1f}% of the wall time (target < 25%; "
          "wall-clock seconds inside the segmentation process)")
    print(f"segmentation CPU time (all four stages, process_time): {100 * stages['segment_cpu'] / wall:.1f}% "
          "of the wall time")
    print(f"network: {100 * stages['network'] / wall:.1f}% of the wall time")
    mem = summary["memory_mb"]
    samples = mem["samples"]
    after = [s for s in samples if s[0] >= 200]  # growth: the highest level after image 200 minus the level there
    growth_main = max(s[1] for s in after) - after[0][1] if len(after) > 1 else float("nan")
    growth_tree = max(s[3] for s in after) - after[0][3] if len(after) > 1 else float("nan")
    print(f"memory: peak RSS of the main process {mem['peak_main']:.0f} MB; peak PSS of all processes "
          f"{mem['peak_tree']:.0f} MB (RSS summed: {mem['peak_tree_rss']:.0f} MB); growth from image "
          f"{after[0][0] if after else '-'} to {after[-1][0] if after else '-'} (highest level minus the level "
          f"at the start): main RSS {growth_main:+.1f} MB, all processes' RSS {growth_tree:+.1f} MB "
          "(target < 100 MB)")
    figures = {"images": summary["processed"], "wsloc_images_per_second": ips, "peer_images_per_second": peer_ips,
               "ratio": ips / peer_ips, "segmentation_fraction_of_wall": seg / wall,
               "segmentation_cpu_fraction_of_wall": stages["segment_cpu"] / wall, "stage_seconds": stages,
               "wall_seconds": wall, "memory_mb": mem, "growth_main_mb": growth_main,
               "growth_tree_mb": growth_tree, "workers": summary["workers"], "cpus": cpu_count()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
