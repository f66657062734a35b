"""``wsloc evaluate RESULTS ANNOTATIONS``: score a COCO-style results file."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score a results file (ILSVRC CLS-LOC error, GT-known, COCO AP)",
        description="Score a COCO-style results JSON against a dataset's ground truth (COCO, XML folder, "
                    "LOC_val_solution.csv): ILSVRC top-1/top-5 "
                    "localization and classification error, GT-known accuracy, COCO box/mask AP. A class "
                    "repeated among an image's guesses counts once for the ILSVRC figures (its best-ranked "
                    "guess; COCO AP sees every entry), boxes are clipped to their image, and both are reported "
                    "as warnings; non-finite scores or boxes are refused.")
    p.add_argument("results", metavar="RESULTS", help="results JSON (list of image_id, category_id, bbox, score, ...)")
    p.add_argument("annotations", metavar="ANNOTATIONS",
                   help="ground truth: COCO annotation JSON, ImageNet/VOC XML folder, or LOC_val_solution.csv")
    p.add_argument("--image-root", default=None, help="image folder (only needed when image sizes are missing)")
    p.add_argument("--iou-convention", choices=["devkit", "continuous"], default="devkit",
                   help="box IoU rule: devkit = ILSVRC devkit, +1 on widths (default); continuous = COCO-style")
    p.add_argument("--no-coco", action="store_true", help="skip COCO AP (COCOeval)")
    p.add_argument("--maps", metavar="RUN_DIR", default=None,
                   help="a run folder with saved maps (wsloc localize --save-maps): also PxAP of the maps against "
                        "the ground-truth masks (default: RESULTS' folder when it has maps/)")
    p.add_argument("--masks", metavar="RUN_DIR", default=None,
                   help="a run folder with saved mask PNGs (wsloc localize --save-masks, masks/<image_id>_"
                        "<category_id>.png): score those masks instead of the results' RLE segmentations")
    p.add_argument("--out", metavar="FIGURES.json", default=None, help="also write the figures as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_results, format_table, write_figures

    import os

    from ..run.saved_maps import has_saved_maps

    maps_dir = args.maps
    if maps_dir is None and has_saved_maps(os.path.dirname(os.path.abspath(args.results))):
        maps_dir = os.path.dirname(os.path.abspath(args.results))
    figures = evaluate_results(args.results, args.annotations, iou_convention=args.iou_convention,
                               image_root=args.image_root, coco=not args.no_coco, maps_dir=maps_dir,
                               masks_dir=args.masks)
    print(format_table(figures))
    if args.out:
        write_figures(args.out, figures)
        print(f"figures written to {args.out}")
    return 0
