"""Where the project's own files are: the embedded demo set in ``data/demo``."""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo_dir() -> str:
    """Folder of the demo set (``annotations.json`` + ``images/``) shipped in the repository."""
    return os.path.join(ROOT, "data", "demo")


def demo_annotations() -> str:
    return os.path.join(demo_dir(), "annotations.json")


def demo_images_dir() -> str:
    return os.path.join(demo_dir(), "images")
