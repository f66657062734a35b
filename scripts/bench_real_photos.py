"""Localization on real photos (issue 12): configurations run as a user runs them, scored per size bucket.

For every set and every row, ``wsloc localize ANNOTATIONS --out DIR --set ...`` (the batch runner,
top-5 classes, no extra options but the row's ``--set`` assignments), then
:func:`wsloc.evaluate.run.evaluate_results` (devkit IoU >= 0.5) on all images and on the held-out
half (the odd dataset positions, the rule of ``scripts/reproduce.py``). Printed per set and row:
top-5 localization error, and GT-known accuracy (the box of the ground-truth class when it is among
the top-5 guesses, else a miss: ``wsloc evaluate``'s rule) overall and per bucket of the largest
ground-truth box's share of the image (small < 25 %, medium 25-50 %, large > 50 %), and the run's
images/s (from its summary; only meaningful when nothing else runs on the machine).

    python scripts/bench_real_photos.py --row "today:" \\
        --row "photo 640, geometric 3:1:saliency.scales=[1,2.857142857142857];saliency.resize_from=photo;saliency.fusion=geometric;saliency.weights=[3,1]"
    python scripts/bench_real_photos.py --sets fullres --limit 100 --row "today:"

A row is ``NAME:KEY=VALUE;KEY=VALUE`` (each assignment as ``wsloc localize --set`` reads it).
Run folders go under ``--runs`` (default /tmp/bench-real-photos); an existing run with a
``results.json`` is scored again without re-running (``--rerun`` to force).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"fullres": DATA / "imagenet-val-fullres-dev" / "annotations.json",
        "1300": DATA / "imagenet-val-1300" / "annotations.json",
        "coco": DATA / "coco2017-masks-dev" / "annotations.json"}  # COCO categories via their imagenet_classes


def parse_row(text: str) -> tuple[str, list[str]]:
    """``NAME:a=1;b=2`` -> (NAME, ["a=1", "b=2"])."""
    name, _, sets = text.partition(":")
    return name.strip(), [s.strip() for s in sets.split(";") if s.strip()]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-") or "row"


def run_row(ann: Path, out: Path, sets: list[str], limit: int | None, rerun: bool) -> float | None:
    """Run ``wsloc localize`` into ``out`` (unless done); its images/s from the run summary."""
    if rerun and out.exists():
        shutil.rmtree(out)
    if not (out / "results.json").exists():
        cmd = [sys.executable, "-m", "wsloc", "localize", str(ann), "--out", str(out), "--no-eval", "--quiet"]
        for s in sets:
            cmd += ["--set", s]
        if limit is not None:
            cmd += ["--limit", str(limit)]
        subprocess.run(cmd, check=True)
    summary = out / "summary.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        return data.get("images_per_second")
    return None


def figures(results: Path, ann: Path, n: int) -> dict:
    """{"all": ..., "held-out": ...}: top-5 loc error, GT-known overall and per bucket (fractions)."""
    from wsloc.evaluate.run import evaluate_results
    from wsloc.io import open_dataset

    ds = open_dataset(str(ann))
    every = json.loads(Path(results).read_text())
    out = {}
    for half, idx in (("all", range(n)), ("held-out", range(1, n, 2))):
        ids = {ds[i].image_id for i in idx}
        f = evaluate_results([r for r in every if r["image_id"] in ids], str(ann), coco=False, indices=list(idx))
        out[half] = {"top5_loc_error": f["top5_loc_error"], "gt_known": f["gt_known_loc_acc"],
                     "by_size": {k: {"n": v["n"], "gt_known": v["gt_known_loc_acc"],
                                     "top5_loc_error": v.get("top5_loc_error")} for k, v in f["by_size"].items()}}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="fullres,1300", help="comma-separated: fullres, 1300, coco")
    ap.add_argument("--row", action="append", default=[], metavar="NAME:KEY=VALUE;...",
                    help="a configuration (repeatable); 'today:' is the default preset")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--runs", default="/tmp/bench-real-photos", help="folder for the run folders")
    ap.add_argument("--rerun", action="store_true", help="run again even when a run folder has results")
    ap.add_argument("--json", default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    rows = [parse_row(r) for r in (args.row or ["today:"])]
    from wsloc.io import open_dataset

    everything: dict = {}
    for name in args.sets.split(","):
        ann = SETS[name]
        if not ann.exists():
            print(f"{name}: {ann} is absent: skipped")
            continue
        n = len(open_dataset(str(ann)))
        n = n if args.limit is None else min(n, args.limit)
        print(f"\n## {name} ({n} images); devkit IoU >= 0.5; GT-known: the ground-truth class's box when it is "
              "among the top 5, else a miss")
        print("| row | half | top-5 loc err | GT-known | small | medium | large | images/s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for row, sets in rows:
            out = Path(args.runs) / name / (slug(row) + (f"-{args.limit}" if args.limit else ""))
            speed = run_row(ann, out, sets, args.limit, args.rerun)
            fig = figures(out / "results.json", ann, n)
            everything.setdefault(name, {})[row] = {"sets": sets, "images_per_second": speed, **fig}
            for half in ("all", "held-out"):
                f = fig[half]
                b = [f["by_size"][k]["gt_known"] for k in f["by_size"]]
                cells = " | ".join(f"{100 * v:.1f} ({f['by_size'][k]['n']})" if v is not None else "-"
                                   for v, k in zip(b, f["by_size"]))
                sp = f"{speed:.2f}" if speed and half == "all" else ""
                print(f"| {row} | {half} | {100 * f['top5_loc_error']:.2f} | {100 * f['gt_known']:.1f} | {cells} | "
                      f"{sp} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
