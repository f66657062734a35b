"""``--limit N`` and shards score exactly the images the run processed (issue 14).

The failure: ``wsloc localize --limit 2`` scored 2 images against the whole annotation file
(the 4 others counted as images without guesses) and printed 83 % top-1 error. Now the figures
equal those of the same results scored against an annotation file holding only those images,
and the table says how many images were scored.
"""

import json

import numpy as np
import pytest

from imagenet_helpers import demo_layouts
from wsloc.cli import main
from wsloc.evaluate import evaluate_results, format_table
from wsloc.evaluate.ground_truth import GroundTruth
from wsloc.io import CocoDataset

MODEL = ["--model", "imagenet_helpers:tiny_imagenet_classifier", "--device", "cpu", "--quiet", "--workers", "0",
         "--segment-workers", "0"]
FIGURES = ("top1_loc_error", "top5_loc_error", "top1_cls_error", "top5_cls_error", "gt_known_loc_acc")


def _subset_file(src, keep_ids, path):
    data = json.loads(src.read_text())
    data["images"] = [im for im in data["images"] if im["id"] in keep_ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep_ids]
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return demo_layouts(tmp_path_factory.mktemp("layouts"))


def test_subset_scoring_equals_a_file_of_those_images(layouts, tmp_path):
    """evaluate_results(indices=...) against an independent subset file: same figures (no model)."""
    ds = CocoDataset(layouts["coco"])
    rng = np.random.default_rng(0)
    results = []
    for s in ds:  # 3 guesses per image: jittered ground truth, a random class, another box
        x0, y0, x1, y1 = s.boxes[0]
        j = rng.uniform(-40, 40, 4)
        results.append({"image_id": s.image_id, "category_id": int(s.label), "rank": 1 + (s.image_id % 2),
                        "score": 0.9, "bbox": [float(x0 + j[0]), float(y0 + j[1]), float(x1 - x0), float(y1 - y0)]})
        results.append({"image_id": s.image_id, "category_id": int(rng.integers(1000)), "rank": 2 - (s.image_id % 2),
                        "score": 0.5, "bbox": [0.0, 0.0, 50.0, 50.0]})
    keep = [1, 2, 4]  # positions == image ids in this layout
    sub = [r for r in results if r["image_id"] in keep]
    got = evaluate_results(sub, ds, indices=keep)
    want = evaluate_results(sub, str(_subset_file(layouts["coco"], set(keep), tmp_path / "sub.json")))
    assert got["n_images"] == want["n_images"] == 3 and got["n_dataset_images"] == 6
    for k in FIGURES:
        assert got[k] == pytest.approx(want[k])
    assert got["coco_bbox"]["AP"] == pytest.approx(want["coco_bbox"]["AP"])
    full = evaluate_results(sub, ds)  # the old behaviour: the other 3 images count as misses
    assert full["n_images"] == 6 and full["top5_cls_error"] >= 0.5
    assert "3 scored of the dataset's 6" in format_table(got)
    gt = GroundTruth(ds, keep)
    assert [s.image_id for s in gt] == keep and gt.is_subset


def test_limit_scores_only_the_processed_images(layouts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["localize", str(layouts["coco"]), "--out", str(out), "--limit", "2", "--overlays", "2", "--report",
                 *MODEL]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 2 and metrics["n_dataset_images"] == 6 and metrics["n_without_guesses"] == 0
    assert "images: 2 scored of the dataset's 6" in printed
    want = evaluate_results(str(out / "results.json"), str(_subset_file(layouts["coco"], {0, 1}, tmp_path / "s.json")))
    for k in FIGURES:
        assert metrics[k] == pytest.approx(want[k])
    page = (out / "report.html").read_text()  # --report: the page of this run, its two overlays
    assert f"report: {out / 'report.html'}" in printed and page.count("<div class='card ") == 2
    assert "2 images scored of the dataset's 6" in page.replace("&#x27;", "'")


@pytest.mark.slow
def test_limit_with_shards_then_merge_scores_the_limited_images(layouts, tmp_path, capsys):
    out = tmp_path / "sharded"
    common = [str(layouts["coco"]), "--out", str(out), "--limit", "3", "--batch-size", "1", *MODEL]
    assert main(["localize", *common, "--shard", "0/2"]) == 0
    assert main(["localize", *common, "--shard", "1/2"]) == 0
    capsys.readouterr()
    assert main(["merge", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 3 and metrics["n_without_guesses"] == 0
    assert "images: 3 scored of the dataset's 6" in printed
