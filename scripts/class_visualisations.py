"""Class model visualisations (Simonyan et al. 2014, sec. 2) of a few ImageNet classes for Lite0.

Writes docs/class_vis/<index>_<name>.png per class, docs/class_vis/grid.png (all classes,
paper's plain method in the first row, with jitter + blur + clipping in the second) and prints
each class's score of the zero image and of the optimised image.

    python scripts/class_visualisations.py                     # the default classes, CPU
    python scripts/class_visualisations.py --classes 1 130 --steps 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from wsloc import viz
from wsloc.models import load_classifier
from wsloc.visualize_class import visualize_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# goldfish, ostrich, flamingo, dalmatian, bell pepper, banana (ostrich, dalmatian and bell pepper
# are in Simonyan et al.'s figure 1)
DEFAULT_CLASSES = [1, 9, 130, 251, 945, 954]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, nargs="+", default=DEFAULT_CLASSES)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--step-size", type=float, default=0.05)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--jitter", type=int, default=8)
    ap.add_argument("--blur-sigma", type=float, default=1.0)
    ap.add_argument("--blur-every", type=int, default=4)
    ap.add_argument("--paper-step-size", type=float, default=1000.0,
                    help="plain ascent step (raw gradients are ~1e-5 per input value at the zero image)")
    ap.add_argument("--paper-l2", type=float, default=1e-5, help="plain ascent lambda (stable for 2*eta*lambda < 2)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "class_vis"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clf = load_classifier(args.model, device=args.device)
    names = clf.class_names
    rows = {}
    for label, kw in (("paper: plain ascent", dict(normalize_grad=False, clip=False, step_size=args.paper_step_size,
                                                   l2=args.paper_l2)),
                      ("jitter + blur + clip", dict(jitter=args.jitter, blur_sigma=args.blur_sigma, l2=args.l2,
                                                    blur_every=args.blur_every, step_size=args.step_size))):
        start = time.perf_counter()
        rows[label] = visualize_class(clf, args.classes, steps=args.steps, seed=0, **kw)
        print(f"{label}: {len(args.classes)} classes x {args.steps} steps in {time.perf_counter() - start:.0f} s "
              f"on {clf.device}", file=sys.stderr)
    print("| class | variant | score of the zero image | score after ascent | top-1 of the result |")
    print("|---|---|---:|---:|---|")
    for label, results in rows.items():
        with torch.no_grad():
            top = clf(torch.stack([r.x for r in results]).to(clf.device)).argmax(1).tolist()
        for r, t in zip(results, top):
            print(f"| {r.class_index} {names[r.class_index]} | {label} | {r.zero_score:.2f} | {r.score:.2f} | "
                  f"{names[t]} |")
    for r in rows["jitter + blur + clip"]:
        viz.save_png(os.path.join(args.out, f"{r.class_index}_{names[r.class_index].replace(' ', '_')}.png"), r.image)
    grid = viz.grid([[r.image for r in res] for res in rows.values()], row_titles=list(rows),
                    col_titles=[names[c] for c in args.classes], cell=(160, 160))
    viz.save_png(os.path.join(args.out, "grid.png"), grid)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
