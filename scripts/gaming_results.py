"""Two results files for one classifier: honest whole-image boxes, and a file that games top-5.

* ``honest.json``: per image the classifier's top-5 classes, each with the whole-image box
  (ranks 1..5).
* ``gaming.json``: per image the top-1 class five times, with five nested centred boxes
  (100 %, 85 %, 70 %, 55 % and 40 % of the image's sides), ranks 1..5: five tries at the box.

``wsloc evaluate`` counts each class once per image (its best-ranked guess), so the gaming
file cannot score better than a top-1 guess with a whole-image box (see
:mod:`wsloc.evaluate.results`).

    python scripts/gaming_results.py --out /tmp/gaming      # Lite0 on ../shared/data/imagenet-val-1300
    wsloc evaluate /tmp/gaming/honest.json ../shared/data/imagenet-val-1300/annotations.json --no-coco
    wsloc evaluate /tmp/gaming/gaming.json ../shared/data/imagenet-val-1300/annotations.json --no-coco
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from wsloc.evaluate import make_result, write_results
from wsloc.io import CocoDataset, load_image
from wsloc.models import load_classifier

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imagenet-val-1300",
                       "annotations.json")
#: Side of each nested box as a fraction of the image's side, best rank first.
NESTED = (1.0, 0.85, 0.7, 0.55, 0.4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", default=os.path.normpath(DEFAULT))
    ap.add_argument("--out", required=True, help="folder for honest.json and gaming.json")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args()
    if not os.path.exists(args.annotations):
        print(f"skipped: {args.annotations} not found", file=sys.stderr)
        return 0
    ds = CocoDataset(args.annotations)
    clf = load_classifier(args.model, device=args.device)
    honest, gaming = [], []
    samples = list(ds)
    for i in range(0, len(samples), args.batch_size):
        batch = samples[i:i + args.batch_size]
        images = [load_image(s.path) for s in batch]
        logits, classes = clf.predict(torch.stack([clf.preprocess(im) for im in images]), 5)
        for s, im, lg, cl in zip(batch, images, logits.tolist(), classes.tolist()):
            h, w = im.shape[:2]
            for rank, (c, score) in enumerate(zip(cl, lg), start=1):
                honest.append(make_result(s.image_id, c, [0, 0, w, h], score, rank=rank))
            for rank, f in enumerate(NESTED, start=1):
                x0, y0 = w * (1 - f) / 2, h * (1 - f) / 2
                gaming.append(make_result(s.image_id, cl[0], [x0, y0, w - x0, h - y0], lg[0], rank=rank))
    os.makedirs(args.out, exist_ok=True)
    write_results(os.path.join(args.out, "honest.json"), honest)
    write_results(os.path.join(args.out, "gaming.json"), gaming)
    print(f"{len(samples)} images: wrote {args.out}/honest.json ({len(honest)} entries) and "
          f"{args.out}/gaming.json ({len(gaming)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
