"""Reproduce Simonyan et al. (2014)'s localization experiment and compare it with the rest of the family.

One command builds the method table of BENCHMARKS.md on a COCO-format dataset (default:
../shared/data/imagenet-val-1300): baselines, threshold boxes of every saliency map, the paper's
pipeline, GraphCut seeded by each map, and the best combinations found, each with top-1 / top-5
localization error, classification error, GT-known accuracy, MaxBoxAccV2, images/s and its exact
configuration, for all images, the held-out half and three object-size buckets::

    python scripts/reproduce.py                      # table, chart and overlays in runs/reproduce
    python scripts/reproduce.py --update-benchmarks  # ... and rewrite BENCHMARKS.md's section

A second column set: every row (or the ``--fullres-rows`` ones) is also run on ``--fullres``
(default ../shared/data/imagenet-val-fullres-dev: 463 ILSVRC validation photos at their original size;
``none`` or an absent folder skips it) by the same per-dataset function (:func:`dataset_table`), tuned on
that set's even half, with its maps cached apart in ``OUT/cache-fullres``.

How the figures are computed
----------------------------
* Classes: the classifier's top-5 on the whole image (one forward pass).
* Boxes: each row is a :class:`wsloc.localizer.LocalizerConfig` (:func:`row_config`: the
  ``simonyan2014`` preset with the row's :class:`wsloc.config.SaliencyConfig` and segmenter options,
  and the row's classifier where :data:`MODELS` names one: the ``gradcam_ensemble`` row's Lite0 + Lite2). ILSVRC images have one ground-truth class, and a guess of
  another class is always a localization error, so a top-k guess list is right exactly when the
  true class is among the first k guesses *and* its own box is right. The table therefore
  computes only the true class's map and box per image (``Localizer.network`` on
  ``Localizer.preprocess``'s input with that class wanted, then :func:`wsloc.segment.segment`):
  the same numbers a full top-5 run gives, at a fifth of the cost. The top-5 classes are the
  Localizer's own (:func:`top5`: with ``resize_from="photo"`` it classifies its larger input shrunk
  back, so such a row has its own). The maps of each method are cached in ``OUT/cache``.
* Speed: images/s is measured separately per row with the real thing: ``Localizer.localize`` on
  ``--speed-images`` images, top-5 classes, network and segmentation one after the other in this
  process (the batch runner of ``wsloc localize`` overlaps them and is faster).
  Main set only. ``--speed-images 0`` times nothing and keeps the figures of the table already in
  ``--benchmarks`` (:func:`published_speeds`); a row new to the table then shows "-".
* Tuning without fitting noise: rows with a free setting (a threshold, seeds, box rule) choose it
  on the images with an even index in the dataset (649) and the table reports the odd ones
  (649, never seen by the tuning) next to all images. Each row states the setting it chose.
  The tuning objective is the GT-known accuracy averaged over the three object-size buckets
  (not over images): this set's objects are large (the median largest box covers half the
  image), and a plain mean would reward settings that draw big boxes.
* Object size: every row is also reported per bucket of the largest ground-truth box's share of
  the image (< 25 %, 25-50 %, > 50 %).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "imagenet-val-1300"
BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"
from wsloc.evaluate.run import SIZE_BUCKETS as BUCKETS  # noqa: E402  (the buckets of `wsloc evaluate`)
from wsloc.config import SaliencyConfig  # noqa: E402

# --------------------------------------------------------------------------- the maps

#: map name -> the SaliencyConfig that makes it.
MAPS = {
    "gradient": SaliencyConfig("gradient"),
    "smoothgrad": SaliencyConfig("smoothgrad", {"n_samples": 10, "sigma": 0.15, "seed": 0}),
    "integrated_gradients": SaliencyConfig("integrated_gradients", {"steps": 16}),
    "guided_backprop": SaliencyConfig("guided_backprop"),
    "grad_cam": SaliencyConfig("grad_cam"),
    "cam": SaliencyConfig("cam"),
    "grad_cam_x2": SaliencyConfig("grad_cam", scales=(1.0, 2.0)),
    "grad_cam_x2_flip": SaliencyConfig("grad_cam", scales=(1.0, 2.0), flip=True),
    "grad_cam_photo_640_geo31": SaliencyConfig("grad_cam", scales=(1.0, 2.857142857142857), resize_from="photo",
                                               fusion="geometric", weights=(3.0, 1.0)),
    "layer_cam_x2_b10_max": SaliencyConfig("layer_cam", {"layers": ["_blocks.10", "_relu_head"], "fuse": "max"},
                                           scales=(1.0, 2.0)),
    "ensemble_grad_cam_x2_refined": SaliencyConfig("grad_cam", scales=(1.0, 2.0), refine="features",
                                                   refine_power=0.15),
}

#: map name -> the classifier that makes those maps and classifies the images, where it is not the base
#: preset's (EfficientNet-Lite0): the preset ``gradcam_ensemble``'s Lite0 + Lite2 ensemble (issue 12).
MODELS = {"ensemble_grad_cam_x2_refined": "efficientnet_lite0+efficientnet_lite2"}


def model_option(maps: str | None) -> dict:
    """``{"model": ...}`` for a map recipe listed in :data:`MODELS`, else ``{}`` (the base preset's classifier)."""
    return {"model": MODELS[maps]} if maps in MODELS else {}

#: The photo option (issue 12): these SaliencyConfig fields on top of the default preset's maps.
PHOTO_OPTION = {"resize_from": "photo", "scales": (1, 2.857142857142857), "fusion": "geometric", "weights": (3, 1)}
#: LayerCAM of Lite0's last stride-16 block and its last feature map, fused by the maximum (issue 12).
LAYER_CAM_OPTION = {"method": "layer_cam", "options": {"layers": ["_blocks.10", "_relu_head"], "fuse": "max"}}

#: The preset every row starts from (its segmenter options are SegmentConfig's defaults: the paper's rule).
BASE_PRESET = "simonyan2014"
PAPER_SEGMENT = {"q_fg": 95.0, "q_bg": 30.0}


def row_config(maps: str | None, segment: dict | None = None, device: str = "cpu", top_k: int = 5):
    """The :class:`wsloc.localizer.LocalizerConfig` of a row: :data:`BASE_PRESET` with the map recipe
    ``maps`` (None: plain gradients) and the segmenter options ``segment`` on top."""
    from wsloc.localizer import LocalizerConfig

    return LocalizerConfig.from_preset(BASE_PRESET, device=device, top_k=top_k, saliency=MAPS[maps or "gradient"],
                                       segment=dict(segment or {}), **model_option(maps))


@dataclass
class Row:
    """One configuration of the table.

    ``segment`` is a dict of SegmentConfig options; ``grid`` maps option names to the values
    tried on the tuning half (their product is searched; the best GT-known accuracy wins).
    ``kind`` "whole" / "centre" are the baselines (no map).
    """

    name: str
    group: str
    maps: str | None = None
    segment: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    kind: str = "localizer"
    note: str = ""


THRESHOLDS = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6]


