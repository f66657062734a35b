"""Throughput of ``wsloc localize`` on ../shared/data/imagenet-val-1300: runner, serial loop and CPU-time bound.

For each ``--preset`` (default: the default preset; ``--preset all``: both), in one run:

* **CPU-time bound**: the CPU seconds one image needs, measured on ``--calib-images`` images
  (after a warm-up): the network on one torch thread (``time.process_time`` of this process),
  the segmentation on one thread, decoding + preprocessing; the bound is ``cpus`` divided by
  their sum (images/s no schedule can beat without doing less work).
* **runner**: :func:`wsloc.run.run_dataset`, the ``wsloc localize`` path, with the worker plan
  of :mod:`wsloc.run.policy` (or ``--threads`` / ``--segment-workers`` / ``--workers``): images/s,
  the stage split, peak RSS and its growth from the 200th image to the end.
* **serial loop**: ``Localizer.localize`` on batches of decoded images, all torch threads, in
  one process (decoding included), on ``--serial-images`` images (default: the same ones).

It prints runner / serial and runner / bound. ``--device cuda`` runs the network on the GPU
(a clear one-line error where there is none); ``--amp bf16|fp16`` runs it under autocast.
``--peer`` adds issue 6's comparison against a per-class forward + backward + ``cv2.grabCut``
peer (the paper's preset), timed half before and half after the wsloc run.

    nice -n 5 python scripts/benchmark.py --json bench.json          # all 1,298 images, default preset
    python scripts/benchmark.py --preset all --limit 160             # both presets, first 160 images
    python scripts/benchmark.py --limit 32                           # a quick check that it works
    python scripts/benchmark.py --device cuda --limit 1298           # on a GPU machine
    python scripts/benchmark.py --engine onnx                        # the network in ONNX Runtime
    python scripts/benchmark.py --preset simonyan2014 --peer         # issue 6's peer comparison
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


# --------------------------------------------------------------------------- measurements

def cpu_costs(loc, ds, indices, preprocess) -> dict:
    """CPU seconds per image of each stage on ``indices`` (network on one thread, after a warm-up)."""
    from wsloc.io import load_image
    from wsloc.localization import localize_maps, single_threaded

    c0 = time.process_time()
    images = [load_image(ds[i].path) for i in indices]
    x = preprocess.batch(images)
    decode = (time.process_time() - c0) / len(images)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loc.network(x[:1])  # warm-up
        bs = loc.config.batch_size
        outs = []
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(0, len(images), bs):
            outs.append(loc.network(x[i:i + bs]))
        network, network_wall = (time.process_time() - c0) / len(images), (time.perf_counter() - t0) / len(images)
    finally:
        torch.set_num_threads(before)
    with single_threaded():
        c0 = time.process_time()
        k = 0
        for out in outs:
            for j in range(out.maps.shape[0]):
                localize_maps(images[k], out.maps[j], out.classes[j], out.logits[j], out.probs[j],
                              loc.segment_config, keep_maps=False)
                k += 1
        segment = (time.process_time() - c0) / len(images)
    if loc.classifier.device.type == "cuda":
        network = network_wall  # device time per image as the host sees it
    return {"network_1_thread": network, "network_1_thread_wall": network_wall, "segment": segment,
            "decode": decode, "images": len(images)}


def serial_loop(loc, ds, indices, threads: int) -> tuple[float, int]:
    """(seconds, images) of Localizer.localize over ``indices`` in batches, decoding included, ``threads`` threads."""
    from wsloc.io import load_image

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loc.localize([load_image(ds[indices[0]].path)])  # warm-up
        bs = loc.config.batch_size
        t0 = time.perf_counter()
        for i in range(0, len(indices), bs):
            loc.localize([load_image(ds[j].path) for j in indices[i:i + bs]], keep_maps=False)
        return time.perf_counter() - t0, len(indices)
    finally:
        torch.set_num_threads(before)


def growth(samples, column: int, start: int = 200) -> tuple[float, int | None]:
    """Highest level after image ``start`` minus the level there (MB), and the first sample's image count."""
    after = [s for s in samples if s[0] >= start]
    if len(after) < 2:
        return float("nan"), None
    return max(s[column] for s in after) - after[0][column], after[0][0]


