"""Saliency map -> object mask and box: GMM colour models seeded by saliency + GraphCut.

The method of Simonyan et al. (2014), section 6: foreground / background colour models
fitted on the most / least salient pixels, a GrabCut-style graph cut, and the box of the
largest connected component of the mask.

* :func:`segment` (image, maps ``[K, h, w]``, :class:`SegmentConfig`) -> list of :class:`Segmentation`;
  it is :func:`prepare_maps` (the maps on the working grid, :class:`PreparedMaps`) then
  :func:`segment_prepared` (the cuts), which the batch runner runs in two processes.
* :class:`SegmentConfig`: every option with its measured default.
* Building blocks: :mod:`.colour` (features, :class:`ColourModel`), :mod:`.graph`
  (:class:`PairwiseGraph`), :mod:`.seeds` (map resizing and seed pixels).
"""

from .colour import ColourModel, colour_features, fit_colour_model
from .config import SegmentConfig
from .graph import PairwiseGraph, pairwise_weights
from .graphcut import PreparedMaps, Segmentation, prepare_maps, segment, segment_prepared
from .seeds import seed_masks

__all__ = ["ColourModel", "PairwiseGraph", "PreparedMaps", "SegmentConfig", "Segmentation", "colour_features",
           "fit_colour_model", "pairwise_weights", "prepare_maps", "seed_masks", "segment", "segment_prepared"]