def default_row() -> Row:
    """The default preset of ``wsloc localize``, exactly (its maps must be one of MAPS)."""
    from wsloc.presets import DEFAULT_PRESET, preset

    p = preset(DEFAULT_PRESET)
    name = next(k for k, v in MAPS.items() if v == p.saliency)
    base = row_config(name).segment.to_dict()
    changes = {k: v for k, v in p.segment.to_dict().items() if v != base[k]}
    assert row_config(name, changes).segment == p.segment
    return Row(f"default preset {DEFAULT_PRESET}", "default", name, changes,
               note="`wsloc localize` without options; fixed, see the text")


def variant_row(title: str, group: str, maps: str, option: dict) -> Row:
    """The default preset with the SaliencyConfig fields ``option`` changed (its maps must be
    ``MAPS[maps]``); the preset's segmenter options unchanged, nothing tuned."""
    from wsloc.presets import preset

    d = default_row()
    assert preset().saliency.with_(**option) == MAPS[maps], maps
    return Row(title, group, maps, dict(d.segment), note="the default preset with saliency." + ", saliency.".join(
        f"{k}={v!r}" for k, v in option.items()) + "; fixed, nothing tuned")


def ensemble_row() -> Row:
    """The preset ``gradcam_ensemble`` exactly: the default preset's segmentation on the refined maps of the
    Lite0 + Lite2 ensemble, which also classifies (its maps and classifier: ``MODELS``)."""
    from wsloc.presets import preset

    p, name = preset("gradcam_ensemble"), "ensemble_grad_cam_x2_refined"
    d = default_row()
    assert (p.saliency, p.model) == (MAPS[name], MODELS[name]) and p.segment == row_config(name, d.segment).segment
    return Row("preset gradcam_ensemble (Lite0 + Lite2, refined maps)", "ensemble preset", name, dict(d.segment),
               note="`wsloc localize --preset gradcam_ensemble` (needs the lite2 extra); fixed, nothing tuned")


def photo_row() -> Row:
    """The default preset with :data:`PHOTO_OPTION`: Grad-CAM of the 224 px input and of the photo's own
    640 px input, fused by a weighted geometric mean 3:1."""
    return variant_row("default preset, scales from the photo 224 + 640 geometric 3:1", "default, photo option",
                       "grad_cam_photo_640_geo31", PHOTO_OPTION)


def layer_cam_row() -> Row:
    """The default preset with :data:`LAYER_CAM_OPTION` (LayerCAM of two layers at 224 + 448 px, max)."""
    return variant_row("default preset, LayerCAM _blocks.10 + last, max", "default, LayerCAM", "layer_cam_x2_b10_max",
                       LAYER_CAM_OPTION)


# --------------------------------------------------------------------------- rows to come
#: Row specs appended after the rows below (each gets the full-resolution columns too). A row on another
#: classifier names maps listed in MODELS.
LATER_ROWS: list[Row] = []


