"""``wsloc localize [DATASET] --out DIR``: localize and segment the objects of a whole dataset.

Writes the run folder described in :mod:`wsloc.run.outputs`, scores it with
:mod:`wsloc.evaluate` when the dataset has ground truth, and prints the table. Works as
one process, as one shard of a job array (``--shard I/N``, then ``wsloc merge DIR``), or
under ``torchrun --nproc_per_node P`` (the ranks split the dataset; rank 0 merges).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import sys

from ..errors import WslocError
from . import add_model_options


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(KEY, VALUE parsed as JSON when it can be, else the string)``."""
    from ..config import ConfigError, parse_assignment

    try:
        return parse_assignment(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub) -> None:
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
    add_config_options(p)
    p.add_argument("--workers", type=int, help="decoding processes (default: from the machine)")
    p.add_argument("--segment-workers", type=int, help="segmentation processes, 0 = in the main process "
                                                       "(default: from the machine)")
    p.add_argument("--threads", type=int, help="torch threads of the network (default: from the machine)")
    p.add_argument("--lanes", type=int, help="threads that each run the network, one torch thread each, on a part "
                   "of every batch (default: from the machine; 1: none)")
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
    p.add_argument("--save-masks", action="store_true",
                   help="also write each result's mask as OUT/masks/<image_id>_<category_id>.png (0/255 greyscale "
                        "at the image's size; results.json already holds the same masks as COCO RLE, these are "
                        "for other tools; wsloc evaluate --masks OUT scores them; see wsloc/run/saved_masks.py)")
    p.add_argument("--max-pixels", type=int, default=50_000_000,
                   help="refuse (record as errors) images with more pixels (default: %(default)s)")
    p.add_argument("--min-side", type=int, default=8,
                   help="refuse (record as errors) images with a shorter side (default: %(default)s)")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="do not score the results")
    p.add_argument("--report", action="store_true",
                   help="also write OUT/report.html (figures, timings, overlay gallery; see `wsloc report`)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, warnings only")
    p.set_defaults(run=run)


def add_config_options(p) -> None:
    """The options that make the :class:`wsloc.localizer.LocalizerConfig` (:func:`config_from_args`):
    ``--preset``, the model, the named shorthands of :data:`OPTION_PATHS` and ``--set``."""
    from ..presets import DEFAULT_PRESET, PRESETS
    from ..saliency.methods import METHODS
    from ..segment.config import option_names

    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help=f"named configuration (default: {DEFAULT_PRESET})")
    add_model_options(p, preset_model=True)
    preset_methods = ", ".join(f"{PRESETS[n].saliency.method} for {n}" for n in sorted(PRESETS))
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
    p.add_argument("--set", action="append", type=_key_value, default=[], metavar="KEY.PATH=VALUE", dest="set",
                   help="set any field of wsloc.localizer.LocalizerConfig by its key path, e.g. segment.q_fg=50, "
                        "saliency.scales=[1,2], saliency.options.shortcut=false, top_k=3 (repeatable, applied after "
                        "the named options, which are shorthands for the same paths; VALUE parsed as JSON when it "
                        "can be); keys: model, weights, device, saliency.{method,options,scales,flip}, "
                        "segment.<SegmentConfig option>, top_k, batch_size, channels_last, fold_batchnorm, amp, "
                        "engine, class_fold, targets")
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


#: Named options of ``wsloc localize`` -> the LocalizerConfig key path each one sets (None: not given).
OPTION_PATHS = (("method", "saliency.method"), ("scales", "saliency.scales"), ("flip", "saliency.flip"),
                ("top_k", "top_k"), ("batch_size", "batch_size"), ("engine", "engine"),
                ("class_fold", "class_fold"), ("targets", "targets"))


