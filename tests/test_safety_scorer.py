"""The scorer cannot be gamed by repeated classes; duplicates, non-finite values and boxes
beyond the image are flagged or refused."""

import json
from pathlib import Path

import pytest

from wsloc.errors import DatasetError
from wsloc.evaluate import evaluate_results, format_table, group_guesses, load_results, make_result

IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-1300"


def _gt(tmp_path):
    """One 100 x 100 image of class 3 whose object is the box [10, 10, 50, 50] (xyxy)."""
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100, "label": 3}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40]}],
            "categories": [{"id": i, "name": f"c{i}"} for i in range(8)]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return str(path)


def _write(tmp_path, results, name="res.json"):
    path = tmp_path / name
    path.write_text(json.dumps(results))
    return str(path)


def _nested(image_id, cls, sides=(100, 80, 60, 40, 20)):
    """The same class five times with nested boxes anchored at (10, 10): one of them fits the object."""
    return [make_result(image_id, cls, [10, 10, 10 + s, 10 + s], 1.0 - 0.1 * r, rank=r + 1)
            for r, s in enumerate(sides)]


def test_five_copies_of_one_class_do_not_buy_five_tries_at_the_box(tmp_path, capsys):
    from wsloc.cli import main

    gt = _gt(tmp_path)
    honest = [make_result(1, c, [0, 0, 100, 100], 1.0 - 0.1 * r, rank=r + 1) for r, c in enumerate([3, 1, 2, 4, 5])]
    gaming = _nested(1, 3)  # rank 4 ([10, 10, 50, 50]) is the object exactly
    f_honest = evaluate_results(_write(tmp_path, honest, "honest.json"), gt, coco=False)
    f_gaming = evaluate_results(_write(tmp_path, gaming, "gaming.json"), gt, coco=False)
    assert f_honest["top5_loc_error"] == 1.0  # whole-image box: IoU 0.16
    # Before issue 15 the gaming file scored 0.0 here. Counted once, class 3 has its rank-1 box only.
    assert f_gaming["top5_loc_error"] == 1.0 == f_gaming["top1_loc_error"]
    assert f_gaming["n_repeated_guesses"] == 4
    assert f_gaming["warnings"] and "1 images repeat a class" in f_gaming["warnings"][0]
    assert "warning: " in format_table(f_gaming)
    assert main(["evaluate", str(tmp_path / "gaming.json"), gt, "--no-coco"]) == 0
    out = capsys.readouterr().out
    assert "Top-5 localization error (ILSVRC CLS-LOC)  100.00 %" in out and "repeat a class" in out


def test_each_class_keeps_its_best_ranked_guess():
    res = [make_result(1, 3, [10, 10, 50, 50], 0.2, rank=2), make_result(1, 3, [0, 0, 99, 99], 0.9, rank=1),
           make_result(1, 4, [0, 0, 5, 5], 0.5, rank=3), make_result(2, 6, [0, 0, 5, 5], 0.1),
           make_result(2, 6, [0, 0, 7, 7], 0.8)]
    g = group_guesses(res)
    assert g[1].classes.tolist() == [3, 4] and g[1].boxes[0].tolist() == [0, 0, 99, 99] and g[1].repeated == 1
    assert g[2].classes.tolist() == [6] and g[2].boxes[0].tolist() == [0, 0, 7, 7]  # by score when unranked


def test_a_class_repeated_at_a_worse_rank_cannot_rescue_a_miss(tmp_path):
    gt = _gt(tmp_path)
    res = [make_result(1, 3, [0, 0, 100, 100], 0.9, rank=1), make_result(1, 1, [0, 0, 1, 1], 0.5, rank=2),
           make_result(1, 3, [10, 10, 50, 50], 0.4, rank=3)]
    f = evaluate_results(_write(tmp_path, res), gt, coco=False)
    assert f["top5_loc_error"] == 1.0 and f["top5_cls_error"] == 0.0
    assert f["gt_known_loc_acc"] == 0.0  # the GT-known guess is the class's best-ranked one too