def rows() -> list[Row]:
    out = [Row("whole image", "baseline", kind="whole", note="box = the whole image"),
           Row("centre box", "baseline", kind="centre", grid={"fraction": [0.5, 0.6, 0.7, 0.8, 0.9]},
               note="centred box of a fixed share of each side")]
    for m in ("gradient", "smoothgrad", "integrated_gradients", "guided_backprop", "grad_cam", "cam"):
        out.append(Row(f"{m} threshold", "threshold box", m, {"algorithm": "threshold"},
                       {"threshold": THRESHOLDS}, note="largest component above a fraction of the map's maximum"))
    out.append(Row("grad_cam threshold 0.2", "threshold box", "grad_cam", {"algorithm": "threshold", "threshold": 0.2},
                   note="the issue's Grad-CAM baseline, untuned"))
    out.append(Row("paper: gradient + GMM 95/30 + GraphCut", "paper", "gradient", dict(PAPER_SEGMENT),
                   note="Simonyan et al. 2014, faithful (preset simonyan2014)"))
    for m in ("smoothgrad", "integrated_gradients", "guided_backprop", "grad_cam", "cam", "grad_cam_x2"):
        out.append(Row(f"{m} + GMM 95/30 + GraphCut", "GraphCut seeded by a map", m, dict(PAPER_SEGMENT),
                       note="the paper's segmentation on another map"))
    fraction_grid = {"q_fg": [30.0, 40.0, 50.0], "q_bg": [10.0, 20.0], "box_rule": ["largest", "union"]}
    out += [
        Row("gradient + GraphCut, tuned", "combination", "gradient", {},
            {"q_fg": [90.0, 95.0], "q_bg": [30.0, 50.0], "box_rule": ["largest", "union"]},
            note="the paper's pipeline with tuned percentiles and box rule"),
        Row("grad_cam x2 threshold", "combination", "grad_cam_x2", {"algorithm": "threshold"},
            {"threshold": THRESHOLDS}, note="Grad-CAM fused over the 224 and 448 px inputs"),
        Row("grad_cam x2+flip threshold", "combination", "grad_cam_x2_flip", {"algorithm": "threshold"},
            {"threshold": THRESHOLDS}, note="... and their mirror images"),
        Row("grad_cam x2 + GraphCut, fraction seeds, tuned", "combination", "grad_cam_x2", {"seed_rule": "fraction"},
            fraction_grid, note="seeds at fractions of the map's maximum, tuned"),
        Row("grad_cam x2+flip + GraphCut, fraction seeds, tuned", "combination", "grad_cam_x2_flip",
            {"seed_rule": "fraction"}, fraction_grid, note="... with mirror images"),
        default_row(),
        photo_row(),
        layer_cam_row(),
        ensemble_row(),
    ]
    return out + list(LATER_ROWS)


def select(candidates: list[Row], spec: str | None) -> list[Row]:
    """The rows whose name contains one of the comma-separated substrings of ``spec`` (None: all;
    ``"core"``: the rows named in :data:`FULLRES_CORE`, exactly)."""
    if not spec:
        return list(candidates)
    if spec == "core":
        return [r for r in candidates if r.name in FULLRES_CORE]
    keys = [k.strip() for k in spec.split(",")]
    return [r for r in candidates if any(k in r.name for k in keys)]


# --------------------------------------------------------------------------- data

@dataclass
class Data:
    paths: list[str]
    ids: np.ndarray  # int64 [N]
    labels: np.ndarray  # int64 [N]
    gt: list[np.ndarray]  # per image float64 [M, 4] xyxy
    sizes: np.ndarray  # int [N, 2] (h, w)
    share: np.ndarray  # float [N] largest ground-truth box / image area
    names: list[str]


def load_data(ann: str, limit: int | None) -> Data:
    from wsloc.io import CocoDataset, image_size

    ds = CocoDataset(ann)
    n = len(ds) if limit is None else min(limit, len(ds))
    samples = [ds[i] for i in range(n)]
    sizes = []
    for s in samples:
        w, h = image_size(s.path)
        sizes.append((h, w))
    sizes = np.array(sizes)
    gt = [np.asarray(s.boxes, np.float64).reshape(-1, 4) for s in samples]
    share = np.array([((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])).max() / (h * w) if len(g) else 0.0
                      for g, (h, w) in zip(gt, sizes)])
    return Data([s.path for s in samples], np.array([s.image_id for s in samples]),
                np.array([s.label for s in samples]), gt, sizes, share, [s.file_name for s in samples])


# --------------------------------------------------------------------------- network outputs (cached)

def localizer_for(maps: str | None, segment: dict | None = None, device: str = "cpu", top_k: int = 5):
    from wsloc.localizer import Localizer

    return Localizer(row_config(maps, segment, device, top_k))


def batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def own_classes(maps: str | None) -> bool:
    """Whether a map recipe changes the top-5 classes: another classifier (``MODELS``), or
    ``resize_from="photo"``, where the Localizer classifies its larger input shrunk by area averaging,
    not the classifier's own 224 px input."""
    sal = MAPS[maps or "gradient"]
    return maps in MODELS or (sal.resize_from == "photo" and max(sal.scales) != 1.0)


def top5(data: Data, cache: Path, device: str, maps: str | None = None) -> np.ndarray:
    """int64 [N, 5] the top-5 classes per image that a Localizer with map recipe ``maps`` finds (cached):
    its own classifier, preprocess and classification input (``Localizer.preprocess``, then the pass that
    ``Localizer.network`` classifies), so a row with ``resize_from="photo"`` or another model gets its own classes."""
    from wsloc.io import load_image

    path = cache / (f"top5_{maps}.npy" if own_classes(maps) else "top5.npy")
    if path.exists():
        t = np.load(path)
        if len(t) == len(data.paths):
            return t
    loc = localizer_for(maps if own_classes(maps) else None, device=device)
    out = []
    for sl in batches(len(data.paths), 32):
        x = loc.preprocess.batch([load_image(p) for p in data.paths[sl]])
        with torch.no_grad():
            logits = loc.classifier.model(loc._classifier_input(x.to(loc.classifier.device)))
        out.append(logits.topk(5, dim=1).indices.cpu().numpy())
    t = np.concatenate(out)
    np.save(path, t)
    return t


