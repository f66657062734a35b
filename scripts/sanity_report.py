"""The sanity-check section of BENCHMARKS.md (Adebayo et al. 2018, "Sanity checks for saliency maps").

1. Cascading model-parameter randomization of EfficientNet-Lite0 (offline weights) on the first
   N images of ../shared/data/imagenet-val-1300, for gradient, guided backprop, Grad-CAM and
   integrated gradients: similarity of each randomized model's maps to the original maps
   (Spearman of absolute and signed maps, SSIM, HOG) and GT-known box accuracy per step.
2. The data-randomization test on synthetic shapes with a tiny CNN trained here (true vs
   permuted labels, plus a second true-label model as the control).

Writes docs/sanity/{sanity.json, sanity.csv, curves.png, maps_<i>.png, data_randomization.json,
generated.md} and prints generated.md (the tables to paste; docs/sanity/SECTION.md is that text
plus the written reading of the results).

    nice -n 10 python scripts/sanity_report.py                 # 20 images, all four methods (CPU: long)
    python scripts/sanity_report.py --limit 4 --no-data         # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from wsloc.models import load_classifier
from wsloc.sanity import check, report
from wsloc.sanity.data_randomization import data_randomization_test

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "imagenet-val-1300", "annotations.json"))
METHODS = ["gradient", "guided_backprop", "grad_cam", "integrated_gradients"]
SHOWN = ["original", "_fc", "head", "_blocks.15", "_blocks.13", "_blocks.10", "_blocks.7", "_blocks.4",
         "_blocks.1", "stem"]


def _method_options(pairs: list[str]) -> dict[str, dict]:
    """``METHOD:KEY=VALUE`` -> {method: {key: value}} (value parsed as JSON when it can be)."""
    out: dict[str, dict] = {}
    for pair in pairs:
        method, _, kv = pair.partition(":")
        key, _, value = kv.partition("=")
        try:
            out.setdefault(method, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            out.setdefault(method, {})[key] = value
    return out


def _save_small(path: str, image: np.ndarray) -> None:
    """PNG with a 128-colour palette (no dithering): the noisy JET map grids shrink about 3x for the docs."""
    from PIL import Image

    Image.fromarray(image).quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                                    dither=Image.Dither.NONE).save(path, optimize=True)


def _whole_image_acc(batch) -> float:
    """GT-known accuracy of the box covering the whole image (a model-free baseline)."""
    from wsloc.sanity.check import LOC_CONVENTION
    from wsloc.evaluate.iou import box_iou

    hits = [box_iou(np.array([[0, 0, w, h]], float), b, LOC_CONVENTION).max() >= 0.5 for (h, w), b in zip(batch.sizes, batch.gt_boxes)]
    return float(np.mean(hits))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", default=DATA)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--option", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="attribute() option for one method, e.g. integrated_gradients:steps=32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    ap.add_argument("--no-data", action="store_true", help="skip the data-randomization test")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "sanity"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not os.path.exists(args.annotations):
        print(f"skipped: {args.annotations} not found", file=sys.stderr)
        return 0
    os.makedirs(args.out, exist_ok=True)
    per_method = _method_options(args.option)
    clf = load_classifier("efficientnet_lite0", device=args.device)
    batch = check.load_batch(clf, args.annotations, args.limit)
    results, seconds = [], {}
    for method in args.methods:
        start = time.perf_counter()
        results.append(check.sanity_check(
            clf, batch.x, method, targets=batch.targets, gt_boxes=batch.gt_boxes, image_sizes=batch.sizes,
            seed=args.seed, options=per_method.get(method, {}), keep_maps=3,
            log=lambda s: print(s, file=sys.stderr, flush=True)))
        seconds[method] = time.perf_counter() - start
    rows = report.table_rows(results)
    report.write_table(rows, os.path.join(args.out, "sanity.json"), os.path.join(args.out, "sanity.csv"))
    report.plot_curves(results, os.path.join(args.out, "curves.png"),
                       title=f"Lite0, cascading randomization, {len(batch.x)} imagenet-val-1300 images")
    for i in range(min(2, len(batch.images))):
        _save_small(os.path.join(args.out, f"maps_{i}.png"), report.map_grid(results, i, image=batch.images[i]))
    shown = [s for s in SHOWN if s in results[0].steps]
    cmd = "nice -n 10 python scripts/sanity_report.py" + (f" --limit {args.limit}" if args.limit != 20 else "")
    cmd += "".join(f" --option {o}" for o in args.option)
    lines = ["## Sanity checks for saliency maps (Adebayo et al. 2018)", "",
             f"Command: `{cmd}` (also `wsloc sanity --method M DATASET --limit N --out DIR`). "
             f"EfficientNet-Lite0 (offline weights), the first {len(batch.x)} images of imagenet-val-1300, "
             f"maps for the ground-truth class, cascading randomization from the logits down "
             f"(seed {args.seed}); {clf.device}, "
             + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()) + ".", "",
             "Mean Spearman rank correlation of the absolute maps with the original model's maps "
             "(all steps and all metrics in `docs/sanity/sanity.csv`):", "",
             report.markdown_table(results, "spearman_abs", shown), "",
             "Spearman of the signed maps:", "", report.markdown_table(results, "spearman", shown), "",
             "SSIM:", "", report.markdown_table(results, "ssim", shown), "",
             "HOG correlation:", "", report.markdown_table(results, "hog", shown), "",
             "GT-known box accuracy (box of the largest component of the smoothed map at 20% of its "
             f"maximum, IoU >= 0.5 in the devkit convention of `wsloc evaluate`; the whole-image box alone "
             f"scores {_whole_image_acc(batch):.2f} on these "
             "images):", "", report.markdown_table(results, "loc_acc", shown), "",
             *(["Fraction of maps that are constant (no ranking; see the similarity module's rule):", "",
                report.markdown_table(results, "const_frac", shown), ""]
               if any(r.constant is not None and r.constant.any() for r in results) else []),
             "![similarity curves](docs/sanity/curves.png)", "",
             "![maps per randomization step](docs/sanity/maps_0.png)", ""]
    if not args.no_data:
        start = time.perf_counter()
        out = data_randomization_test(args.methods, seed=args.seed, method_options=per_method)
        with open(os.path.join(args.out, "data_randomization.json"), "w") as f:
            json.dump(out, f, indent=1)
        s = out["setup"]
        lines += ["### Data randomization", "",
                  f"{s['n_train']} training and {s['n_test']} test images of {s['size']}x{s['size']} "
                  f"synthetic shapes ({', '.join(s['classes'])}; class = shape), a tiny CNN "
                  f"(width {s['width']}) trained {s['steps']} Adam steps on the true labels, again with "
                  f"another seed (control), and on permuted labels; maps of the test images for their true "
                  f"class; pointing = fraction of maps whose maximum's pixel centre lies in the shape's box "
                  f"(`wsloc.evaluate.pointing_game`, tolerance 0) "
                  f"({time.perf_counter() - start:.0f} s):", "", report.data_randomization_markdown(out), ""]
    text = "\n".join(lines)
    with open(os.path.join(args.out, "generated.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
