"""The localizer: a classifier's saliency maps -> object masks and boxes for its top-k classes.

The pipeline, as in Simonyan et al. (2014), section 6::

    image --preprocess--> x --network: top-k classes + one saliency map each--> maps [K, h, w]
          --segment each map (colour models + GraphCut at the image's resolution)--> masks
          --largest connected component--> boxes

:class:`Localizer` is configured once (:class:`LocalizerConfig`, usually from a named preset
in :mod:`wsloc.presets`) and then maps images to :class:`ImageLocalization` results.
The two halves are separate so that batch runs can put them in different processes:

* :meth:`Localizer.network` (the model; main process, batched),
* :func:`localize_maps` (pure numpy; any process; only arrays and a ``SegmentConfig`` in).

Scores: ``ClassLocalization.score`` is the softmax probability of the class over all the
classifier's classes (comparable across images, which COCO-style ranking needs);
``logit`` is the raw pre-softmax score.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MethodError, ModelError
from .config import Config, SaliencyConfig, setting
from .labels import FOLDS
from .presets import preset
from .segment.config import SegmentConfig
from .models.inference import fold_batchnorm, inference_copy
from .saliency.cam import forward_only_maps
from .saliency.core import CPU_FORWARD_PIXELS
from .localization import ClassLocalization, ImageLocalization, coco_entry, localize_maps, round_sig  # noqa: F401  (re-exported)
from .localization import single_threaded

__all__ = ["ClassLocalization", "ImageLocalization", "Localizer", "LocalizerConfig", "NetworkOutput",
           "SaliencyConfig", "load_model", "localize_maps"]


# --------------------------------------------------------------------------- configuration

#: ``LocalizerConfig.targets`` values: the top-k classes, or the annotated categories (GT-known).
TARGETS = ("topk", "gt")

#: ``LocalizerConfig.amp`` values -> autocast dtype (None: no autocast).
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: ``LocalizerConfig.engine`` values.
ENGINES = ("eager", "onnx")


def _class_map(entries) -> list:
    from .labels import ClassMap

    return ClassMap.from_entries(entries, "LocalizerConfig.class_map").to_entries()


@dataclass(frozen=True)
class LocalizerConfig(Config):
    """Everything that decides a localizer's output, plus where and how it runs.

    ``LocalizerConfig()`` takes ``model``, ``saliency``, ``segment`` and ``top_k`` from the preset
    :data:`wsloc.presets.DEFAULT_PRESET`; :meth:`from_preset` from another. Change fields with
    :meth:`with_` (key paths: ``cfg.with_(top_k=3, **{"segment.q_fg": 50.0})``, what
    ``wsloc localize --set`` does); every value is checked when the object is made
    (:class:`wsloc.config.ConfigError` naming the field). ``to_dict`` / ``from_dict``: ``config.json``.

    Attributes:
        model: classifier: ``"efficientnet_lite0"`` (the default preset's), an ensemble of Lites such as
            ``"efficientnet_lite0+efficientnet_lite2"`` (the ``gradcam_ensemble`` preset's), a torchvision
            model name, or ``"package.module:factory"`` where ``factory()`` returns a :class:`wsloc.Classifier`.
        weights: weights for named models (``"DEFAULT"``, an enum name, a file, or None: random).
        device: "cpu", "cuda", "cuda:N" or "auto".
        saliency: the maps (:class:`wsloc.config.SaliencyConfig`: method, its options, the
            scales fused, flip).
        segment: the segmenter's options (:class:`wsloc.segment.SegmentConfig`).
        top_k: number of classes localized per image (the classifier's top-k).
        batch_size: images per network batch (8: as fast per image as 16 on a 2-core CPU, half
            the memory for the autograd graph).
        channels_last: run the network in channels-last memory format (Lite0, 1 CPU thread,
            5 gradient maps: 204 instead of 241 ms per image, the same maps).
        fold_batchnorm: run the saliency passes on a copy of the network whose eval-mode
            BatchNorm layers are folded into the convolutions before them (the same function
            up to float rounding, checked on a probe batch;
            :func:`wsloc.models.inference.fold_batchnorm`). None (the default): fold exactly
            when the maps need only the forward pass (CAM; Grad-CAM at a GAP + linear
            model's last feature map, the default preset on Lite0), where the copy also
            computes its activations in place (:func:`wsloc.models.inference.inference_copy`)
            and the 224 + 448 px passes run 1.7x faster on a CPU (maps equal to 1e-5 of their
            maximum). True: fold for every method; for the gradient methods it saves ~30% of
            autograd's backward but moves the maps by up to 3% of their maximum (float rounding
            across ReLU6 kinks), and their tape (:mod:`wsloc.saliency.tape`) folds BN in its
            backward anyway. False: never.
        amp: run the network under ``torch.autocast`` in this dtype: None (float32, the
            default), "bf16" or "fp16" (mixed precision, for GPUs; maps still come back as
            float32, but they are not the float32 maps: a result field).
        engine: what runs the network: "eager" (PyTorch) or "onnx" (ONNX Runtime on the CPU, for
            the forward-only maps: ``cam``, and ``grad_cam`` on a GAP + linear model such as
            Lite0; :mod:`wsloc.onnx_engine`; needs ``pip install 'wsloc[onnx]'``; the maps equal
            eager's up to float rounding).
        class_map: None (results in the classifier's classes), or the dataset's categories as
            ``[{"id", "name", "imagenet_classes": [class indices]}, ...]`` (:mod:`wsloc.labels`):
            the logits are folded into the categories, the top-k are categories, each map is
            its category's best-scoring member class's, results carry the category ids.
        class_fold: how member logits fold into a category's: ``"max"`` (default) or
            ``"logsumexp"`` (see :mod:`wsloc.labels`).
        targets: ``"topk"`` (default: the top-k classes or categories) or ``"gt"`` (the
            categories annotated in each image, given to :meth:`Localizer.network`; GT-known).
    """

    model: str = setting(factory=lambda: preset().model, kind="text")
    weights: str | None = setting("DEFAULT", kind="text", optional=True)
    device: str = setting("auto", kind="text")
    saliency: SaliencyConfig = setting(factory=lambda: preset().saliency, nested=SaliencyConfig)
    segment: SegmentConfig = setting(factory=lambda: preset().segment, nested=SegmentConfig)
    top_k: int = setting(factory=lambda: preset().top_k, kind="integer", low=1)
    batch_size: int = setting(8, kind="integer", low=1)
    channels_last: bool = setting(True)
    fold_batchnorm: bool | None = setting(None, kind="bool", optional=True)
    amp: str | None = setting(None, choices=tuple(AMP_DTYPES))
    engine: str = setting("eager", choices=ENGINES)
    class_map: list | None = setting(None, optional=True, convert=_class_map)
    class_fold: str = setting("max", choices=FOLDS)
    targets: str = setting("topk", choices=TARGETS)

    @classmethod
    def from_preset(cls, name: str | None = None, **changes) -> LocalizerConfig:
        """The preset ``name`` (None: the default) with some key paths changed (as :meth:`with_`; a
        dict for ``segment`` or ``saliency`` is merged key by key)."""
        p = preset(name)
        return cls(model=p.model, saliency=p.saliency, segment=p.segment, top_k=p.top_k).with_(**changes)

    def result_fields(self) -> dict:
        """What decides the results, serialised (``config.json``'s ``localizer``; ``--resume``
        compares it): every field but ``device`` (the batch size stays: a batch is the unit of
        computation, and resumed runs repeat the same batches to give the same bytes)."""
        d = self.to_dict()
        d.pop("device")
        return d


# --------------------------------------------------------------------------- results

# --------------------------------------------------------------------------- model

def load_model(spec, device="auto", weights="DEFAULT"):
    """A :class:`wsloc.Classifier` from a name, a ``"package.module:factory"`` path, or a Classifier.

    ``factory()`` must return a :class:`wsloc.Classifier` (e.g. from
    ``wsloc.load_classifier(my_module, preprocess=Preprocess((32, 32)))``); it is moved to ``device``.
    """
    from .models import Classifier, load_classifier, resolve_device

    if isinstance(spec, Classifier):
        clf = spec
    elif isinstance(spec, str) and ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"--model {spec!r}: cannot import {attr!r} from {module_name!r} ({exc})") from None
        clf = factory()
        if not isinstance(clf, Classifier):
            raise ModelError(f"--model {spec!r}: the factory returned {type(clf).__name__}, not a wsloc.Classifier")
    else:
        return load_classifier(spec, device=device, weights=weights)
    dev = resolve_device(device)
    if clf.device != dev:
        clf.model.to(dev)
        clf = dataclasses.replace(clf, device=dev)
    return clf


def fit_scales(config: LocalizerConfig, classifier) -> LocalizerConfig:
    """``config`` with only the scale 1 when the classifier takes a fixed input size (ViT, MaxViT) and the
    configuration fuses other scales (the default preset's 2x); says so once on the ``wsloc`` logger.
    The returned configuration is what runs (and what a run folder records)."""
    h, w = classifier.input_size
    scales = config.saliency.scales
    bad = [s for s in scales if s != 1.0
           and not classifier.accepts_size((max(1, round(h * s)), max(1, round(w * s))))]
    if not bad:
        return config
    import logging

    kept = tuple(s for s in scales if s not in bad) or (1.0,)
    logging.getLogger("wsloc").warning(
        "%s takes a fixed %dx%d input: fusing the maps of scales %s only, not %s",
        classifier.name, h, w, ", ".join(f"{s:g}" for s in kept), ", ".join(f"{s:g}" for s in bad))
    weights = config.saliency.weights
    if weights is not None:  # the kept scales' weights; one scale left: nothing to fuse
        weights = tuple(wt for s, wt in zip(scales, weights) if s not in bad) if len(kept) > 1 else None
    return config.with_(**{"saliency.scales": kept, "saliency.weights": weights})


def input_preprocess(config: LocalizerConfig, classifier):
    """The :class:`wsloc.Preprocess` that makes the network stage's input: the classifier's own, or with
    ``saliency.resize_from="photo"`` the same at the largest scale's size (the smaller scales, the
    classification pass among them, are shrunk from it: :func:`wsloc.saliency.multiscale`'s ``base_size``)."""
    sal = config.saliency
    if sal.resize_from != "photo" or max(sal.scales) == 1.0:
        return classifier.preprocess
    h, w = classifier.input_size
    top = max(sal.scales)
    return dataclasses.replace(classifier.preprocess, size=(max(1, round(h * top)), max(1, round(w * top))))


# --------------------------------------------------------------------------- the two halves

@dataclass
class NetworkOutput:
    """What the network half gives for a batch of N images (all numpy, on the CPU).

    Attributes:
        maps: float32 ``[N, K, h, w]`` saliency maps of the top-k classes.
        classes: int64 ``[N, K]`` class indices, best first.
        logits: float32 ``[N, K]`` their logits.
        probs: float32 ``[N, K]`` their softmax probabilities (over all classes).
        seconds: wall time of the network step.
        counts: None (every image has K), or int64 ``[N]``: image i's first ``counts[i]``
            entries are real, the rest padding (``targets="gt"``: images differ in K).

    With a class map, ``classes`` are dataset category ids and ``logits`` / ``probs`` the
    folded ones (:mod:`wsloc.labels`).
    """

    maps: np.ndarray
    classes: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    seconds: float = 0.0
    counts: np.ndarray | None = None

    def image(self, i: int) -> tuple:
        """``(maps, classes, logits, probs)`` of image ``i`` without its padding."""
        k = self.classes.shape[1] if self.counts is None else int(self.counts[i])
        return self.maps[i][:k], self.classes[i][:k], self.logits[i][:k], self.probs[i][:k]


class Localizer:
    """A classifier turned into an object localizer (see the module docstring).

    Args:
        config: a :class:`LocalizerConfig`; default: the preset ``preset``.
        classifier: an already loaded :class:`wsloc.Classifier` to use instead of ``config.model``
            (``config.model`` then records its name).
        preset: name of a preset in :data:`wsloc.presets.PRESETS` (None: the default), when no
            ``config`` is given.
        **changes: key paths of :class:`LocalizerConfig` changed as by :meth:`LocalizerConfig.with_`
            (``Localizer(top_k=3, device="cuda")``, ``**{"saliency.scales": (1.0, 1.5)}``).

    Example::

        loc = Localizer(preset="simonyan2014", device="cpu")
        result = loc.localize(image)            # uint8 [H, W, 3] -> ImageLocalization
        for c in result.classes: print(c.rank, c.name, c.score, c.box)

    With ``channels_last`` and no BatchNorm folded, the classifier's module is converted in
    place to channels-last (the same function).
    """

    @property
    def segment_config(self):
        """The :class:`wsloc.segment.SegmentConfig` of ``config`` (what the segmentation processes receive)."""
        return self.config.segment

    def __init__(self, config: LocalizerConfig | None = None, *, classifier=None, preset: str | None = None,
                 **changes):
        if config is not None and preset is not None:
            raise MethodError("Localizer: give a config or a preset, not both")
        config = (LocalizerConfig.from_preset(preset) if config is None else config).with_(**changes)
        self.classifier = load_model(classifier if classifier is not None else config.model,
                                     config.device, config.weights)
        if classifier is not None and not isinstance(classifier, str):  # record what actually runs
            config = dataclasses.replace(config, model=str(self.classifier.name))
        config = fit_scales(config, self.classifier)
        self.config = config
        self._preprocess = input_preprocess(config, self.classifier)
        self.folded = 0
        net = self.classifier
        forward_only = forward_only_maps(net, config.saliency.method, config.saliency.options)
        self.max_pixels = None  # input pixels per network call of the maps (None: config.batch_size images)
        if config.fold_batchnorm or (config.fold_batchnorm is None and forward_only and config.engine == "eager"):
            make = inference_copy if forward_only else fold_batchnorm
            model, self.folded = make(net.model, net.input_size, net.device)
            net = dataclasses.replace(net, model=model)
            if forward_only and net.device.type == "cpu":  # memory-bound there: small chunks run faster
                self.max_pixels = CPU_FORWARD_PIXELS
        if config.channels_last:
            net.model.to(memory_format=torch.channels_last)
        if config.engine == "onnx":
            from .onnx_engine import onnx_classifier

            net = onnx_classifier(net, config.saliency.method, config.saliency.options)
        self._net = net  # the network the saliency passes run on (the classifier itself if nothing changed)
        self._features_model = self.classifier.model  # saliency.refine's forward pass (hooked: one per thread)
        if config.saliency.refine != "none":
            from .saliency.refine import feature_layer

            self._refine_layer = feature_layer(self._features_model, config.saliency.refine_layer)  # ensemble: member 0's
        self.top_k = min(config.top_k, self.classifier.num_classes)
        names = self.classifier.class_names
        self.class_names = list(names) if names is not None else None
        self.class_map = None
        if config.class_map is not None:
            from .labels import ClassMap

            self.class_map = ClassMap.from_entries(config.class_map, "class map")
            self.class_map.check(self.classifier.num_classes)
            self.top_k = min(config.top_k, len(self.class_map.ids))
            self._category_names = dict(zip(self.class_map.ids, self.class_map.names))

    def replica(self) -> Localizer:
        """A localizer that shares this one's configuration and classifier but runs its maps on
        its own copy of the network, for another thread of the same run (the saliency methods
        hook the network's modules, so two threads must not share one)."""
        twin = copy.copy(self)
        twin._net = dataclasses.replace(self._net, model=copy.deepcopy(self._net.model))
        if self.config.saliency.refine != "none":
            twin._features_model = copy.deepcopy(self.classifier.model)
        return twin

    @property
    def preprocess(self):
        """The :class:`wsloc.Preprocess` of :meth:`network`'s input (uint8 image -> float32 [3, h, w]): the
        classifier's, or at the largest scale's size with ``saliency.resize_from="photo"``."""
        return self._preprocess

    def _base_size(self):
        """The classifier's input size when the scales are made from the photo (``resize_from="photo"``), else None."""
        return tuple(self.classifier.input_size) if self.config.saliency.resize_from == "photo" else None

    def _classifier_input(self, x: torch.Tensor) -> torch.Tensor:
        """The classification pass's input: ``x``, or ``x`` shrunk to the classifier's size (``resize_from="photo"``)."""
        from .saliency.multiscale import scaled_input

        base = self._base_size()
        return x if base is None else scaled_input(x, 1.0, base, "photo")

    def names_of(self, classes) -> list[str] | None:
        """Names of classifier classes (of dataset categories with a class map), or None."""
        if self.class_map is not None:
            return [self._category_names[int(c)] for c in classes]
        if self.class_names is None:
            return None
        return [self.class_names[int(c)] for c in classes]

    def network(self, x: torch.Tensor, wanted=None) -> NetworkOutput:
        """Top-k classes and their saliency maps for a preprocessed batch ``[N, 3, h, w]``.

        The saliency method does one forward pass for the batch and its backward passes for
        the K classes (see :func:`wsloc.saliency.attribute`); the parameters are frozen, so
        only input gradients are computed, through the BN-folded channels-last copy.

        Args:
            x: the batch.
            wanted: None (the top-k), or per image a list of the classes (with a class map:
                category ids) to explain, e.g. the annotated ones (``targets="gt"``); ids that
                are not mapped are left out; the output then has ``counts``.
        """
        if self.class_map is not None or wanted is not None:
            return self._network_chosen(x, wanted)
        t0 = time.perf_counter()
        dev = self.classifier.device
        sal = self.saliency(x)
        targets = sal.targets.detach().to(torch.int64)
        if sal.logits is not None:
            all_logits = sal.logits.detach().float()
        else:
            with torch.no_grad():
                all_logits = self._net.model(self._classifier_input(x.to(dev))).float()
        targets = targets.to(all_logits.device)
        logits = all_logits.gather(1, targets)
        probs = torch.softmax(all_logits, dim=1).gather(1, targets)
        out = NetworkOutput(maps=self._refined(x, self._class_maps(sal.maps, probs)),
                            classes=targets.cpu().numpy(),
                            logits=logits.cpu().numpy(), probs=probs.cpu().numpy())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.seconds = time.perf_counter() - t0
        return out

    def _network_chosen(self, x: torch.Tensor, wanted) -> NetworkOutput:
        """:meth:`network` with a class map and/or given classes: logits first (one forward
        pass without gradients), the classes chosen from them, then their maps."""
        t0 = time.perf_counter()
        dev = self.classifier.device
        with torch.no_grad():
            xs = self._classifier_input(x.to(dev, non_blocking=True))
            if self.config.channels_last:
                xs = xs.contiguous(memory_format=torch.channels_last)
            amp = AMP_DTYPES[self.config.amp]
            with torch.autocast(xs.device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
                all_logits = self._net.model(xs).float()
        n, n_cls = all_logits.shape
        cmap = self.class_map
        if cmap is not None:
            from .labels import fold_logits

            scores, probs, best = fold_logits(all_logits, cmap.members, self.config.class_fold)
            ids = torch.as_tensor(cmap.ids, dtype=torch.int64, device=all_logits.device)
        else:
            scores, probs = all_logits, torch.softmax(all_logits, dim=1)
            best = ids = torch.arange(n_cls, device=all_logits.device).expand(n, n_cls)
            ids = ids[0]
        counts = None
        if wanted is None:
            pos = scores.topk(self.top_k, dim=1).indices  # [N, K], best first
        else:
            if len(wanted) != n:
                raise MethodError(f"wanted: {len(wanted)} lists for {n} images")
            rows = []
            for w in wanted:
                if cmap is not None:
                    p = [cmap.position(c) for c in w]
                    rows.append([v for v in dict.fromkeys(p) if v is not None])
                else:
                    bad = [int(c) for c in w if not 0 <= int(c) < n_cls]
                    if bad:
                        raise MethodError(f"class {bad[0]} is not one of the classifier's {n_cls} classes; "
                                          "give a class map (--class-map FILE) to localize a dataset's categories")
                    rows.append(list(dict.fromkeys(int(c) for c in w)))
            k = max(1, max((len(r) for r in rows), default=0))
            counts = np.array([len(r) for r in rows], np.int64)
            pos = torch.tensor([r + [0] * (k - len(r)) for r in rows], dtype=torch.int64, device=all_logits.device)
        targets = best.gather(1, pos)
        sal = self.saliency(x, targets)
        maps = sal.maps if wanted is not None else self._class_maps(sal.maps, probs.gather(1, pos))
        out = NetworkOutput(maps=self._refined(x, maps), classes=ids[pos].cpu().numpy(),
                            logits=scores.gather(1, pos).cpu().numpy(), probs=probs.gather(1, pos).cpu().numpy(),
                            counts=counts)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        out.seconds = time.perf_counter() - t0
        return out

    def _class_maps(self, maps: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The top-k maps ``[N, K, H, W]`` as ``saliency.class_fusion`` says (probs ``[N, K]``): fused, or
        the maps themselves (``"none"``)."""
        if self.config.saliency.class_fusion == "probability":
            from .saliency.multiscale import fuse_classes

            return fuse_classes(maps.detach(), probs)
        return maps

    def _refined(self, x: torch.Tensor, maps: torch.Tensor) -> np.ndarray:
        """float32 numpy ``[N, K, H, W]``: the maps, or with ``saliency.refine="features"`` each carried into
        the features of ``saliency.refine_layer`` on the largest scale's input (one forward pass without
        gradients on the classifier's module, this thread's copy in a :meth:`replica`:
        :func:`wsloc.saliency.refine.refine_maps`)."""
        sal = self.config.saliency
        maps = maps.detach().float().cpu().numpy()
        if sal.refine == "none":
            return maps
        from .saliency.multiscale import scaled_input
        from .saliency.refine import layer_features, refine_maps

        xs = scaled_input(x.to(self.classifier.device), max(sal.scales), self._base_size(), sal.resize_from)
        feats = layer_features(self._features_model, xs, self._refine_layer)  # MethodError names a bad layer
        return refine_maps(feats, maps, map_power=sal.refine_power)

    def saliency(self, x: torch.Tensor, targets=None):
        """The configured saliency maps (method, options, scales, flip) of a preprocessed batch.

        Args:
            x: float32 ``[N, 3, h, w]`` (see :attr:`preprocess`).
            targets: None (the top-k classes) or int ``[N]`` / ``[N, K]`` classes to explain.

        Returns:
            :class:`wsloc.saliency.SaliencyMaps` on the model's device.
        """
        from .saliency import multiscale

        x = x.to(self.classifier.device, non_blocking=True)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = AMP_DTYPES[self.config.amp]
        with torch.autocast(x.device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
            sal = self.config.saliency
            return multiscale(self._net, x, targets, sal.method, self.top_k, scales=sal.scales, flip=sal.flip,
                              max_pixels=self.max_pixels, base_size=self._base_size(), fusion=sal.fusion,
                              weights=sal.weights, **sal.options)

    def localize_batch(self, images: list[np.ndarray], keep_maps: bool = True, wanted=None) -> list[ImageLocalization]:
        """Localize a list of uint8 ``[H, W, 3]`` RGB images as one network batch (``wanted``: as
        for :meth:`network`)."""
        images = [_as_image(im) for im in images]
        if not images:
            return []
        net = self.network(self.preprocess.batch(images), wanted)
        with single_threaded():  # small GMM fits: thread start-up costs more than it saves
            return [localize_maps(im, *net.image(i), self.segment_config, self.names_of(net.image(i)[1]),
                                  keep_maps=keep_maps)
                    for i, im in enumerate(images)]

    def localize(self, images, keep_maps: bool = True):
        """Localize one image or many.

        Args:
            images: a uint8 ``[H, W, 3]`` RGB array or an image path (-> one
                :class:`ImageLocalization`), or a list of them (-> a list, in order,
                processed in batches of ``config.batch_size``).
            keep_maps: keep the saliency maps in the results.
        """
        if isinstance(images, (np.ndarray, str)) or hasattr(images, "__fspath__"):
            return self.localize_batch([images], keep_maps)[0]
        images = list(images)
        out: list[ImageLocalization] = []
        for i in range(0, len(images), self.config.batch_size):
            out.extend(self.localize_batch(images[i:i + self.config.batch_size], keep_maps))
        return out


def _as_image(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        from .models.preprocess import check_image

        return check_image(image)  # MethodError for another dtype / shape or an empty image
    from .io import load_image

    return load_image(image)