def recipe_of(name: str) -> dict:
    """What makes the maps ``name`` (the cache's key): the SaliencyConfig's fields, and ``model`` where
    :data:`MODELS` names another classifier."""
    return {**MAPS[name].to_dict(), **model_option(name)}


def true_class_maps(name: str, data: Data, cache: Path, device: str) -> tuple[np.ndarray, float]:
    """float16 [N, h, w] maps of the true class for one map recipe (cached), as ``Localizer.network`` makes
    them for ``wsloc localize`` (refined where the recipe says so); seconds spent."""
    from wsloc.io import load_image

    path, info = cache / f"maps_{name}.npy", cache / f"maps_{name}.json"
    if path.exists() and info.exists():
        m, saved = np.load(path, mmap_mode="r"), json.loads(info.read_text())
        if len(m) == len(data.paths) and saved.get("config") == recipe_of(name):
            return m, float(saved["seconds"])
    loc = localizer_for(name, device=device)
    out = []
    t0 = time.perf_counter()
    for sl in batches(len(data.paths), 8):
        x = loc.preprocess.batch([load_image(p) for p in data.paths[sl]])
        net = loc.network(x, wanted=[[int(c)] for c in data.labels[sl]])  # the maps as localize makes them
        out.append(net.maps[:, 0].astype(np.float16))
        print(f"\r  maps {name}: {sl.stop}/{len(data.paths)}", end="", flush=True)
    seconds = time.perf_counter() - t0
    print()
    m = np.concatenate(out)
    np.save(path, m)
    (cache / f"maps_{name}.json").write_text(json.dumps({"seconds": seconds, "config": recipe_of(name)}))
    return m, seconds


# --------------------------------------------------------------------------- boxes and figures

def boxes_for(row: Row, options: dict, data: Data, maps, images, which: np.ndarray) -> np.ndarray:
    """float64 [len(which), 4] xyxy box of the true class for each image index in ``which``."""
    from wsloc.segment import segment

    out = np.zeros((len(which), 4))
    if row.kind == "whole":
        for j, i in enumerate(which):
            h, w = data.sizes[i]
            out[j] = (0, 0, w, h)
        return out
    if row.kind == "centre":
        f = options["fraction"]
        for j, i in enumerate(which):
            h, w = data.sizes[i]
            out[j] = (w * (1 - f) / 2, h * (1 - f) / 2, w * (1 + f) / 2, h * (1 + f) / 2)
        return out
    cfg = row_config(row.maps, options).segment
    for j, i in enumerate(which):
        out[j] = segment(images(i), np.asarray(maps[i], np.float32)[None], cfg)[0].box
    return out


def hits_of(boxes: np.ndarray, data: Data, which: np.ndarray) -> np.ndarray:
    from wsloc.evaluate import gt_known_accuracy

    return gt_known_accuracy(list(boxes), [data.gt[i] for i in which], iou_convention="devkit")[1]


def figures(hits: np.ndarray, which: np.ndarray, data: Data, top: np.ndarray) -> dict:
    """Error rates (fractions) over the images ``which`` given their true-class box hits."""
    lab = data.labels[which]
    in1 = top[which, 0] == lab
    in5 = (top[which] == lab[:, None]).any(1)
    return {"n": int(len(which)), "top1_loc_err": float(1 - (hits & in1).mean()),
            "top5_loc_err": float(1 - (hits & in5).mean()), "top1_cls_err": float(1 - in1.mean()),
            "top5_cls_err": float(1 - in5.mean()), "gt_known": float(hits.mean())}


def balanced(hits: np.ndarray, share: np.ndarray) -> float:
    """The tuning objective: GT-known accuracy averaged over the three object-size buckets, so
    that a setting cannot win by drawing big boxes for the big objects this set is rich in."""
    return float(np.mean([hits[(share >= lo) & (share < hi)].mean() for _, lo, hi in BUCKETS
                          if ((share >= lo) & (share < hi)).any()]))


def evaluate_row(row: Row, data: Data, top: np.ndarray, maps, images) -> dict:
    n = len(data.paths)
    idx = np.arange(n)
    tune, held = idx[idx % 2 == 0], idx[idx % 2 == 1]
    options = dict(row.segment)
    tried = []
    t0 = time.perf_counter()
    if row.grid:
        keys = list(row.grid)
        best = None
        for values in itertools.product(*(row.grid[k] for k in keys)):
            opt = {**options, **dict(zip(keys, values))}
            h = hits_of(boxes_for(row, opt, data, maps, images, tune), data, tune)
            acc = balanced(h, data.share[tune])
            tried.append({**dict(zip(keys, values)), "balanced_gt_known_tuning_half": round(acc, 4),
                          "gt_known_tuning_half": round(float(h.mean()), 4)})
            if best is None or acc > best[0] + 1e-12:
                best = (acc, opt)
        options = best[1]
    tune_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    boxes = boxes_for(row, options, data, maps, images, idx)
    box_seconds = time.perf_counter() - t0
    hits = hits_of(boxes, data, idx)
    res = {"name": row.name, "group": row.group, "maps": row.maps, "kind": row.kind, "note": row.note,
           "options": options, "config": config_of(row, options), "tried": tried,
           "all": figures(hits, idx, data, top), "held_out": figures(hits[held], held, data, top),
           "tuning": figures(hits[tune], tune, data, top),
           "buckets": {b: figures(hits[(data.share >= lo) & (data.share < hi)],
                                  idx[(data.share >= lo) & (data.share < hi)], data, top) for b, lo, hi in BUCKETS},
           "box_seconds": box_seconds, "tune_seconds": tune_seconds,
           "boxes": boxes.tolist(), "hits": hits.astype(int).tolist()}
    return res


