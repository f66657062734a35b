"""``wsloc merge DIR [SHARD_DIR...]``: join the shards of a ``--shard I/N`` run into one result."""

from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    p = sub.add_parser("merge", help="join the shard outputs of a localization run",
                       description="Join the shard folders of `wsloc localize --shard I/N` runs into DIR "
                                   "(images.jsonl, results.json, errors.json, config.json, summary.json), "
                                   "then score the results when the dataset has ground truth.")
    p.add_argument("out", metavar="DIR", help="the --out folder of the shards (merged files are written here)")
    p.add_argument("shards", nargs="*", metavar="SHARD_DIR",
                   help="shard folders (default: DIR/shards/*-of-*)")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="do not score the results")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import WslocError
    from ..io import open_dataset
    from ..run import merge, outputs, resume
    from .localize import exit_status, os_error, report

    out_dir = os.path.abspath(args.out)
    try:
        summary = merge(out_dir, args.shards or None)
    except OSError as exc:
        raise os_error(exc) from None
    dataset = None
    if args.evaluate:
        info = outputs.read_json(os.path.join(out_dir, outputs.CONFIG)).get("dataset", {})
        try:
            dataset = open_dataset(info["path"], image_root=info.get("image_root"))
        except (KeyError, WslocError) as exc:
            print(f"(not scored: the dataset cannot be opened: {exc})")
        if dataset is not None:
            now = resume.dataset_identity(dataset, info["path"])
            changed = [k for k, v in now.items() if k in info and info[k] != v]
            if changed:
                raise WslocError(f"{info['path']}: the dataset changed since the shards were run ({', '.join(changed)} "
                                 "differ); the merged results are in place but cannot be scored against it")
    report(out_dir, summary, dataset, evaluate=dataset is not None)
    return exit_status("merge", summary)
