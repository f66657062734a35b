"""Top-1 / top-5 classification accuracy of a classifier on a COCO-format ImageNet set.

The whole image is resized to the network's input (no crop), as the localizer sees it.

    python scripts/eval_classifier.py                      # Lite0 on ../shared/data/imagenet-val-1300
    python scripts/eval_classifier.py --model resnet50 --annotations PATH/annotations.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from wsloc.io import CocoDataset, load_image
from wsloc.models import load_classifier

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imagenet-val-1300", "annotations.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", default=os.path.normpath(DEFAULT))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    args = ap.parse_args()
    if not os.path.exists(args.annotations):
        print(f"skipped: {args.annotations} not found", file=sys.stderr)
        return 0
    ds = CocoDataset(args.annotations)
    samples = [s for s in ds][: args.limit or None]
    clf = load_classifier(args.model, device=args.device)
    top1 = top5 = 0
    start = time.perf_counter()
    for i in range(0, len(samples), args.batch_size):
        batch = samples[i:i + args.batch_size]
        x = torch.stack([clf.preprocess(load_image(s.path)) for s in batch])
        _, classes = clf.predict(x, 5)
        labels = torch.tensor([s.label for s in batch], device=classes.device)
        top1 += (classes[:, 0] == labels).sum().item()
        top5 += (classes == labels[:, None]).any(dim=1).sum().item()
    n = len(samples)
    print(f"model {clf.name}  input {clf.input_size[0]}x{clf.input_size[1]} whole image  "
          f"mean {tuple(round(m, 4) for m in clf.preprocess.mean)} std {tuple(round(s, 4) for s in clf.preprocess.std)}")
    print(f"images {n}  top-1 accuracy {top1 / n:.4f}  top-5 accuracy {top5 / n:.4f}  "
          f"({n / (time.perf_counter() - start):.1f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