def config_of(row: Row, options: dict) -> dict:
    if row.kind != "localizer":
        return {"box": row.kind, **options}
    return {**model_option(row.maps), "saliency": MAPS[row.maps].to_dict(), "segment": options}


def maxboxacc_of(maps, data: Data) -> float:
    from wsloc.evaluate import max_box_acc_v2

    ms = [np.asarray(maps[i], np.float32) for i in range(len(data.paths))]
    ms = [_resize(m, data.sizes[i]) for i, m in enumerate(ms)]
    return float(max_box_acc_v2(ms, data.gt, iou_convention="devkit")["value"])


def _resize(m: np.ndarray, hw) -> np.ndarray:
    from wsloc.segment.seeds import resize_map

    return resize_map(m, (int(hw[0]), int(hw[1])), "bilinear")


def images_per_second(row: Row, options: dict, data: Data, n: int, device: str) -> float | None:
    """Localizer.localize with the row's configuration and top-5 classes on ``n`` images."""
    from wsloc.io import load_image

    if n <= 0:
        return None
    loc = localizer_for(row.maps, options, device=device)
    imgs = [load_image(p) for p in data.paths[1:1 + n + 4]]
    loc.localize(imgs[:4], keep_maps=False)  # warm-up
    t0 = time.perf_counter()
    loc.localize(imgs[4:], keep_maps=False)
    return (len(imgs) - 4) / (time.perf_counter() - t0)


def forward_per_second(data: Data, n: int, device: str) -> float | None:
    """Images/s of the classifier's forward pass alone (the baselines' cost), or None for ``n <= 0``."""
    from wsloc.io import load_image

    if n <= 0:
        return None
    loc = localizer_for(None, device=device)
    imgs = [load_image(p) for p in data.paths[1:1 + n]]
    t0 = time.perf_counter()
    for sl in batches(len(imgs), 8):
        with torch.no_grad():
            loc.classifier.model(loc.classifier.preprocess.batch(imgs[sl]).to(loc.classifier.device))
    return len(imgs) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- one dataset

def image_loader(data: Data):
    """``i -> uint8 [H, W, 3]`` RGB image ``i`` of ``data``, decoded once and kept."""
    from wsloc.io import load_image

    kept: dict[int, np.ndarray] = {}

    def images(i: int) -> np.ndarray:
        if i not in kept:
            kept[i] = load_image(data.paths[i])
        return kept[i]

    return images


def dataset_table(selected: list[Row], data: Data, cache: Path, device: str, label: str = "") -> list[dict]:
    """Every row of ``selected`` on one dataset: :func:`evaluate_row`'s dict plus ``maxboxacc_v2``
    (None for the baselines), tuned on that dataset's even-index images. Maps and top-5 classes are
    cached in ``cache`` (one folder per dataset). No timing: images/s is the caller's business."""
    cache.mkdir(parents=True, exist_ok=True)
    images = image_loader(data)
    results, mba, tops = [], {}, {}
    for row in selected:
        key = row.maps if own_classes(row.maps) else None
        if key not in tops:
            tops[key] = top5(data, cache, device, key)
        maps = None
        if row.maps:
            maps, _ = true_class_maps(row.maps, data, cache, device)
            if row.maps not in mba:
                mba[row.maps] = maxboxacc_of(maps, data)
        r = evaluate_row(row, data, tops[key], maps, images)
        r["maxboxacc_v2"] = mba.get(row.maps)
        results.append(r)
        print(f"{label}{row.name:45s} top-5 loc err {pct(r['all']['top5_loc_err'])} (held-out "
              f"{pct(r['held_out']['top5_loc_err'])}), GT-known {pct(r['all']['gt_known'])}, "
              f"options {json.dumps(r['options'])}", flush=True)
    return results


#: What a row keeps of its full-resolution run (``result["fullres"]``).
FULLRES_KEYS = ("all", "held_out", "tuning", "buckets", "options", "maxboxacc_v2")


def attach_fullres(results: list[dict], fullres: list[dict]) -> None:
    """Put each full-resolution result under ``"fullres"`` of the main-set result of the same row."""
    byname = {r["name"]: r for r in fullres}
    for r in results:
        if r["name"] in byname:
            r["fullres"] = {k: byname[r["name"]][k] for k in FULLRES_KEYS}


SPEED_RE = r"`Localizer\.localize` on (\d+) images, network then segmentation in one process \((\d+) torch threads\)"


