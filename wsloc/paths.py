"""Where the package's own files are: the embedded demo set ``wsloc/data/demo``.

The demo set is package data (``annotations.json`` + ``images/*.jpg``), found through
:mod:`importlib.resources`, so the defaults of ``wsloc localize`` / ``classify`` / ``sanity``
work from an installed wheel as well as from a source checkout.
"""

from __future__ import annotations

import os
from importlib import resources


def demo_dir() -> str:
    """Folder of the demo set (``annotations.json`` + ``images/``) shipped inside the package."""
    # A regular (unzipped) install or checkout: the Traversable is a real folder.
    return os.fspath(resources.files("wsloc").joinpath("data", "demo"))


def demo_annotations() -> str:
    """The demo set's COCO annotation file (0-based ImageNet class ids)."""
    return os.path.join(demo_dir(), "annotations.json")


def demo_images_dir() -> str:
    """The demo set's image folder (six JPEG photos from scikit-image)."""
    return os.path.join(demo_dir(), "images")


def demo_image(name: str = "chelsea") -> str:
    """Path of one demo photo: ``chelsea`` (a tabby cat), ``coffee``, ``rocket``, ``astronaut``,
    ``camera`` or ``motorcycle``."""
    return os.path.join(demo_images_dir(), f"{name}.jpg")
