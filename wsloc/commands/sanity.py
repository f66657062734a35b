"""``wsloc sanity --method M [DATASET]``: model-parameter randomization test of saliency methods."""

from __future__ import annotations

import argparse
import json
import os

from . import add_model_options, classifier_from_args

DEFAULT_METHODS = "gradient,guided_backprop,grad_cam,integrated_gradients"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sanity", help="sanity checks for saliency maps (Adebayo et al. 2018)",
        description="Randomize the classifier's weights block by block (from the logits down) and measure how "
                    "much each method's maps change (Spearman rank correlation of absolute and signed maps, "
                    "SSIM, HOG correlation) and how their GT-known box accuracy falls. Writes sanity.json, "
                    "sanity.csv, sanity_curves.png and sanity_maps_<i>.png into --out.")
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="COCO .json, VOC folder or image folder (default: the demo set shipped in wsloc/data/demo)")
    from ..saliency.methods import METHODS

    p.add_argument("--method", "-m", action="append", metavar="M",
                   help=f"saliency method(s), repeatable or comma-separated, of: {', '.join(METHODS)} "
                        f"(default: {DEFAULT_METHODS})")
    p.add_argument("--limit", type=int, default=20, help="first N images of the dataset (default: %(default)s)")
    p.add_argument("--mode", choices=("cascading", "independent"), default="cascading",
                   help="cascading: randomize top blocks cumulatively; independent: one block at a time "
                        "(default: %(default)s)")
    p.add_argument("--blocks", help="comma-separated block names to randomize, in order (default: all; "
                                    "see --list-blocks)")
    p.add_argument("--list-blocks", action="store_true", help="print the model's blocks, top first, and exit")
    p.add_argument("--seed", type=int, default=0, help="randomization seed (default: %(default)s)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra attribute() option for every method, e.g. steps=32 (JSON value); repeatable")
    p.add_argument("--batch-size", type=int, default=10, help="images per saliency call (default: %(default)s)")
    p.add_argument("--box-threshold", type=float, default=0.2,
                   help="box from a map: fraction of its smoothed maximum (default: %(default)s)")
    p.add_argument("--keep-maps", type=int, default=2, help="images shown in map grids (default: %(default)s)")
    p.add_argument("--out", default="sanity_out", help="output folder (default: %(default)s)")
    p.add_argument("--data-randomization", action="store_true",
                   help="run the data-randomization test instead (synthetic shapes, tiny CNN trained here "
                        "on true vs permuted labels); writes data_randomization.json into --out")
    p.add_argument("--train-steps", type=int, default=1000,
                   help="data randomization: training steps per model (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or model-loading line")
    add_model_options(p)
    p.set_defaults(run=run)


def _methods(args) -> list[str]:
    items = args.method or [DEFAULT_METHODS]
    return [m.strip() for item in items for m in item.split(",") if m.strip()]


def _options(pairs: list[str]) -> dict:
    from ..errors import MethodError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MethodError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from ..paths import demo_annotations
    from ..sanity import check, report
    from ..sanity.randomize import block_list

    os.makedirs(args.out, exist_ok=True)
    methods = _methods(args)
    options = _options(args.option)
    if args.data_randomization:
        from ..sanity.data_randomization import data_randomization_test

        out = data_randomization_test(methods, steps=args.train_steps, seed=args.seed,
                                      method_options={m: options for m in methods})
        path = os.path.join(args.out, "data_randomization.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
        print(report.data_randomization_markdown(out))
        print(f"wrote {path}")
        return 0
    clf = classifier_from_args(args)
    if args.list_blocks:
        for b in block_list(clf):
            print(f"{b.name:<16s} {' + '.join(b.modules)}")
        return 0
    batch = check.load_batch(clf, args.dataset or demo_annotations(), args.limit)
    blocks = [b.strip() for b in args.blocks.split(",")] if args.blocks else None
    from tqdm import tqdm

    # One tick per map set: the original model's, then one per randomized block, for every method.
    steps = len(methods) * (1 + (len(blocks) if blocks else len(block_list(clf))))
    results = []
    with tqdm(total=steps, desc="sanity", unit="step", disable=args.quiet) as bar:
        def tick(line: str) -> None:
            bar.set_postfix_str(line, refresh=False)
            bar.update(1)

        for method in methods:
            results.append(check.sanity_check(
                clf, batch.x, method, targets=batch.targets, mode=args.mode, blocks=blocks, seed=args.seed,
                gt_boxes=batch.gt_boxes, image_sizes=batch.sizes, options=options, batch_size=args.batch_size,
                keep_maps=args.keep_maps, box_threshold=args.box_threshold, log=tick))
    rows = report.table_rows(results)
    report.write_table(rows, os.path.join(args.out, "sanity.json"), os.path.join(args.out, "sanity.csv"))
    report.plot_curves(results, os.path.join(args.out, "sanity_curves.png"))
    from .. import viz

    for i in range(min(args.keep_maps, len(batch.images))):
        viz.save_png(os.path.join(args.out, f"sanity_maps_{i}.png"),
                     report.map_grid(results, i, image=batch.images[i]))
    print(report.markdown_table(results, "spearman_abs"))
    if batch.gt_boxes is not None:
        print()
        print(report.markdown_table(results, "loc_acc"))
    print(f"wrote {args.out}/sanity.json, sanity.csv, sanity_curves.png, sanity_maps_*.png")
    return 0
