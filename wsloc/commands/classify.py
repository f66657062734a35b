"""``wsloc classify PATH...``: print the top-5 classes of each image."""

from __future__ import annotations

import argparse
import os
import sys

from . import add_model_options, classifier_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("classify", help="print the top-k classes of images",
                       description="Print the top-k classes of each image (files or folders of images).")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image files or folders (default: the demo images shipped in wsloc/data/demo)")
    p.add_argument("-k", "--top-k", type=int, default=5, help="classes per image (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="images per network batch (default: %(default)s)")
    add_model_options(p)
    p.set_defaults(run=run)


def _expand(paths: list[str]) -> list[str]:
    from ..io import FolderDataset

    out = []
    for path in paths:
        out.extend(s.path for s in FolderDataset(path)) if os.path.isdir(path) else out.append(path)
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from ..io import load_image
    from ..errors import ImageLoadError
    from ..paths import demo_images_dir

    paths = _expand(args.paths or [demo_images_dir()])
    clf = classifier_from_args(args)
    names = clf.class_names or [str(i) for i in range(clf.num_classes)]
    failures = 0
    for start in range(0, len(paths), args.batch_size):
        chunk, tensors = [], []
        for path in paths[start:start + args.batch_size]:
            try:
                tensors.append(clf.preprocess(load_image(path)))
                chunk.append(path)
            except ImageLoadError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failures += 1
        if not chunk:
            continue
        with torch.no_grad():
            probs = torch.softmax(clf(torch.stack(tensors).to(clf.device)), dim=1)
        top, classes = probs.topk(min(args.top_k, probs.shape[1]), dim=1)
        for path, row_p, row_c in zip(chunk, top.tolist(), classes.tolist()):
            print(path)
            for rank, (pr, c) in enumerate(zip(row_p, row_c), 1):
                print(f"  {rank}. {c:4d} {names[c]:<30s} {pr:6.1%}")
    return 1 if failures and failures == len(paths) else 0
