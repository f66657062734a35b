"""Speed and accuracy of wsloc.segment against per-class OpenCV GrabCut, measured in one run.

Workload: the first ``--n`` (200) photos of ../shared/data/imagenet-val-1300, upsampled from
227x227 to 500x375 (a typical ImageNet size), and the plain gradient maps (Simonyan et al.
2014) of EfficientNet-Lite0 for K = 5 classes per image: the top-5 predictions, with the 5th
replaced by the true class when the true class is not among them (so that GT-known accuracy
can be read off the same run). Maps are computed once (``wsloc.saliency.attribute`` when
available, else plain autograd) and are not part of the timings.

* wsloc: ``segment(image, maps[5, 224, 224], SegmentConfig())`` -> 5 masks and boxes.
* peer: for each of the 5 maps, the map resized to 500x375 (bilinear), the same seeds
  (pixels above the 95th / below the 30th percentile), OpenCV GrabCut with 3 iterations:
  colour models learnt on the seed pixels alone (GC_INIT_WITH_MASK on the seed pixels),
  one cut with those models frozen (GC_EVAL_FREEZE_MODEL), two GrabCut iterations
  re-learning from the labelling (GC_EVAL); seeds are hard constraints throughout; then
  the box of the largest 8-connected component (whole image if the mask is empty).

Both run single-threaded (OpenCV and BLAS set to one thread) on the same images in the same
process; wall-clock time of the segmentation + boxes only. Printed: images per second of
each, their ratio, and the GT-known localization accuracy of each (box of the true
class's map with IoU >= 0.5 with one ground-truth box, in the devkit convention of
``wsloc evaluate``, :mod:`wsloc.evaluate.iou`).

    nice -n 10 python scripts/bench_segment.py              # 200 images
    nice -n 10 python scripts/bench_segment.py --n 50 --cache /tmp/wsloc_bench_maps.npz
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from wsloc.boxes import largest_component_box  # noqa: E402
from wsloc.evaluate.iou import box_iou  # noqa: E402
from wsloc.io import CocoDataset, load_image  # noqa: E402
from wsloc.segment import SegmentConfig, segment  # noqa: E402
from wsloc.segment.seeds import seed_masks  # noqa: E402

DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                     "shared", "data", "imagenet-val-1300", "annotations.json"))
SIZE = (375, 500)  # (height, width) of the upsampled photos
K = 5
CONVENTION = "devkit"  # the IoU rule of the accuracy: wsloc evaluate's


def gradient_maps(clf, x: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Plain gradient maps ``float32 [N, K, h, w]`` of ``targets`` ``[N, K]``."""
    try:
        from wsloc.saliency import attribute
    except ImportError:
        attribute = None
    if attribute is not None:
        return attribute(clf, x, targets=targets, method="gradient").maps.detach().float().cpu().numpy()
    maps = []
    for k in range(targets.shape[1]):
        xk = x.clone().requires_grad_(True)
        score = clf.model(xk).gather(1, targets[:, k:k + 1]).sum()
        (grad,) = torch.autograd.grad(score, xk)
        maps.append(grad.abs().amax(dim=1))
    return torch.stack(maps, 1).float().cpu().numpy()


