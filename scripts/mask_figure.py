"""The figure of BENCHMARKS.md "Segmentation on real masks": photo, ground truth, the peer's and our masks.

For 8 (image, mapped category) pairs of a COCO file with masks (default
``../shared/data/coco2017-masks-dev/annotations.json``), chosen by size bucket (2 small, 3 medium,
3 large: the first pairs of each bucket in image order whose image id is odd, the held-out half of
``scripts/bench_masks.py``, one pair per image), one row each: the photo, the ground-truth union mask, the
``cv2.grabCut`` peer's mask and the mask of the segmentation options given (default: the default
preset's, with ``--set`` changes), all from the same default-preset map; each mask tinted on the photo
with its IoU written on it.

    python scripts/mask_figure.py --cache /tmp/maskcache --set q_fg=50 --set q_fg_hard=70 --set gamma=20 \\
        --out docs/masks/gt_known_masks.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_masks import DEFAULT, cached_grabcut, image_maps, parse_row  # noqa: E402

CELL = 180  # height of one picture, pixels
PER_BUCKET = (2, 3, 3)


def tint(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], label: str) -> np.ndarray:
    """The photo darkened outside ``mask`` and tinted inside it, with the mask's outline and ``label``."""
    out = (image.astype(np.float32) * 0.45).astype(np.uint8)
    inside = image.astype(np.float32) * 0.6 + np.array(colour, np.float32) * 0.4
    out[mask] = inside[mask].astype(np.uint8)
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, 2)
    return caption(out, label)


def caption(picture: np.ndarray, text: str) -> np.ndarray:
    """``picture`` scaled to the cell height with ``text`` on a dark band at the top."""
    h, w = picture.shape[:2]
    small = cv2.resize(picture, (max(1, round(w * CELL / h)), CELL), interpolation=cv2.INTER_AREA)
    cv2.rectangle(small, (0, 0), (small.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(small, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return small


def choose(pairs: list) -> list:
    """The figure's pairs: per bucket, the first of odd image id (see the module docstring)."""
    from wsloc.evaluate.gt_masks import MASK_SIZE_BUCKETS

    chosen, used = [], set()
    for (_, lo, hi), k in zip(MASK_SIZE_BUCKETS, PER_BUCKET):
        for p in pairs:
            if k and p[0] % 2 == 1 and p[0] not in used and lo <= p[2].mean() < hi:
                chosen.append(p)
                used.add(p[0])
                k -= 1
    return chosen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("annotations", nargs="?", default=str(DEFAULT))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a segmentation option of 'ours' on top of the default preset's (repeatable)")
    ap.add_argument("--cache", default=None, help="bench_masks.py's cache folder (maps and peer masks)")
    ap.add_argument("--out", default="docs/masks/gt_known_masks.png")
    args = ap.parse_args(argv)

    from wsloc.evaluate.ground_truth import GroundTruth
    from wsloc.evaluate.gt_masks import gt_union_masks
    from wsloc.evaluate.masks import mask_iou
    from wsloc.io import load_image, open_dataset
    from wsloc.labels import ClassMap
    from wsloc.localizer import Localizer, LocalizerConfig
    from wsloc.presets import DEFAULT_PRESET
    from wsloc.segment import segment
    from wsloc.segment.seeds import resize_map

    ds = open_dataset(args.annotations)
    cmap = ClassMap.from_dataset(ds)
    gt = GroundTruth(ds, range(len(ds)))
    names = {c["id"]: c["name"] for c in gt.coco.dataset["categories"]}
    pairs = choose(gt_union_masks(gt.coco, [s.image_id for s in gt.samples], set(cmap.ids)))
    loc = Localizer(LocalizerConfig.from_preset(DEFAULT_PRESET, device="cpu", class_map=cmap.to_entries(),
                                                targets="gt"))
    ours = loc.segment_config.replace(**parse_row("ours:" + ",".join(args.set))[1])
    samples = {s.image_id: s for s in gt.samples}
    rows = []
    for image_id, c, truth in pairs:
        s = samples[image_id]
        image = load_image(s.path)
        cats = sorted({int(a["category_id"]) for a in gt.coco.imgToAnns[image_id]} & set(cmap.ids))
        maps, classes = image_maps(loc, image, cats, args.cache, DEFAULT_PRESET, image_id)
        m = maps[list(classes).index(c)]
        peer, _ = cached_grabcut(image, resize_map(m, image.shape[:2]), args.cache, image_id, c)
        mine = segment(image, m, ours)[0].mask
        cells = [caption(image.copy(), f"{image_id} {names[c]} {100 * truth.mean():.1f}%"),
                 tint(image, truth, (0, 200, 0), "ground truth"),
                 tint(image, peer, (230, 120, 0), f"grabCut IoU {100 * mask_iou(peer, truth):.0f}"),
                 tint(image, mine, (0, 120, 255), f"ours IoU {100 * mask_iou(mine, truth):.0f}")]
        rows.append(cv2.copyMakeBorder(np.concatenate(cells, axis=1), 2, 2, 0, 0, cv2.BORDER_CONSTANT,
                                       value=(255,) * 3))
    width = max(r.shape[1] for r in rows)
    picture = np.concatenate([cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT,
                                                 value=(255,) * 3) for r in rows], axis=0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"{len(rows)} pairs -> {args.out} ({picture.shape[1]} x {picture.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
