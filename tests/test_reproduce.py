"""scripts/reproduce.py's shortcut (true-class box only) against a full top-5 run scored by wsloc.evaluate."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import reproduce  # noqa: E402

from wsloc.evaluate import evaluate_results  # noqa: E402
from wsloc.io import load_image  # noqa: E402
from wsloc.localizer import Localizer  # noqa: E402
from wsloc.paths import demo_annotations  # noqa: E402


@pytest.fixture(scope="module")
def demo():
    return reproduce.load_data(demo_annotations(), None)


def test_true_class_shortcut_equals_the_full_top5_evaluation(demo, tmp_path):
    """The method table computes only the true class's box; a full run of the same configuration
    (Localizer, top-5 classes, every box) scored by `wsloc evaluate` must give the same errors."""
    images = {i: load_image(p) for i, p in enumerate(demo.paths)}
    top = reproduce.top5(demo, tmp_path, "cpu")
    row = reproduce.default_row()
    maps, _ = reproduce.true_class_maps(row.maps, demo, tmp_path, "cpu")
    short = reproduce.evaluate_row(row, demo, top, maps, images.__getitem__)["all"]

    loc = Localizer(device="cpu")  # the default preset, which default_row() describes
    results = []
    for i, image_id in enumerate(demo.ids):
        results += loc.localize(images[i], keep_maps=False).to_coco(int(image_id))
    full = evaluate_results(results, demo_annotations(), coco=False)
    assert short["n"] == full["n_evaluated"] == len(demo.paths)
    for k in (1, 5):
        assert short[f"top{k}_loc_err"] == pytest.approx(full[f"top{k}_loc_error"])
        assert short[f"top{k}_cls_err"] == pytest.approx(full[f"top{k}_cls_error"])
    np.testing.assert_array_equal(top, [[c.class_id for c in loc.localize(images[i]).classes] for i in images])


def test_balanced_objective_weights_size_buckets_equally():
    hits = np.array([1, 1, 1, 1, 0, 0], bool)
    share = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.3])  # four large hits, a small and a medium miss
    assert hits.mean() == pytest.approx(4 / 6)
    assert reproduce.balanced(hits, share) == pytest.approx((0 + 0 + 1) / 3)
    assert reproduce.balanced(hits[:4], share[:4]) == 1.0  # empty buckets are left out


def test_figures_by_hand(demo):
    which = np.arange(len(demo.paths))
    top = np.tile(np.arange(5), (len(which), 1))
    top[:, 0] = demo.labels  # every image: the true class first
    hits = np.zeros(len(which), bool)
    hits[:3] = True
    f = reproduce.figures(hits, which, demo, top)
    assert f["top1_cls_err"] == 0 and f["gt_known"] == pytest.approx(3 / len(which))
    assert f["top1_loc_err"] == f["top5_loc_err"] == pytest.approx(1 - 3 / len(which))
