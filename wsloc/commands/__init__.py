"""Subcommands of the ``wsloc`` command line, one module each (see :mod:`wsloc.cli`)."""

from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs a classifier."""
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="efficientnet_lite0 (offline weights) or a torchvision model name (default: %(default)s)")
    parser.add_argument("--weights", default="DEFAULT",
                        help="torchvision weights: DEFAULT, an enum name, a local .pth file, or 'none' for random")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")


def classifier_from_args(args: argparse.Namespace):
    from ..models import load_classifier

    weights = None if str(args.weights).lower() == "none" else args.weights
    return load_classifier(args.model, device=args.device, weights=weights)