def published_speeds(section: str) -> tuple[dict[str, float], dict]:
    """The images/s column of a method table written by :func:`markdown` (row name -> images/s; rows
    showing "-" are left out) and how it was measured (``{"speed_images": n, "threads": t}``, empty
    when the header does not say)."""
    import re

    speeds, lines = {}, section.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("| # | configuration | top-1 loc err")), None)
    for ln in lines[start + 2:] if start is not None else []:
        if not ln.startswith("| "):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if cells[-1] != "-":
            speeds[cells[1]] = float(cells[-1])
    m = re.search(SPEED_RE, section)
    return speeds, ({"speed_images": int(m.group(1)), "threads": int(m.group(2))} if m else {})


# --------------------------------------------------------------------------- report

def pct(v: float) -> str:
    """A fraction as a percentage with one decimal; "-" for NaN (an empty bucket)."""
    return "-" if v != v else f"{100 * v:.1f}"


def speed_sentence(meta: dict) -> str:
    """How the images/s column was measured (``meta["speed"]``: ``measured`` here, ``kept`` from the section
    that was there before, or ``none``)."""
    sp = meta["speed"]
    how = (f"top-5 classes, `Localizer.localize` on {sp.get('speed_images', '?')} images, network then "
           f"segmentation in one process ({sp.get('threads', '?')} torch threads)")
    if sp["source"] == "measured":
        return f"Images/s (main set only): {how}."
    if sp["source"] == "kept":
        return (f"Images/s: **the previous measurement, unchanged** (this run did not time: `--speed-images 0`; "
                f"rows that were not in the previous table show -): {how}.")
    return "Images/s: not measured (`--speed-images 0`, no previous figures)."