def bench_preset(name: str, args, ds, ann, cpus: int) -> dict:
    from wsloc.localizer import Localizer
    from wsloc.run import RunOptions, run_dataset
    from wsloc.run.runner import describe_dataset

    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    if args.amp:
        overrides["amp"] = args.amp
    if args.engine:
        overrides["engine"] = args.engine
    loc = Localizer(preset=name, device=args.device, **overrides)
    print(f"\n== preset {name}: {n} images; {cpus} CPUs; device {loc.classifier.device}; torch {torch.__version__}")
    costs = cpu_costs(loc, ds, list(range(min(args.calib_images, n))), loc.preprocess)
    need = costs["network_1_thread"] + costs["segment"] + costs["decode"]
    bound = cpus / need
    print(f"CPU seconds per image ({costs['images']} images): network on 1 thread {costs['network_1_thread']:.4f}, "
          f"segmentation {costs['segment']:.4f}, decoding {costs['decode']:.4f} -> CPU-time bound "
          f"{cpus} / {need:.4f} = {bound:.2f} images/s")
    out = args.out + "-" + name if args.out else tempfile.mkdtemp(prefix=f"wsloc-bench-{name}-")
    opts = RunOptions(out_dir=out, overwrite=True, limit=n, threads=args.threads, workers=args.workers, lanes=args.lanes,
                      segment_workers=args.segment_workers, progress=not args.quiet,
                      release_memory=args.release_memory)
    summary = run_dataset(loc, ds, opts, describe_dataset(ds, ann))
    ips = summary["images_per_second"]
    wall = summary["wall_seconds"]
    stages = summary["stage_seconds"]
    m = min(n, args.serial_images or n)
    s_sec, s_n = serial_loop(loc, ds, list(range(m)), cpus if args.device == "cpu" or not args.device.startswith(
        "cuda") else 1)
    serial = s_n / s_sec
    plan = summary["workers"].get("plan") or {}
    print(f"runner      : {ips:.3f} images/s ({summary['processed']} images, {wall:.1f} s; workers: decode "
          f"{summary['workers']['decode']}, segment {summary['workers']['segment']}, torch threads "
          f"{summary['workers']['torch_threads']}, lanes {summary['workers']['lanes']}; plan: {plan.get('why', '-')})")
    print(f"serial loop : {serial:.3f} images/s ({s_n} images, {s_sec:.1f} s, {cpus} torch threads)")
    print(f"CPU bound   : {bound:.3f} images/s")
    print(f"ratios      : runner / serial {ips / serial:.3f}; runner / bound {ips / bound:.3f} (targets >= 1, >= 0.85)")
    print(f"{'stage':<16s}{'seconds':>10s}{'% of wall':>11s}{'ms/image':>10s}")
    for k, v in stages.items():
        print(f"{k:<16s}{v:10.2f}{100 * v / wall:10.1f}%{1000 * v / max(1, summary['processed']):10.1f}")
    mem = summary["memory_mb"]
    g_main, at = growth(mem["samples"], 1)
    g_tree, _ = growth(mem["samples"], 3)
    print(f"memory: peak RSS main {mem['peak_main']:.0f} MB, all processes {mem['peak_tree_rss']:.0f} MB; growth "
          f"from image {at if at is not None else '-'} to the end: main {g_main:+.1f} MB, all processes "
          f"{g_tree:+.1f} MB (target < 100 MB)")
    return {"preset": name, "images": summary["processed"], "runner_images_per_second": ips,
            "serial_images_per_second": serial, "serial_images": s_n, "cpu_bound_images_per_second": bound,
            "runner_over_serial": ips / serial, "runner_over_bound": ips / bound, "cpu_costs": costs,
            "stage_seconds": stages, "wall_seconds": wall, "workers": summary["workers"], "memory_mb": mem,
            "growth_main_mb": g_main, "growth_tree_mb": g_tree, "cpus": cpus, "device": str(loc.classifier.device),
            "amp": args.amp, "engine": loc.config.engine}