def prepare(n: int, cache: str | None):
    """(images uint8 [375,500,3], maps [N,K,224,224], targets [N,K], true-class index in targets, gt boxes)."""
    samples = list(CocoDataset(DATA))[:n]
    images = [cv2.resize(load_image(s.path), SIZE[::-1], interpolation=cv2.INTER_LINEAR) for s in samples]
    sx, sy = SIZE[1] / samples[0].width, SIZE[0] / samples[0].height
    gts = [s.boxes * np.array([sx, sy, sx, sy]) for s in samples]
    labels = np.array([s.label for s in samples])
    if cache and os.path.exists(cache):
        data = np.load(cache)
        if len(data["maps"]) >= n:
            return images, data["maps"][:n].astype(np.float32), data["targets"][:n], labels, gts
    from wsloc.models import load_classifier

    clf = load_classifier("efficientnet_lite0", device="cpu")
    all_maps, all_targets = [], []
    for i in range(0, n, 25):
        x = clf.preprocess.batch(images[i:i + 25]).to(clf.device)
        _, top = clf.predict(x, K)
        top = top.cpu()
        lab = torch.from_numpy(labels[i:i + 25])
        missing = ~(top == lab[:, None]).any(1)
        top[missing, K - 1] = lab[missing]
        all_targets.append(top.numpy())
        all_maps.append(gradient_maps(clf, x, top.to(clf.device)))
        print(f"\rmaps {min(i + 25, n)}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    maps, targets = np.concatenate(all_maps), np.concatenate(all_targets)
    if cache:
        np.savez(cache, maps=maps.astype(np.float16), targets=targets)
    return images, maps, targets, labels, gts


def grabcut_peer(image: np.ndarray, saliency: np.ndarray, q_fg: float, q_bg: float, iterations: int = 3) -> np.ndarray:
    """Box (xyxy) of one map with per-class OpenCV GrabCut (see the module docstring)."""
    h, w = image.shape[:2]
    bgr = np.ascontiguousarray(image[..., ::-1])
    s = cv2.resize(saliency, (w, h), interpolation=cv2.INTER_LINEAR)
    fg, bg = seed_masks(s, q_fg, q_bg)
    seeds = np.concatenate([bgr[fg], bgr[bg]])[None]
    seed_mask = np.concatenate([np.full(fg.sum(), cv2.GC_FGD), np.full(bg.sum(), cv2.GC_BGD)]).astype(np.uint8)[None]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(seeds, seed_mask, None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    mask[fg], mask[bg] = cv2.GC_FGD, cv2.GC_BGD
    cv2.grabCut(bgr, mask, None, bgd, fgd, 1, cv2.GC_EVAL_FREEZE_MODEL)
    if iterations > 1:
        cv2.grabCut(bgr, mask, None, bgd, fgd, iterations - 1, cv2.GC_EVAL)
    box = largest_component_box((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
    return np.array([0.0, 0.0, w, h]) if box is None else box


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--cache", default=None, help="optional .npz file caching the maps between runs")
    args = ap.parse_args()
    if not os.path.exists(DATA):
        print(f"skipped: {DATA} not found", file=sys.stderr)
        return 0
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images, maps, targets, labels, gts = prepare(args.n, args.cache)
    config = SegmentConfig()
    true_k = [int(np.flatnonzero(t == lab)[0]) for t, lab in zip(targets, labels)]

    segment(images[0], maps[0], config)  # warm-up (imports, allocations)
    ours_s, ours_hits, parts = 0.0, 0, {}
    for image, m, gt, k in zip(images, maps, gts, true_k):
        t = time.perf_counter()
        segs = segment(image, m, config)
        ours_s += time.perf_counter() - t
        ours_hits += bool((box_iou(segs[k].box[None], gt, CONVENTION) >= 0.5).any())
        for seg in segs:
            for key, v in seg.timings.items():
                parts[key] = parts.get(key, 0.0) + v
    peer_s, peer_hits = 0.0, 0
    for i, (image, m, gt, k) in enumerate(zip(images, maps, gts, true_k)):
        t = time.perf_counter()
        boxes = [grabcut_peer(image, mk, config.q_fg, config.q_bg) for mk in m]
        peer_s += time.perf_counter() - t
        peer_hits += bool((box_iou(boxes[k][None], gt, CONVENTION) >= 0.5).any())
        print(f"\rgrabcut {i + 1}/{len(images)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    n = len(images)
    print(f"{n} images upsampled to {SIZE[1]}x{SIZE[0]}, K={K} gradient maps (Lite0) per image, single thread")
    print(f"wsloc.segment  {n / ours_s:8.2f} images/s ({ours_s / n * 1e3:7.1f} ms/image)  "
          f"GT-known loc. accuracy {ours_hits / n:.4f}")
    print(f"cv2.grabCut    {n / peer_s:8.2f} images/s ({peer_s / n * 1e3:7.1f} ms/image)  "
          f"GT-known loc. accuracy {peer_hits / n:.4f}")
    print(f"speed ratio wsloc / grabCut: {peer_s / ours_s:.1f}x;  "
          f"accuracy difference {(ours_hits - peer_hits) / n:+.4f}")
    total = sum(parts.values())
    print("wsloc time split: " + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items()))
    print(f"config: {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
