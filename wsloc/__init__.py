"""wsloc: weakly supervised object localization and segmentation from an image classifier."""

from .errors import DatasetError, ImageLoadError, MethodError, ModelError, WslocError
from .models import Classifier, Preprocess, load_classifier

__version__ = "0.1.0"

__all__ = ["Classifier", "DatasetError", "ImageLoadError", "MethodError", "ModelError", "Preprocess",
           "WslocError", "load_classifier", "__version__"]
