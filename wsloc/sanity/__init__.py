"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity checks for saliency maps").

* :mod:`.randomize`: the blocks of a model and seeded cascading / independent re-initialisation;
* :mod:`.similarity`: Spearman (absolute and signed), SSIM and HOG similarity of two maps;
* :mod:`.check`: the randomization test of one saliency method on a set of images
  (:func:`sanity_check` -> :class:`SanityResult`), with GT-known box accuracy per step;
* :mod:`.report`: JSON/CSV tables, similarity curves and map grids;
* :mod:`.data_randomization`: the data-randomization test on synthetic shapes.
"""

from .check import SanityResult, load_batch, map_box, sanity_check
from .randomize import (
    Block,
    RandomizedModel,
    block_list,
    cascading_randomization,
    independent_randomization,
    randomize_blocks,
    reinitialize_,
)
from .similarity import METRICS, compare_maps, hog_correlation, spearman, ssim

__all__ = [
    "Block", "RandomizedModel", "block_list", "cascading_randomization", "independent_randomization",
    "randomize_blocks", "reinitialize_", "METRICS", "compare_maps", "spearman", "ssim", "hog_correlation",
    "SanityResult", "sanity_check", "load_batch", "map_box",
]
