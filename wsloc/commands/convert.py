"""``wsloc convert SRC --to coco OUT.json``: write any dataset's ground truth as a COCO file."""

from __future__ import annotations

import argparse
import os

FORMATS = ("coco",)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a dataset's annotations (XML folder, LOC_val_solution.csv, COCO) to COCO JSON",
        description="Read a dataset with ground truth (an ImageNet / VOC XML folder, a Kaggle-style "
                    "LOC_val_solution.csv with its LOC_synset_mapping.txt, or a COCO file) and write its images, "
                    "boxes and classes as one COCO JSON file with 0-based ImageNet class ids where the classes "
                    "are ImageNet's. Boxes keep their pixels: reading the file back gives the same boxes.")
    p.add_argument("source", metavar="SRC", help="XML folder, LOC_val_solution.csv or COCO JSON")
    p.add_argument("--to", choices=FORMATS, default="coco", help="output format (default: %(default)s)")
    p.add_argument("out", metavar="OUT.json", help="the file to write")
    p.add_argument("--image-root", metavar="DIR", help="folder the source's image names are relative to")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.json if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DatasetError
    from ..evaluate.ground_truth import has_ground_truth
    from ..io import open_dataset
    from ..io.to_coco import write_coco

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.overwrite:
        raise DatasetError(f"{out}: exists; pass --overwrite to replace it")
    ds = open_dataset(args.source, image_root=args.image_root)
    if not has_ground_truth(ds):
        raise DatasetError(f"{os.path.abspath(args.source)}: has no annotations to convert")
    try:
        data = write_coco(ds, out)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot write ({exc})") from exc
    print(f"{len(data['images'])} images, {len(data['annotations'])} boxes, {len(data['categories'])} classes "
          f"-> {out}")
    root = ds.image_root
    default_root = os.path.join(os.path.dirname(out), "images")
    if os.path.abspath(default_root if os.path.isdir(default_root) else os.path.dirname(out)) != root:
        print(f"image file names are relative to {root}: use --image-root {root} with this file")
    return 0