def test_exact_duplicate_entries_are_counted_and_reported(tmp_path):
    gt = _gt(tmp_path)
    r = make_result(1, 3, [10, 10, 50, 50], 0.9, rank=1)
    f = evaluate_results(_write(tmp_path, [r, dict(r), dict(r), make_result(1, 2, [0, 0, 9, 9], 0.1, rank=2)]),
                         gt, coco=False)
    assert f["n_duplicate_results"] == 2 and any("exact duplicates" in w for w in f["warnings"])
    assert f["top1_loc_error"] == 0.0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_scores_and_coordinates_are_refused(tmp_path, token):
    base = '{"image_id": 1, "category_id": 3, "bbox": %s, "score": %s}'
    path = tmp_path / "r.json"
    path.write_text("[" + base % ("[0, 0, 5, 5]", token) + "]")
    with pytest.raises(DatasetError, match=r"results\[0\]: score must be a finite number"):
        load_results(str(path))
    path.write_text("[" + base % (f"[0, {token}, 5, 5]", "0.5") + "]")
    with pytest.raises(DatasetError, match=r"results\[0\]: bbox must be 4 finite numbers"):
        load_results(str(path))


def test_boxes_beyond_the_image_are_clipped_and_flagged(tmp_path):
    gt = _gt(tmp_path)
    inside = [make_result(1, 3, [10, 10, 50, 50], 0.9, rank=1)]
    beyond = [make_result(1, 3, [-30, -30, 50, 50], 0.9, rank=1)]  # clipped: [0, 0, 50, 50], IoU 0.64
    f_in = evaluate_results(_write(tmp_path, inside, "in.json"), gt)
    f_out = evaluate_results(_write(tmp_path, beyond, "out.json"), gt)
    assert f_in["n_boxes_outside"] == 0 and f_out["n_boxes_outside"] == 1
    assert any("beyond their image" in w for w in f_out["warnings"])
    assert f_out["top1_loc_error"] == 0.0  # unclipped the IoU would be 1600 / 6400 = 0.25: a miss
    clipped = evaluate_results(_write(tmp_path, [make_result(1, 3, [0, 0, 50, 50], 0.9, rank=1)], "c.json"), gt)
    assert f_out["coco_bbox"]["AP"] == clipped["coco_bbox"]["AP"]  # COCO AP sees the clipped box too
    # within the 1 px tolerance (rounding): clipped, not reported
    f_edge = evaluate_results(_write(tmp_path, [make_result(1, 3, [10, 10, 100.4, 50], 0.9, rank=1)], "e.json"),
                              gt, coco=False)
    assert f_edge["n_boxes_outside"] == 0 and not f_edge["warnings"]


@pytest.mark.shared_data
@pytest.mark.skipif(not (IMAGENET / "annotations.json").exists(), reason="imagenet-val-1300 not available")
def test_gaming_file_on_imagenet_scores_no_better_than_its_top1(tmp_path):
    """A gaming file built from the ground truth's own classes (the best case for gaming) on the real set."""
    from wsloc.io import CocoDataset

    ds = CocoDataset(IMAGENET / "annotations.json")
    samples = [s for s in ds][:200]
    gaming = []
    for s in samples:
        w, h = s.width, s.height
        for r, f in enumerate((1.0, 0.85, 0.7, 0.55, 0.4)):
            x0, y0 = w * (1 - f) / 2, h * (1 - f) / 2
            gaming.append(make_result(s.image_id, s.label, [x0, y0, w - x0, h - y0], 1.0 - 0.1 * r, rank=r + 1))
    f = evaluate_results(_write(tmp_path, gaming), ds, coco=False, indices=range(200))
    assert f["n_images"] == 200
    assert f["top5_loc_error"] == f["top1_loc_error"]
    assert f["n_repeated_guesses"] == 4 * 200
