"""wsloc: weakly supervised object localization and segmentation from an image classifier.

``import wsloc`` is light (no torch until used); the classifier API (``wsloc.load_classifier``, ...), the subpackages (``wsloc.io``, ``wsloc.saliency``,
``wsloc.segment``, ``wsloc.evaluate``, ...) and ``wsloc.Localizer`` / ``wsloc.LocalizerConfig``
are imported on first attribute access, so ``wsloc.io.load_image(...)`` works after a bare
``import wsloc`` without paying for every subpackage up front.
"""

from __future__ import annotations

import importlib

from .errors import DatasetError, ImageLoadError, MethodError, ModelError, WslocError

__version__ = "0.1.0"

#: Subpackages and modules reachable as attributes of ``wsloc`` (imported when first used).
SUBMODULES = ("boxes", "commands", "errors", "evaluate", "imagenet", "io", "localizer", "models", "paths",
              "presets", "run", "saliency", "sanity", "segment", "visualize_class", "viz")
#: Names re-exported lazily from a submodule: name -> module.
_LAZY = {"Classifier": "models", "Preprocess": "models", "load_classifier": "models",
         "Localizer": "localizer", "LocalizerConfig": "localizer", "attribute": "saliency"}

__all__ = ["Classifier", "DatasetError", "ImageLoadError", "Localizer", "LocalizerConfig", "MethodError",
           "ModelError", "Preprocess", "WslocError", "attribute", "load_classifier", "__version__"]


def __getattr__(name: str):
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES) | set(_LAZY))
