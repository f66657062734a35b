"""``wsloc localize [DATASET] --out DIR``: localize and segment the objects of a whole dataset.

Writes the run folder described in :mod:`wsloc.run.outputs`, scores it with
:mod:`wsloc.evaluate` when the dataset has ground truth, and prints the table. Works as
one process, as one shard of a job array (``--shard I/N``, then ``wsloc merge DIR``), or
under ``torchrun --nproc_per_node P`` (the ranks split the dataset; rank 0 merges).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import sys

from ..errors import WslocError
from . import add_model_options


def _key_value(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def add_parser(sub) -> None:
    from ..presets import DEFAULT_PRESET, PRESETS

    p = sub.add_parser(
        "localize", help="localize (and segment) the objects of a dataset",
        description="Localize and segment the top-k classes of every image of a dataset with a classifier's "
                    "saliency maps; write COCO results, per-image JSONL, errors, configuration and summary; "
                    "score against the ground truth when there is some.")
    p.add_argument("dataset", nargs="*", metavar="INPUT",
                   help="a dataset (COCO JSON, ImageNet/VOC XML folder, LOC_val_solution.csv, image folder), or "
                        "image files, folders and quoted glob patterns such as 'photos/*.jpg' (default: the "
                        "demo set shipped in wsloc/data/demo)")
    p.add_argument("--out", "-o", metavar="DIR", default=None,
                   help="output folder (default: runs/<dataset name>-<date-time>; runs/<dataset name> for --shard and torchrun runs)")
    p.add_argument("--image-root", metavar="DIR", help="folder the dataset's file names are relative to")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help=f"named configuration (default: {DEFAULT_PRESET})")
    add_model_options(p)
    from ..saliency.methods import METHODS
    from ..segment.config import option_names

    preset_methods = ", ".join(f"{PRESETS[n]['method']} for {n}" for n in sorted(PRESETS))
    p.add_argument("--method", choices=list(METHODS), metavar="METHOD",
                   help=f"saliency method, one of: {', '.join(METHODS)} (default: the preset's: {preset_methods})")
    p.add_argument("--method-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="option of the saliency method (repeatable; VALUE parsed as JSON when it can be)")
    p.add_argument("--scales", type=_scales, metavar="S,S,...",
                   help="fuse the maps of the input resized by these factors, e.g. 1,2 (default: the preset's)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="also fuse the maps of the mirrored input (default: the preset's)")
    p.add_argument("--segment-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="option of wsloc.segment.SegmentConfig, e.g. q_fg=90 (repeatable); KEY one of: "
                        f"{', '.join(option_names())} (defaults: the preset's, see wsloc/presets.py, then "
                        "SegmentConfig's)")
    p.add_argument("-k", "--top-k", type=int, help="classes localized per image (default: the preset's)")
    p.add_argument("--class-map", metavar="FILE|dataset|none", default=None,
                   help="dataset category -> ImageNet classes (JSON or CSV, see wsloc/labels.py): the logits are "
                        "folded into the categories, results carry their ids (default: the dataset's own, when "
                        "its COCO categories carry imagenet_classes; none: the classifier's classes)")
    p.add_argument("--class-fold", choices=["max", "logsumexp"], default="max",
                   help="a category's score from its classes' logits: max (default: every category competes "
                        "like one class) or logsumexp (the sum of their probabilities)")
    p.add_argument("--targets", choices=["topk", "gt"], default="topk",
                   help="topk: the top-k classes of every image (default); gt: the categories annotated in "
                        "each image (GT-known protocol)")
    p.add_argument("--batch-size", type=int, help="images per network batch (default: LocalizerConfig's, 8)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="run the network in the default memory format")
    p.add_argument("--engine", choices=["eager", "onnx"], default=None,
                   help="what runs the network: eager PyTorch (default) or ONNX Runtime (forward-only maps, "
                        "e.g. the default preset on Lite0; pip install 'wsloc[onnx]')")
    p.add_argument("--workers", type=int, help="decoding processes (default: from the machine)")
    p.add_argument("--segment-workers", type=int, help="segmentation processes, 0 = in the main process "
                                                       "(default: from the machine)")
    p.add_argument("--threads", type=int, help="torch threads of the network (default: from the machine)")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (job arrays); join with `wsloc merge`")
    p.add_argument("--resume", action="store_true", help="continue the run in --out without recomputing")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--overlays", type=int, default=0, metavar="N",
                   help="write PNG pictures (image, saliency, mask, box) of the first N images")
    p.add_argument("--limit", type=int, help="only the first N images of the dataset")
    p.add_argument("--save-maps", action="store_true",
                   help="also write each image's saliency maps as OUT/maps/IIIIII.npz (float16 maps [K, h, w], "
                        "their category ids, image id and size; see wsloc/run/saved_maps.py); the evaluation "
                        "then adds PxAP")
    p.add_argument("--max-pixels", type=int, default=50_000_000,
                   help="refuse (record as errors) images with more pixels (default: %(default)s)")
    p.add_argument("--min-side", type=int, default=8,
                   help="refuse (record as errors) images with a shorter side (default: %(default)s)")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="do not score the results")
    p.add_argument("--report", action="store_true",
                   help="also write OUT/report.html (figures, timings, overlay gallery; see `wsloc report`)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, warnings only")
    p.set_defaults(run=run)


def _open(args):
    from ..io.inputs import open_inputs
    from ..run.runner import describe_dataset

    ds, path = open_inputs(args.dataset, image_root=args.image_root)
    return ds, describe_dataset(ds, path)


def _default_out(args) -> str:
    """runs/<dataset name>-<time>, so that a plain command can be run again; without the time
    for sharded and torchrun runs, whose processes must agree on the folder."""
    if not args.dataset:
        name = "demo"
    elif len(args.dataset) > 1 or set("*?[") & set(args.dataset[0]):
        name = "images"
    else:
        name = os.path.splitext(os.path.basename(os.path.normpath(args.dataset[0])))[0] or "run"
    if args.shard or "WORLD_SIZE" in os.environ:
        return os.path.join("runs", name)
    return claim_folder(os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"))


def claim_folder(path: str) -> str:
    """Create ``path``, or ``path-2``, ``path-3``... if it exists (``mkdir`` is atomic: two runs
    started in the same second get two folders). Returns the folder created."""
    from ..run.lock import folder_error

    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise folder_error(parent, exc) from None
    for n in range(1, 10_000):
        candidate = path if n == 1 else f"{path}-{n}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise folder_error(candidate, exc) from None
    raise WslocError(f"{path}: no free folder name")  # pragma: no cover


def _scales(text: str) -> list[float]:
    from ..errors import MethodError
    from ..saliency.multiscale import check_scales

    try:
        return list(check_scales([v for v in text.split(",") if v.strip()], False)[0])
    except MethodError as exc:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: {exc}; e.g. 1,2") from None


def class_map_from_args(args, dataset=None):
    """The :class:`wsloc.labels.ClassMap` a command asks for: ``--class-map FILE``, ``dataset``
    (its categories' ``imagenet_classes``), ``none``; by default the dataset's when it has one."""
    from ..labels import ClassMap

    choice = getattr(args, "class_map", None)
    if choice is not None and str(choice).lower() == "none":
        return None
    if choice is None or str(choice).lower() == "dataset":
        cmap = ClassMap.from_dataset(dataset) if dataset is not None else None
        if cmap is None and choice is not None:
            raise WslocError("--class-map dataset: the dataset's categories carry no imagenet_classes")
        return cmap
    return ClassMap.from_file(choice, getattr(dataset, "categories", None) or None)


def localizer_from_args(args, device: str | None = None, dataset=None):
    from ..localizer import Localizer, LocalizerConfig
    from . import say_loading

    overrides = {"model": args.model, "weights": None if str(args.weights).lower() == "none" else args.weights,
                 "device": device or args.device, "channels_last": args.channels_last}
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if getattr(args, "engine", None):
        overrides["engine"] = args.engine
    if args.method:
        overrides["method"] = args.method
    if args.method_option:
        overrides["method_options"] = dict(args.method_option)
    if args.scales is not None:
        overrides["scales"] = args.scales
    if args.flip is not None:
        overrides["flip"] = args.flip
    if args.segment_option:
        overrides["segment"] = dict(args.segment_option)
    if args.top_k is not None:
        overrides["top_k"] = args.top_k
    cmap = class_map_from_args(args, dataset)
    if cmap is not None:
        overrides["class_map"] = cmap.to_entries()
        logging.getLogger("wsloc").info("%s", cmap.describe(getattr(args, "class_fold", "max")))
    overrides["class_fold"] = getattr(args, "class_fold", "max")
    overrides["targets"] = getattr(args, "targets", "topk")
    config = LocalizerConfig.from_preset(args.preset, **overrides)  # bad options fail before the model loads
    say_loading(args, config.device)
    return Localizer(config)


def run(args: argparse.Namespace) -> int:
    from ..run import RunOptions, merge, parse_shard, resume, run_dataset
    from ..run import shard as sharding
    from ..run.lock import RunLock

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("wsloc")
    dist_env = sharding.DistEnv.from_env()
    user_shard = parse_shard(args.shard) if args.shard else (0, 1)
    shard = dist_env.combine(user_shard) if dist_env else user_shard
    device = sharding.device_for_rank(args.device, dist_env)
    if dist_env:
        backend = sharding.init_process_group(dist_env, device)
        log.info("rank %d of %d (%s, %s)", dist_env.rank, dist_env.world_size, backend, device)
    rank0 = dist_env is None or dist_env.rank == 0
    opts = RunOptions(out_dir="", shard=shard, resume=args.resume, overwrite=args.overwrite,
                      workers=args.workers, segment_workers=args.segment_workers, threads=args.threads,
                      overlays=args.overlays, max_pixels=args.max_pixels, min_side=args.min_side,
                      limit=args.limit, progress=not args.quiet and rank0, save_maps=args.save_maps)
    opts.validate()  # before any folder or model
    out_dir = opts.out_dir = os.path.abspath(args.out or _default_out(args))
    lock = None
    try:
        run_dir = sharding.shard_dir(out_dir, *shard)
        resume.check_split(out_dir, shard[1])
        lock = RunLock(run_dir).acquire()  # a second run on this folder stops here, at once
        resume.refuse_existing(run_dir, args.resume, args.overwrite)  # fail fast
        dataset, info = _open(args)
        if args.targets == "gt" and not has_ground_truth(dataset):
            raise WslocError("--targets gt: the input has no annotations to take the categories from")
        localizer = localizer_from_args(args, device, dataset)
        if args.top_k is not None and localizer.top_k < args.top_k:
            what = "the class map has only {} mapped categories" if localizer.class_map is not None \
                else "the classifier has only {} classes"
            raise WslocError(f"--top-k {args.top_k}: {what.format(localizer.top_k)}")
        if localizer.top_k < localizer.config.top_k:
            log.warning("top-k %d of the preset lowered to the %d %s", localizer.config.top_k, localizer.top_k,
                        "mapped categories" if localizer.class_map is not None else "classes of the classifier")
        if dist_env:  # each rank plans its workers (wsloc.run.policy) on its share of the machine's cores
            from ..run.runner import cpu_count

            opts.cpus = max(1, cpu_count() // dist_env.local_world_size)
        summary = run_dataset(localizer, dataset, opts, info)
        lock.release()
        lock = None
        if dist_env:
            sharding.barrier()
    except OSError as exc:  # a full disk, a folder that went away: one line, not a traceback
        raise os_error(exc) from None
    finally:
        if lock is not None:
            lock.release()
        if dist_env:
            sharding.destroy()
    if not rank0:
        return 0
    if shard[1] > 1 and (dist_env is None or args.shard):
        print(f"shard {shard[0]}/{shard[1]}: {summary['processed']} images localized, {summary['errors']} errors; "
              f"join the shards with: wsloc merge {out_dir}")
        return exit_status("localize", summary)
    if shard[1] > 1:
        try:
            summary = {**summary, **merge(out_dir)}
        except OSError as exc:
            raise os_error(exc) from None
    report(out_dir, summary, dataset, evaluate=args.evaluate, quiet=args.quiet)
    status = exit_status("localize", summary)
    if status:
        return status
    if args.report:
        from ..report import write_report

        print(f"report: {write_report(out_dir, dataset)}")
    return 0


def os_error(exc: OSError) -> WslocError:
    """One line for an operating-system error (the file and the reason)."""
    where = f"{exc.filename}: " if exc.filename else ""
    return WslocError(f"{where}{exc.strerror or exc}")


def exit_status(command: str, summary: dict) -> int:
    """0 for a complete run in which at least one image succeeded; else 1, with one line on
    stderr saying why (every image failed, the results are incomplete, no images)."""
    images, ok = summary.get("images", 0), summary.get("ok", 0)
    if not summary.get("complete", False):
        why = "the results are incomplete (not every image has its line); continue with --resume"
    elif images == 0:
        why = "the dataset has no images to localize"
    elif ok == 0:
        why = f"no image was localized: all {images} failed (see errors.json)"
    else:
        return 0
    print(f"wsloc {command}: error: {why}", file=sys.stderr)
    return 1


def report(out_dir: str, summary: dict, dataset, evaluate: bool = True, quiet: bool = False) -> dict | None:
    """Print what a finished run found, score it when the dataset has ground truth."""
    from ..run import outputs

    n_err = summary.get("errors", 0)
    print(f"{summary.get('images', 0)} images, {n_err} errors -> {out_dir}")
    if summary.get("images_per_second"):
        print(f"{summary['images_per_second']:.2f} images/s")
    if n_err:
        print(f"errors: {os.path.join(out_dir, outputs.ERRORS)}")
    metrics = None
    if evaluate:
        metrics = score(out_dir, dataset)
    if metrics is None and not quiet and summary.get("images", 0) <= 20:
        _print_images(out_dir)
    return metrics


def _print_images(out_dir: str) -> None:
    from ..run import outputs

    rows = []
    for rec in outputs.iter_jsonl(os.path.join(out_dir, outputs.IMAGES)):
        if rec["status"] != "ok" or not rec["results"]:
            rows.append((rec.get("file_name") or str(rec["image_id"]), "error: " + rec.get("reason", ""), "", ""))
            continue
        r = rec["results"][0]
        rows.append((rec.get("file_name") or str(rec["image_id"]), str(r.get("name") or r["category_id"]),
                     f"{r['score']:.3f}", " ".join(f"{v:g}" for v in r["bbox"])))
    print(f"{'image':<24s} {'top-1 class':<24s} {'score':>6s}  box [x y w h]")
    for name, cls, score_, box in rows:
        print(f"{name[:24]:<24s} {cls[:24]:<24s} {score_:>6s}  {box}")


def has_ground_truth(dataset) -> bool:
    """Whether the dataset can be scored (see :func:`wsloc.evaluate.ground_truth.has_ground_truth`)."""
    from ..evaluate.ground_truth import has_ground_truth as _has

    return _has(dataset)


def processed_indices(out_dir: str) -> list[int]:
    """Dataset positions of the images a run processed (its ``images.jsonl`` lines, errors included)."""
    from ..run import outputs

    return sorted({int(rec["index"]) for rec in outputs.iter_jsonl(os.path.join(out_dir, outputs.IMAGES))})


def score(out_dir: str, dataset) -> dict | None:
    """Score ``results.json`` against the ground truth of the images the run processed (all of them,
    or the first ``--limit`` / the shards' share) with :mod:`wsloc.evaluate`; writes ``metrics.json``
    and prints the table. None (saying so in one line) when there is nothing to score with."""
    from ..evaluate import evaluate_results, format_table, to_jsonable
    from ..evaluate.ground_truth import GroundTruth
    from ..run import outputs

    if dataset is None:
        return None
    gt = GroundTruth(dataset, processed_indices(out_dir)) if has_ground_truth(dataset) else None
    if gt is None or not gt.has_boxes():
        print("(not scored: the input has no ground truth; the results are written all the same)")
        return None
    from ..run.saved_maps import has_saved_maps

    categories = "auto"  # a run with a class map: its mapped categories (the others are never predicted)
    try:
        cmap = outputs.read_json(os.path.join(out_dir, outputs.CONFIG))["localizer"].get("class_map")
    except (OSError, ValueError, KeyError, TypeError):
        cmap = None
    if cmap:
        categories = [e["id"] for e in cmap if e.get("imagenet_classes")]
    figures = to_jsonable(evaluate_results(os.path.join(out_dir, outputs.RESULTS), gt, categories=categories,
                                           maps_dir=out_dir if has_saved_maps(out_dir) else None))
    outputs.write_json(os.path.join(out_dir, outputs.METRICS), figures)
    print(format_table(figures))
    return figures
