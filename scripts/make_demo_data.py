#!/usr/bin/env python
"""Build the embedded demo set ``wsloc/data/demo/`` (package data) from scikit-image's bundled photos.

Writes ``wsloc/data/demo/images/<name>.jpg`` (JPEG quality 95) and
``wsloc/data/demo/annotations.json`` (COCO format, **0-based ImageNet-1k class ids**, all
1000 classes listed in ``categories`` with ``wnid``/``name``/``full_name``; the image's
class is also in ``images[].label`` / ``images[].wnid``).

Only images shipped inside the scikit-image package are used (no pooch download);
an image that is not available offline is skipped with a message.

The boxes were drawn by hand: each photo was viewed, a candidate box drawn on a
copy, viewed again, and adjusted. They are COCO-style continuous pixel coordinates,
written below as xyxy ``(x0, y0, x1, y1)`` and stored as ``[x, y, w, h]``.

Usage: ``python scripts/make_demo_data.py [--out wsloc/data/demo]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

# name -> (loader, ImageNet class index, hand-drawn boxes xyxy, note)
# The class index is checked against the wnid from timm below.
DEMO = [
    # A close-up of a brown striped tabby cat ("Chelsea"); the face fills the frame.
    # Box: the whole cat (ears touch the top edge, chest runs off the bottom and
    # left edges; right ear tip ends near x=400).
    ("chelsea", "chelsea", 281, "n02123045", [(0, 0, 400, 300)]),
    # A cup of espresso on a saucer; box on the cup with the coffee (rim to the
    # bottom of the handle), spoon and saucer outside.
    ("coffee", "coffee", 967, "n07920052", [(172, 18, 410, 306)]),
    # A rocket (SpaceX Falcon 9) on its launch pad at dusk: ImageNet "missile"
    # (whose images include rockets on pads). Box: nose cone to the pad deck.
    ("rocket", "rocket", 657, "n03773504", [(306, 126, 337, 406)]),
    # Astronaut portrait: the space-shuttle model (orbiter, tank, boosters) in the
    # top right; box from the tank tip (image top) to the engines, stand excluded.
    ("astronaut", "astronaut", 812, "n04266014", [(355, 0, 455, 271)]),
    # "Cameraman" (grayscale): the tripod, from its head under the camera to the feet.
    ("camera", "camera", 872, "n04485082", [(228, 185, 409, 510)]),
    # A red Yamaha motorcycle in a garage (left frame of the stereo pair).
    # ImageNet-1k has no "motorcycle" class; its "moped" class holds many small
    # motorcycles. Box: rear fender to front tyre, mirror tops to tyre bottoms.
    ("motorcycle", "stereo_motorcycle", 665, "n03785016", [(93, 76, 685, 450)]),
]


def _load_skimage(fn_name: str) -> np.ndarray | None:
    import skimage.data

    try:
        out = getattr(skimage.data, fn_name)()
    except Exception as exc:  # not bundled: would need pooch / a download
        print(f"skip {fn_name}: not available offline ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    if isinstance(out, tuple):  # stereo_motorcycle -> (left, right, disparity)
        out = out[0]
    return np.asarray(out)


def _categories() -> list[dict]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    cats = []
    for i in range(info.num_classes()):
        full = info.index_to_description(i)
        cats.append(
            {
                "id": i,
                "imagenet_index": i,
                "wnid": info.index_to_label_name(i),
                "name": full.split(",")[0].strip(),
                "full_name": full,
                "supercategory": "imagenet1k",
            }
        )
    return cats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, os.pardir, "wsloc", "data", "demo"))
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    img_dir = os.path.join(out, "images")
    os.makedirs(img_dir, exist_ok=True)

    cats = _categories()
    images, anns = [], []
    for name, fn, label, wnid, boxes in DEMO:
        if cats[label]["wnid"] != wnid:
            raise SystemExit(f"{name}: class {label} is {cats[label]['wnid']}, expected {wnid}")
        arr = _load_skimage(fn)
        if arr is None:
            continue
        im = Image.fromarray(arr)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        file_name = f"{name}.jpg"
        im.save(os.path.join(img_dir, file_name), quality=95)
        w, h = im.size
        image_id = len(images) + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": w,
                "height": h,
                "label": label,
                "wnid": wnid,
                "source": f"skimage.data.{fn}()",
            }
        )
        for x0, y0, x1, y1 in boxes:
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise SystemExit(f"{name}: box {(x0, y0, x1, y1)} outside the {w}x{h} image")
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
        print(f"{file_name}: {w}x{h} class {label} {cats[label]['name']} boxes {boxes}")

    data = {
        "info": {
            "description": "wsloc demo set: photos bundled with scikit-image (skimage.data), "
            "boxes drawn by hand. Made by scripts/make_demo_data.py.",
            "category_ids": "0-based ImageNet-1k index (sorted-wnid order), NOT the COCO 1-based convention",
            "bbox": "COCO [x, y, w, h] in continuous pixel coordinates",
        },
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": cats,
    }
    with open(os.path.join(out, "annotations.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