def bench_peer(args, ds, ann, cpus: int) -> dict:
    """Issue 6's comparison: the simonyan2014 runner against the per-class peer."""
    from wsloc.localizer import Localizer
    from wsloc.run import RunOptions, run_dataset
    from wsloc.run.runner import describe_dataset

    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    loc = Localizer(preset="simonyan2014", device="cpu",
                    **({} if args.batch_size is None else {"batch_size": args.batch_size}))
    peer_paths = [ds[i].path for i in range(min(args.peer_images, len(ds)))]
    half = len(peer_paths) // 2
    s1, n1 = run_peer(loc.classifier, peer_paths[:half], args.peer_threads)
    out = tempfile.mkdtemp(prefix="wsloc-bench-peer-")
    summary = run_dataset(loc, ds, RunOptions(out_dir=out, overwrite=True, limit=n, progress=not args.quiet,
                                              threads=args.threads, segment_workers=args.segment_workers),
                          describe_dataset(ds, ann))
    s2, n2 = run_peer(loc.classifier, peer_paths[half:], args.peer_threads)
    peer_ips = (n1 + n2) / (s1 + s2)
    ips = summary["images_per_second"]
    print(f"\n== peer comparison (simonyan2014): wsloc {ips:.3f} images/s, peer {peer_ips:.3f} images/s "
          f"({n1 + n2} images, {args.peer_threads} threads; halves {n1 / s1:.3f}, {n2 / s2:.3f}): "
          f"{ips / peer_ips:.2f}x (target >= 3)")
    return {"wsloc_images_per_second": ips, "peer_images_per_second": peer_ips, "ratio": ips / peer_ips}


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    from wsloc.presets import DEFAULT_PRESET, PRESETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="COCO annotations folder (default: %(default)s)")
    ap.add_argument("--preset", action="append", choices=[*sorted(PRESETS), "all"],
                    help=f"preset to measure (repeatable; 'all': every preset; default: {DEFAULT_PRESET})")
    ap.add_argument("--limit", type=int, help="the first N images (default: all)")
    ap.add_argument("--serial-images", type=int, help="images of the serial loop (default: as many as the runner)")
    ap.add_argument("--calib-images", type=int, default=24, help="images timed for the CPU-time bound (default: 24)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    ap.add_argument("--amp", choices=["bf16", "fp16"], help="run the network under autocast (LocalizerConfig.amp)")
    ap.add_argument("--engine", choices=["eager", "onnx"], help="LocalizerConfig.engine (default: eager)")
    ap.add_argument("--batch-size", type=int, help="network batch (default: LocalizerConfig's)")
    ap.add_argument("--threads", type=int, help="runner's torch threads (default: the worker plan)")
    ap.add_argument("--segment-workers", type=int, help="runner's segmentation processes (default: the worker plan)")
    ap.add_argument("--lanes", type=int, help="runner's network lanes (default: the worker plan)")
    ap.add_argument("--workers", type=int, help="runner's decoding processes (default: the worker plan)")
    ap.add_argument("--out", help="keep the runner's folders as OUT-<preset> (default: temporary folders)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--peer", action="store_true", help="also issue 6's comparison against the per-class peer")
    ap.add_argument("--peer-images", type=int, default=40, help="images timed for the peer (default: %(default)s)")
    ap.add_argument("--peer-threads", type=int, default=1)
    ap.add_argument("--no-release-memory", dest="release_memory", action="store_false",
                    help="do not malloc_trim after each batch (to see what it prevents)")
    args = ap.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"benchmark.py: error: --device {args.device}: no CUDA device here (torch.cuda.is_available() is "
              f"False; torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
        return 2
    ann = os.path.join(args.data, "annotations.json")
    if not os.path.exists(ann):
        print(f"skipped: {ann} not found")
        return 0
    from wsloc.io import CocoDataset
    from wsloc.run.runner import cpu_count

    ds = CocoDataset(ann)
    cpus = cpu_count()
    names = args.preset or [DEFAULT_PRESET]
    if "all" in names:
        names = [DEFAULT_PRESET] + sorted(p for p in PRESETS if p != DEFAULT_PRESET)
    figures = {"presets": [bench_preset(name, args, ds, ann, cpus) for name in names]}
    if args.peer:
        figures["peer"] = bench_peer(args, ds, ann, cpus)
    print()
    for f in figures["presets"]:
        print(f"{f['preset']:<18s} runner {f['runner_images_per_second']:.2f}  serial "
              f"{f['serial_images_per_second']:.2f}  bound {f['cpu_bound_images_per_second']:.2f} images/s  "
              f"runner/serial {f['runner_over_serial']:.2f}  runner/bound {f['runner_over_bound']:.2f}  "
              f"RSS growth {f['growth_tree_mb']:+.1f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
