"""Exceptions raised by wsloc.

Every error a user can cause with bad input is a :class:`WslocError` whose message
names the file (or the argument) and the problem, so that batch runs can record it
and go on with the next item.
"""

from __future__ import annotations

import os


class WslocError(Exception):
    """Base class of every error wsloc raises on purpose."""


class ImageLoadError(WslocError):
    """An image file is missing, empty, truncated, not an image, or too large.

    Attributes:
        path: the file that failed (str).
        reason: short description of the problem (str).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(WslocError):
    """An annotation file or dataset folder is malformed or unsafe (e.g. path traversal)."""


class ModelError(WslocError):
    """A classifier cannot be built or its weights cannot be loaded."""


class MethodError(WslocError):
    """A saliency/segmentation method cannot be applied to the given model or input."""
