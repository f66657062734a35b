"""Classifiers: the offline EfficientNet-Lite, torchvision models by name, or a user's module."""

from .classifier import Classifier, LayerInfo, describe_layers, layer_info, load_classifier, resolve_device
from .efficientnet_lite import Conv2dSame, EfficientNetLite, efficientnet_lite, same_padding
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

__all__ = ["Classifier", "Conv2dSame", "EfficientNetLite", "IMAGENET_MEAN", "IMAGENET_STD", "LayerInfo",
           "Preprocess", "describe_layers", "efficientnet_lite", "layer_info", "load_classifier", "resolve_device",
           "same_padding"]
