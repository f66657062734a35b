"""Evaluation of weakly supervised localization, each metric exact to its published definition.

* ILSVRC CLS-LOC top-1 / top-5 error, classification error, GT-known accuracy
  (:mod:`~wsloc.evaluate.ilsvrc`), with box IoU in the devkit's (+1, default) or the
  continuous convention (:mod:`~wsloc.evaluate.iou`).
* MaxBoxAcc / MaxBoxAccV2 (:mod:`~wsloc.evaluate.maxboxacc`), PxAP and mask IoU
  (:mod:`~wsloc.evaluate.masks`), pointing game (:mod:`~wsloc.evaluate.pointing`): over maps.
* COCO box / mask AP (:mod:`~wsloc.evaluate.coco`).
* Results files (:mod:`~wsloc.evaluate.results`) and :func:`evaluate_results`, which computes
  every metric a results file supports; :mod:`~wsloc.evaluate.report` prints / saves them.

All figures are fractions in [0, 1] (tables print percentages).
"""

from .coco import STAT_NAMES, coco_ap
from .ilsvrc import clsloc_errors, gt_known_accuracy, image_clsloc_error
from .iou import CONVENTIONS, box_iou, describe_convention
from .maps import map_levels, threshold_grid
from .masks import mask_iou, mask_iou_curve, mean_mask_iou, pxap, sweep_thresholds
from .maxboxacc import box_accuracy_curves, max_box_acc, max_box_acc_v2
from .pointing import max_point, pointing_game
from .report import format_table, to_jsonable, write_figures
from .results import ImageGuesses, group_guesses, load_results, make_result, validate_results, write_results
from .run import evaluate_results

__all__ = [
    "CONVENTIONS", "STAT_NAMES", "ImageGuesses", "box_accuracy_curves", "box_iou", "clsloc_errors",
    "coco_ap", "describe_convention", "evaluate_results", "format_table", "group_guesses",
    "gt_known_accuracy", "image_clsloc_error", "load_results", "make_result", "map_levels",
    "mask_iou", "mask_iou_curve", "max_box_acc", "max_box_acc_v2", "max_point", "mean_mask_iou",
    "pointing_game", "pxap", "sweep_thresholds", "threshold_grid", "to_jsonable",
    "validate_results", "write_figures", "write_results",
]
