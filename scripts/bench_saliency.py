"""Gradient maps of the top-5 classes: wsloc against Captum, in the same run.

wsloc: ``attribute(model, x, method="gradient", top_k=5)``: one forward pass, the top-5
classes from it, one batched backward for the five classes (the linear tape).
Captum: the top-5 classes from a forward pass, then ``Saliency.attribute`` once per class
(a forward and a backward pass each), as one would call it. The same batch, in alternating
repeats; the median time of each is reported as images/s, and their ratio. Captum's
figure without its top-5 forward pass is printed too, and the maps of both are compared.

    python scripts/bench_saliency.py                         # Lite0, 8 images of 224x224
    python scripts/bench_saliency.py --model resnet18 --batch 16 --repeats 5
    python scripts/bench_saliency.py --variants              # also: what each speed-up brings

Images come from ../shared/data/imagenet-val-1300 when present, else random inputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import torch

from wsloc.models import load_classifier
from wsloc.saliency import attribute
from wsloc.saliency import tape as tape_module

DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imagenet-val-1300"))


def batch_of_images(clf, n: int) -> tuple[torch.Tensor, str]:
    folder = os.path.join(DATA, "images")
    if os.path.isdir(folder):
        from wsloc.io import load_image

        names = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg", ".png")))[:n]
        if len(names) == n:
            images = [load_image(os.path.join(folder, f)) for f in names]
            return clf.preprocess.batch(images), f"{n} photos from {DATA}"
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, *clf.input_size, generator=g), f"{n} random inputs"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--weights", default="DEFAULT", help="'none' for random weights")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--variants", action="store_true",
                    help="also time the autograd engine and the tape without channels-last / BN folding")
    args = ap.parse_args()
    try:
        from captum.attr import Saliency
    except ImportError:
        print("captum is not installed (pip install captum)", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load_classifier(args.model, device="cpu", weights=None if args.weights == "none" else args.weights)
    model = clf.model
    x, source = batch_of_images(clf, args.batch)
    k = args.top_k

    def captum_top(x):
        with torch.no_grad():
            targets = model(x).topk(k, dim=1).indices
        return targets

    def captum_maps(x, targets):
        sal = Saliency(model)
        return torch.stack([sal.attribute(x, target=targets[:, j], abs=True).amax(dim=1) for j in range(k)], 1)

    def with_flags(cl: bool, fold: bool):
        def f():
            tape_module.CHANNELS_LAST_ON_CPU, tape_module.FOLD_BATCHNORM = cl, fold
            try:
                return attribute(clf, x, method="gradient", top_k=k).maps
            finally:
                tape_module.CHANNELS_LAST_ON_CPU, tape_module.FOLD_BATCHNORM = True, True
        return f

    runs = {"wsloc": lambda: attribute(clf, x, method="gradient", top_k=k).maps}
    if args.variants:
        runs["wsloc engine=autograd (shared forward, K backward)"] = \
            lambda: attribute(clf, x, method="gradient", top_k=k, engine="autograd").maps
        runs["wsloc tape, no channels-last"] = with_flags(False, True)
        runs["wsloc tape, no BN folding"] = with_flags(True, False)
        runs["wsloc tape, neither"] = with_flags(False, False)
    targets = captum_top(x)
    runs["captum top-5 forward"] = lambda: captum_top(x)
    runs["captum 5 x Saliency"] = lambda: captum_maps(x, targets)

    ours = attribute(clf, x, method="gradient", top_k=k)
    theirs = captum_maps(x, ours.targets)
    diff = ((ours.maps - theirs).abs().max() / theirs.abs().max()).item()
    same_targets = bool(torch.equal(ours.targets, targets))

    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    captum_total = med["captum top-5 forward"] + med["captum 5 x Saliency"]
    n = args.batch
    print(f"model {args.model}, {source}, {clf.input_size[0]}x{clf.input_size[1]}, top-{k}, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats (median)")
    print(f"max relative difference of the maps, wsloc vs captum: {diff:.2e}; same top-{k}: {same_targets}")
    for name in runs:
        if name.startswith("captum"):
            continue
        print(f"{name:52s} {n / med[name]:8.2f} images/s  ({med[name]:.2f} s)")
    print(f"{'captum Saliency x5 + top-5 forward':52s} {n / captum_total:8.2f} images/s  ({captum_total:.2f} s)")
    print(f"{'captum Saliency x5 (targets given)':52s} {n / med['captum 5 x Saliency']:8.2f} images/s  "
          f"({med['captum 5 x Saliency']:.2f} s)")
    print(f"speed-up of wsloc: {captum_total / med['wsloc']:.2f}x (vs captum incl. its top-5 forward), "
          f"{med['captum 5 x Saliency'] / med['wsloc']:.2f}x (vs the 5 Saliency calls alone)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
