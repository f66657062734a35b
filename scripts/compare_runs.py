"""Compare the results of two ``wsloc localize`` run folders (or two results.json files).

    python scripts/compare_runs.py RUN_A RUN_B [--show 20] [--json OUT]

Prints whether ``results.json`` is byte-identical; if not, per (image, rank) entry: how many
differ in class, box, mask (RLE) or score, the largest box change (pixels and IoU between the
two boxes, :func:`wsloc.evaluate.iou.box_iou`), mask pixels that differ, and the first
``--show`` differing entries. When both folders hold ``metrics.json``, the ILSVRC errors of
both are printed side by side. Exit status: 0 when the results are identical, 1 when they
differ, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def _results_path(path: str) -> str:
    p = os.path.join(path, "results.json") if os.path.isdir(path) else path
    if not os.path.isfile(p):
        raise SystemExit(f"compare_runs: error: {path}: no results.json (is it a finished run folder?)")
    return p


def _load(path: str) -> tuple[bytes, dict]:
    raw = open(path, "rb").read()
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"compare_runs: error: {path}: not JSON ({exc})") from None
    if not isinstance(entries, list):
        raise SystemExit(f"compare_runs: error: {path}: expected a list of COCO results")
    by_key = {}
    for e in entries:
        # (image, rank); results without ranks: (image, -1 - class)
        by_key[(int(e["image_id"]), int(e["rank"]) if "rank" in e else -1 - int(e["category_id"]))] = e
    return raw, by_key


def _xyxy(bbox) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h])


def compare(path_a: str, path_b: str, show: int = 20) -> dict:
    """Differences between two results files (see the module docstring) as a dict."""
    from wsloc.boxes import rle_to_mask
    from wsloc.evaluate.iou import box_iou

    raw_a, a = _load(path_a)
    raw_b, b = _load(path_b)
    out: dict = {"a": path_a, "b": path_b, "identical_bytes": raw_a == raw_b, "entries_a": len(a),
                 "entries_b": len(b)}
    keys = sorted(set(a) | set(b))
    only_a = [k for k in keys if k not in b]
    only_b = [k for k in keys if k not in a]
    diff = {"class": 0, "box": 0, "mask": 0, "score": 0}
    images = set()
    worst_px, worst_iou, mask_px = 0.0, 1.0, 0
    shown = []
    for k in keys:
        if k not in a or k not in b:
            continue
        ea, eb = a[k], b[k]
        what = []
        if ea["category_id"] != eb["category_id"]:
            diff["class"] += 1
            what.append(f"class {ea['category_id']} -> {eb['category_id']}")
        if ea["bbox"] != eb["bbox"]:
            diff["box"] += 1
            ba, bb = _xyxy(ea["bbox"]), _xyxy(eb["bbox"])
            px = float(np.abs(ba - bb).max())
            iou = float(box_iou(ba, bb, convention="continuous")[0, 0])
            worst_px, worst_iou = max(worst_px, px), min(worst_iou, iou)
            what.append(f"box {ea['bbox']} -> {eb['bbox']} (max {px:.1f} px, IoU {iou:.3f})")
        if ea.get("segmentation") != eb.get("segmentation") and "segmentation" in ea and "segmentation" in eb:
            diff["mask"] += 1
            ma, mb = rle_to_mask(ea["segmentation"]), rle_to_mask(eb["segmentation"])
            n = int((ma != mb).sum()) if ma.shape == mb.shape else int(max(ma.size, mb.size))
            mask_px += n
            what.append(f"mask: {n} pixels differ")
        if ea.get("score") != eb.get("score"):
            diff["score"] += 1
            what.append(f"score {ea.get('score')} -> {eb.get('score')}")
        if what:
            images.add(k[0])
            if len(shown) < show:
                shown.append(f"image {k[0]} rank {k[1]}: " + "; ".join(what))
    out.update(differing=diff, differing_images=len(images), only_in_a=len(only_a), only_in_b=len(only_b),
               largest_box_change_px=worst_px, smallest_box_iou=worst_iou if diff["box"] else None,
               differing_mask_pixels=mask_px, examples=shown)
    out["identical"] = out["identical_bytes"] or (not any(diff.values()) and not only_a and not only_b)
    return out


def _metrics(path: str) -> dict | None:
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    p = os.path.join(folder, "metrics.json")
    if not os.path.isfile(p):
        return None
    with open(p) as f:
        return json.load(f)


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and "error" in f"{prefix}{k}":
            yield f"{prefix}{k}", v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--show", type=int, default=20, help="differing entries to list (default 20)")
    p.add_argument("--json", metavar="OUT", help="also write the comparison as JSON")
    args = p.parse_args(argv)
    res = compare(_results_path(args.run_a), _results_path(args.run_b), args.show)
    if res["identical_bytes"]:
        print(f"results.json byte-identical ({res['entries_a']} entries)")
    else:
        d = res["differing"]
        print(f"results.json differ: {res['entries_a']} vs {res['entries_b']} entries; "
              f"{res['differing_images']} images with a difference; entries differing in class {d['class']}, "
              f"box {d['box']}, mask {d['mask']} ({res['differing_mask_pixels']} pixels), score {d['score']}; "
              f"only in A {res['only_in_a']}, only in B {res['only_in_b']}")
        if d["box"]:
            print(f"largest box change {res['largest_box_change_px']:.1f} px, smallest IoU between the two boxes "
                  f"{res['smallest_box_iou']:.3f}")
        for line in res["examples"]:
            print("  " + line)
    ma, mb = _metrics(args.run_a), _metrics(args.run_b)
    if ma is not None and mb is not None:
        fa, fb = dict(_flat(ma)), dict(_flat(mb))
        for k in sorted(set(fa) & set(fb)):
            mark = "" if fa[k] == fb[k] else "   <- differs"
            print(f"{k:<48s} {fa[k]!s:>12} {fb[k]!s:>12}{mark}")
        res["metrics_equal"] = all(fa[k] == fb[k] for k in set(fa) & set(fb))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if res["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