def markdown(results: list[dict], meta: dict) -> str:
    n_held = results[0]["held_out"]["n"]
    n_tune = results[0]["tuning"]["n"]
    lines = [BEGIN, "", "## Reproducing the paper: the method table", "",
             f"{meta['images']} images of `{meta['data']}`; EfficientNet-Lite0 (224 px) unless a row's configuration "
             "names another `model`; regenerate with "
             f"`{meta['command']}` ({meta['minutes']:.0f} min on {meta['machine']}). "
             f"Errors and accuracies in %, **held-out** = the {n_held} odd-index images that no setting was tuned on "
             f"(rows with a tuned setting chose it on the {n_tune} even-index ones). " + speed_sentence(meta), "",
             "| # | configuration | top-1 loc err | top-5 loc err | top-5 loc err held-out | cls err top-1 / top-5 "
             "| GT-known | GT-known held-out | MaxBoxAccV2 | images/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        a, h = r["all"], r["held_out"]
        mba = "-" if r.get("maxboxacc_v2") is None else pct(r["maxboxacc_v2"])
        ips = "-" if r.get("images_per_second") is None else f"{r['images_per_second']:.2f}"
        lines.append(f"| {i} | {r['name']} | {pct(a['top1_loc_err'])} | **{pct(a['top5_loc_err'])}** | "
                     f"{pct(h['top5_loc_err'])} | {pct(a['top1_cls_err'])} / {pct(a['top5_cls_err'])} | "
                     f"{pct(a['gt_known'])} | {pct(h['gt_known'])} | {mba} | {ips} |")
    lines += ["", "Top-5 localization error by object size (largest ground-truth box's share of the image; "
              "images per bucket: " + ", ".join(f"{b} {results[0]['buckets'][b]['n']}" for b, _, _ in BUCKETS) + "):",
              "", "| # | configuration | " + " | ".join(b for b, _, _ in BUCKETS) + " | GT-known " +
              " / ".join(b.split()[0] for b, _, _ in BUCKETS) + " |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        b = r["buckets"]
        lines.append(f"| {i} | {r['name']} | " + " | ".join(pct(b[k]['top5_loc_err']) for k, _, _ in BUCKETS) +
                     " | " + " / ".join(pct(b[k]['gt_known']) for k, _, _ in BUCKETS) + " |")
    lines += fullres_lines(results, meta)
    lines += ["", "Exact configuration of each row (LocalizerConfig fields on top of the `simonyan2014` preset; "
              "`saliency` = the SaliencyConfig, `segment` = SegmentConfig options, the rest at their defaults; tuned values were chosen on the "
              "even half):", ""]
    for i, r in enumerate(results, 1):
        f = r.get("fullres")
        chose = (f"; full-resolution set chose `{json.dumps(f['options'])}`"
                 if f is not None and r["tried"] and f["options"] != r["options"] else "")
        lines.append(f"{i}. **{r['name']}** ({r['group']}; {r['note']}): `{json.dumps(r['config'])}`{chose}")
    lines += ["", f"![top-5 localization error per configuration]({meta['chart']})", "",
              "Best (highest IoU among objects smaller than half the image) and worst cases of the default "
              "configuration; predicted box with its IoU, ground truth in the other colour, fused map underneath:", "",
              f"![best and worst cases of the default configuration]({meta['grid']})", "", END]
    return "\n".join(lines) + "\n"


def fullres_lines(results: list[dict], meta: dict) -> list[str]:
    """The full-resolution column set: one table, the main table's row numbers, "-" for rows not run there."""
    fr = meta.get("fullres")
    done = [r["fullres"] for r in results if r.get("fullres")]
    if not fr or not done:
        return ["", f"Full-resolution set: not run ({fr['skipped'] if fr and fr.get('skipped') else 'no rows'})."]
    first = done[0]
    restricted = (f" Only the rows selected by `--fullres-rows {fr['rows']}` were run on it, to save time "
                  "(the rest show -)." if fr.get("rows") else "")
    out = ["", f"**Full-resolution set**: the same rows (same numbers) on {fr['images']} images of `{fr['data']}` "
           "(ILSVRC validation photos at their original size, official boxes; maps cached apart in "
           f"`{fr['cache']}`). Each row is tuned on its {first['tuning']['n']} even-index images and "
           f"**held-out** = the {first['held_out']['n']} odd-index ones; images per bucket: "
           + ", ".join(f"{b} {first['buckets'][b]['n']}" for b, _, _ in BUCKETS) + "." + restricted, "",
           "| # | configuration | top-5 loc err | top-5 loc err held-out | cls err top-1 / top-5 | GT-known "
           "| GT-known held-out | GT-known " + " / ".join(b.split()[0] for b, _, _ in BUCKETS) + " | MaxBoxAccV2 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        f = r.get("fullres")
        if f is None:
            out.append(f"| {i} | {r['name']} | - | - | - | - | - | - | - |")
            continue
        a, h, b = f["all"], f["held_out"], f["buckets"]
        mba = "-" if f.get("maxboxacc_v2") is None else pct(f["maxboxacc_v2"])
        out.append(f"| {i} | {r['name']} | **{pct(a['top5_loc_err'])}** | {pct(h['top5_loc_err'])} | "
                   f"{pct(a['top1_cls_err'])} / {pct(a['top5_cls_err'])} | {pct(a['gt_known'])} | "
                   f"{pct(h['gt_known'])} | " + " / ".join(pct(b[k]['gt_known']) for k, _, _ in BUCKETS) +
                   f" | {mba} |")
    return out


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in results]
    y = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(results) + 1.2))
    ax.barh(y - 0.2, [100 * r["all"]["top5_loc_err"] for r in results], 0.4, label="all images")
    ax.barh(y + 0.2, [100 * r["held_out"]["top5_loc_err"] for r in results], 0.4, label="held-out half")
    for v, lab, style in ((46.4, "published: Simonyan et al. 2014 / Grad-CAM (VGG-16), 46.4", "--"),
                          (37.1, "published: CAM (GoogLeNet-GAP), 37.1", ":")):
        ax.axvline(v, color="grey", ls=style, lw=1.0, label=lab)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("top-5 localization error (%)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.06), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_grid(best: dict, maps, data: Data, images, path: Path, n: int = 6) -> None:
    from wsloc.evaluate import box_iou
    from wsloc.viz import grid, overlay, save_png

    boxes = np.asarray(best["boxes"])
    ious = np.array([box_iou(boxes[i], data.gt[i], "devkit").max() for i in range(len(boxes))])
    order = np.argsort(ious, kind="stable")
    smaller = [i for i in order[::-1] if data.share[i] < 0.5]  # whole-frame objects are trivially right
    picks = [("best", i) for i in smaller[:n]] + [("worst", i) for i in order[:n]]
    cells = []
    for tag, i in picks:
        img = images(i)
        m = _resize(np.asarray(maps[i], np.float32), data.sizes[i]) if maps is not None else None
        cells.append(overlay(img, m, boxes=boxes[i][None], labels=[f"IoU {ious[i]:.2f}"], gt_boxes=data.gt[i]))
    rows_ = [cells[:n], cells[n:]]
    save_png(path, grid(rows_, row_titles=["best, object < half the image", "worst"], cell=(160, 160)))


# --------------------------------------------------------------------------- main

FULLRES = ROOT.parent / "shared" / "data" / "imagenet-val-fullres-dev"
#: The rows that matter on the full-resolution set (exact names; ``--fullres-rows core``) when time is short.
FULLRES_CORE = ("paper: gradient + GMM 95/30 + GraphCut", "grad_cam threshold",
                "grad_cam x2 + GraphCut, fraction seeds, tuned", "default preset gradcam_graphcut",
                "default preset, scales from the photo 224 + 640 geometric 3:1")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="folder with annotations.json (default: %(default)s)")
    ap.add_argument("--fullres", default=str(FULLRES),
                    help="second dataset, the full-resolution column set (folder with annotations.json; "
                         "'none': skip; default: %(default)s)")
    ap.add_argument("--fullres-rows", help="only these rows on the full-resolution set: comma-separated substrings "
                                           "as for --rows, or 'core' = the rows " + "; ".join(FULLRES_CORE) +
                                           " (default: every row)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "reproduce"), help="output folder (default: %(default)s)")
    ap.add_argument("--limit", type=int, help="first N images only, of each set (a quick look)")
    ap.add_argument("--rows", help="comma-separated substrings: only rows whose name contains one")
    ap.add_argument("--speed-images", type=int, default=24,
                    help="images timed per row, main set only (0: no timing; the images/s figures already in "
                         "the benchmarks file are kept)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--docs", default=str(ROOT / "docs" / "reproduce"), help="where the PNGs go")
    ap.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"), help="the file whose section is rewritten")
    ap.add_argument("--update-benchmarks", action="store_true", help="rewrite BENCHMARKS.md's section")
    ap.add_argument("--report-only", action="store_true",
                    help="redo the chart, overlays and text from OUT/table.json without recomputing")
    return ap.parse_args(argv)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, else as it is (absolute)."""
    path = Path(path).resolve()
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path)


def fullres_annotations(args) -> tuple[str | None, str]:
    """The full-resolution set's annotations.json, or None and why it is skipped."""
    if str(args.fullres).lower() == "none":
        return None, "--fullres none"
    ann = os.path.join(args.fullres, "annotations.json")
    if not os.path.exists(ann):
        return None, f"{ann} not found"
    return ann, ""


def current_section(path: Path) -> str:
    """The text between the markers in the benchmarks file ('' when absent)."""
    text = path.read_text() if path.exists() else ""
    return text[text.index(BEGIN):text.index(END)] if BEGIN in text and END in text else ""


def add_speeds(results: list[dict], selected: list[Row], data: Data, args) -> dict:
    """Images/s per row on the main set (``images_per_second``): measured with ``--speed-images N > 0``,
    else the figures of the table already in the benchmarks file; returns how (``meta["speed"]``)."""
    if args.speed_images > 0:
        for r, row in zip(results, selected):
            r["images_per_second"] = (images_per_second(row, r["options"], data, args.speed_images, args.device)
                                      if row.kind == "localizer" else forward_per_second(data, args.speed_images,
                                                                                         args.device))
        return {"source": "measured", "speed_images": args.speed_images, "threads": args.threads}
    speeds, how = published_speeds(current_section(Path(args.benchmarks)))
    for r in results:
        r["images_per_second"] = speeds.get(r["name"])
    return {"source": "kept" if speeds else "none", **how}


def main(argv=None) -> int:
    args = parse_args(argv)
    ann = os.path.join(args.data, "annotations.json")
    if not os.path.exists(ann):
        print(f"skipped: {ann} not found")
        return 0
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out = Path(args.out)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    data = load_data(ann, args.limit)
    top = top5(data, cache, args.device)
    print(f"{len(data.paths)} images; top-1 / top-5 classification error "
          f"{pct(1 - (top[:, 0] == data.labels).mean())} / {pct(1 - (top == data.labels[:, None]).any(1).mean())} %")
    if args.report_only:
        results = json.loads((out / "table.json").read_text())
        meta_extra = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
        return report(results, data, cache, args, meta_extra)
    selected = select(rows(), args.rows)
    results = dataset_table(selected, data, cache, args.device)
    speed = add_speeds(results, selected, data, args)
    fr_ann, skipped = fullres_annotations(args)
    fullres = {"skipped": skipped}
    if fr_ann is None:
        print(f"full-resolution set skipped: {skipped}")
    else:
        fr_cache = out / "cache-fullres"
        fr_data = load_data(fr_ann, args.limit)
        attach_fullres(results, dataset_table(select(selected, args.fullres_rows), fr_data, fr_cache, args.device,
                                              "[fullres] "))
        fullres = {"data": shown_path(args.fullres), "images": len(fr_data.paths),
                   "cache": shown_path(fr_cache), "rows": args.fullres_rows}
    (out / "table.json").write_text(json.dumps(results))
    meta = {"minutes": (time.perf_counter() - t_start) / 60, "speed": speed, "fullres": fullres}
    (out / "meta.json").write_text(json.dumps(meta))
    return report(results, data, cache, args, meta)


def command_of(args) -> str:
    """The command line that regenerates the section (the options that change its figures)."""
    parts = ["python scripts/reproduce.py"]
    if args.speed_images != 24:
        parts.append(f"--speed-images {args.speed_images}")
    if args.fullres_rows:
        parts.append(f"--fullres-rows '{args.fullres_rows}'" if " " in args.fullres_rows else f"--fullres-rows {args.fullres_rows}")
    return " ".join(parts + ["--update-benchmarks"])


def report(results: list[dict], data: Data, cache: Path, args, run_meta: dict) -> int:
    out = Path(args.out)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    chart(results, docs / "top5_error.png")
    defaults = [r for r in results if r["group"] == "default"]
    localizers = [r for r in results if r["kind"] == "localizer"]
    best = defaults[0] if defaults else min(localizers, key=lambda r: r["tuning"]["top5_loc_err"], default=None)
    if best is not None:
        overlay_grid(best, true_class_maps(best["maps"], data, cache, args.device)[0], data, image_loader(data),
                     docs / "best_worst.png")
    meta = {"images": len(data.paths), "data": os.path.relpath(args.data, ROOT),
            "command": command_of(args), "minutes": run_meta.get("minutes", 0.0),
            "machine": f"{os.cpu_count()} CPUs", "speed": run_meta.get("speed", {"source": "none"}),
            "fullres": run_meta.get("fullres"),
            "chart": os.path.relpath(docs / "top5_error.png", ROOT), "grid": os.path.relpath(docs / "best_worst.png", ROOT)}
    md = markdown(results, meta)
    (out / "table.md").write_text(md)
    print(md)
    if best is not None:
        print(f"overlays of: {best['name']} ({json.dumps(best['config'])})")
    if args.update_benchmarks:
        bench = Path(args.benchmarks)
        text = bench.read_text() if bench.exists() else ""
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + md + text[text.index(END) + len(END) + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + md
        bench.write_text(text)
        print(f"wrote {bench}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