def config_changes(args, device: str | None = None) -> list[tuple[str, object]]:
    """The ``(key path, value)`` changes the command line makes to the preset, in order: model, weights
    and device, the named options (:data:`OPTION_PATHS`, ``--method-option K=V`` -> ``saliency.options.K``,
    ``--segment-option K=V`` -> ``segment.K``), then every ``--set``."""
    changes = [("model", args.model)] if args.model is not None else []  # None: the preset's
    changes += [("weights", None if str(args.weights).lower() == "none" else args.weights),
               ("device", device or args.device)]
    changes += [(path, getattr(args, name)) for name, path in OPTION_PATHS if getattr(args, name, None) is not None]
    if getattr(args, "channels_last", True) is False:
        changes.append(("channels_last", False))
    changes += [(f"saliency.options.{k}", v) for k, v in getattr(args, "method_option", [])]
    changes += [(f"segment.{k}", v) for k, v in getattr(args, "segment_option", [])]
    return changes + list(getattr(args, "set", []))


def config_from_args(args, device: str | None = None):
    """The :class:`wsloc.localizer.LocalizerConfig` of the command line: ``--preset`` with
    :func:`config_changes` applied (one ConfigError line for a bad value or an unknown key)."""
    from ..config import apply
    from ..localizer import LocalizerConfig

    return apply(LocalizerConfig.from_preset(getattr(args, "preset", None)), config_changes(args, device))


def localizer_from_args(args, device: str | None = None, dataset=None, config=None):
    """The :class:`wsloc.localizer.Localizer` of the command line (``config``: :func:`config_from_args`'s,
    made here when None), with the class map of ``--class-map`` / the dataset (:func:`class_map_from_args`)."""
    from ..localizer import Localizer
    from . import say_loading

    config = config_from_args(args, device) if config is None else config  # bad options fail before the model loads
    cmap = class_map_from_args(args, dataset)
    if cmap is not None:
        config = config.with_(class_map=cmap.to_entries())
        logging.getLogger("wsloc").info("%s", cmap.describe(config.class_fold))
    say_loading(args, config.device, config.model)
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
                      lanes=args.lanes,
                      overlays=args.overlays, max_pixels=args.max_pixels, min_side=args.min_side,
                      limit=args.limit, progress=not args.quiet and rank0, save_maps=args.save_maps,
                      save_masks=args.save_masks)
    opts.validate()  # before any folder or model
    config = config_from_args(args, device)  # a bad option or --set key: one line, before any folder
    out_dir = opts.out_dir = os.path.abspath(args.out or _default_out(args))
    lock = None
    try:
        run_dir = sharding.shard_dir(out_dir, *shard)
        resume.check_split(out_dir, shard[1])
        lock = RunLock(run_dir).acquire()  # a second run on this folder stops here, at once
        resume.refuse_existing(run_dir, args.resume, args.overwrite)  # fail fast
        dataset, info = _open(args)
        if config.targets == "gt" and not has_ground_truth(dataset):
            raise WslocError("--targets gt: the input has no annotations to take the categories from")
        localizer = localizer_from_args(args, device, dataset, config)
        asked = [v for path, v in config_changes(args) if path == "top_k"]  # given, not the preset's
        if asked and localizer.top_k < asked[-1]:
            what = "the class map has only {} mapped categories" if localizer.class_map is not None \
                else "the classifier has only {} classes"
            raise WslocError(f"--top-k {asked[-1]}: {what.format(localizer.top_k)}")
        if localizer.top_k < localizer.config.top_k:
            log.warning("top-k %d of the preset lowered to the %d %s", localizer.config.top_k, localizer.top_k,
                        "mapped categories" if localizer.class_map is not None else "classes of the classifier")
        if dist_env:  # each rank plans its workers (wsloc.run.policy) on its share of the machine's cores
            from ..run.policy import cpu_count

            opts.cpus = cpu_count(share=dist_env.local_world_size)
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
    figures = to_jsonable(evaluate_results(os.path.join(out_dir, outputs.RESULTS), gt, iou_convention="devkit",
                                           categories=categories,
                                           maps_dir=out_dir if has_saved_maps(out_dir) else None))
    outputs.write_json(os.path.join(out_dir, outputs.METRICS), figures)
    print(format_table(figures))
    return figures
