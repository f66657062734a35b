"""Subcommands of the ``wsloc`` command line, one module each (see :mod:`wsloc.cli`)."""

from __future__ import annotations

import argparse
import sys


def add_model_options(parser: argparse.ArgumentParser, preset_model: bool = False) -> None:
    """Options shared by every command that runs a classifier (``preset_model``: ``--model`` defaults to
    None, the preset's model, as ``wsloc localize`` reads it; else to efficientnet_lite0)."""
    default = "%(default)s"
    if preset_model:
        from ..presets import PRESETS

        default = "the preset's: " + ", ".join(f"{p.model} for {n}" for n, p in sorted(PRESETS.items()))
    parser.add_argument("--model", default=None if preset_model else "efficientnet_lite0",
                        help="efficientnet_lite0 (offline weights; lite1, lite2 with their extras), an ensemble such as "
                             "efficientnet_lite0+efficientnet_lite1 (logits averaged), or a torchvision model name "
                             f"(default: {default})")
    parser.add_argument("--weights", default="DEFAULT",
                        help="DEFAULT (the model's pretrained weights), a torchvision enum name, a local state-dict "
                             "file, or 'none' for random (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")


def say_loading(args: argparse.Namespace, device=None, model: str | None = None) -> None:
    """One line on stderr while the model loads (it takes seconds), unless ``--quiet`` (``model``: the
    name loaded, default ``args.model``)."""
    if not getattr(args, "quiet", False):
        from ..models import resolve_device

        print(f"wsloc {args.command}: loading {model or args.model} (weights {args.weights}) on "
              f"{resolve_device(device or args.device)} ...", file=sys.stderr, flush=True)


def classifier_from_args(args: argparse.Namespace):
    from ..models import load_classifier

    say_loading(args)
    weights = None if str(args.weights).lower() == "none" else args.weights
    return load_classifier(args.model, device=args.device, weights=weights)
