"""``--save-masks``: one PNG per image and class, equal to the results' masks; ``wsloc evaluate --masks``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_run_helpers import TINY, make_coco
from wsloc.boxes import mask_to_rle, rle_to_mask
from wsloc.cli import main as cli_main
from wsloc.errors import DatasetError
from wsloc.evaluate import evaluate_results
from wsloc.run.saved_masks import (apply_saved_masks, has_saved_masks, iter_saved_masks, load_mask, mask_path,
                                   save_mask)


def test_round_trip_names_and_bad_files(tmp_path):
    mask = np.zeros((7, 5), bool)
    mask[1:4, 2] = True
    mask[6, 4] = True
    assert not has_saved_masks(str(tmp_path))
    p = save_mask(str(tmp_path), 123, 45, mask)
    assert p == mask_path(str(tmp_path), 123, 45) and p.endswith("masks/123_45.png")
    back = load_mask(p)
    assert back.dtype == bool and back.shape == (7, 5)
    np.testing.assert_array_equal(back, mask)
    save_mask(str(tmp_path), 9, 2, ~mask)
    (tmp_path / "masks" / "notes.txt").write_text("x")
    assert has_saved_masks(str(tmp_path))
    assert [(i, c) for i, c, _ in iter_saved_masks(str(tmp_path))] == [(9, 2), (123, 45)]
    with pytest.raises(DatasetError, match="124_45.png: saved mask not found"):
        load_mask(mask_path(str(tmp_path), 124, 45))
    (tmp_path / "masks" / "1_1.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="1_1.png: not a saved-mask PNG"):
        load_mask(str(tmp_path / "masks" / "1_1.png"))


def test_apply_saved_masks_replaces_the_segmentations(tmp_path):
    a = np.zeros((6, 8), bool)
    a[:3] = True
    save_mask(str(tmp_path), 1, 3, a)
    entries = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 8, 3], "score": 0.5,
                "segmentation": mask_to_rle(np.ones((6, 8), bool))}]
    out = apply_saved_masks(entries, str(tmp_path))
    np.testing.assert_array_equal(rle_to_mask(out[0]["segmentation"]), a)
    assert entries[0]["segmentation"] == mask_to_rle(np.ones((6, 8), bool))  # the input is not changed
    with pytest.raises(DatasetError, match="1_3.png: mask of size 6x8, the result's is 5x8"):
        apply_saved_masks([{**entries[0], "segmentation": mask_to_rle(np.ones((5, 8), bool))}], str(tmp_path))
    with pytest.raises(DatasetError, match="2_3.png: saved mask not found"):
        apply_saved_masks([{**entries[0], "image_id": 2}], str(tmp_path))
    with pytest.raises(DatasetError, match="no saved masks"):
        apply_saved_masks(entries, str(tmp_path / "elsewhere"))


def _with_masks(path):
    """Give every annotation of a make_coco file a mask (its box) so that mask figures exist."""
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        m = np.zeros((48, 64), bool)
        x, y, w, h = a["bbox"]
        m[y:y + h, x:x + w] = True
        a["segmentation"] = mask_to_rle(m)
        a["area"] = int(m.sum())
    path.write_text(json.dumps(data))
    return path


def test_cli_saved_masks_equal_the_results_and_evaluate_reads_them(tmp_path):
    path = _with_masks(make_coco(tmp_path, 4, bad=()))
    out = tmp_path / "run"
    assert cli_main(["localize", str(path), "--out", str(out), "--model", TINY, "--device", "cpu", "--batch-size",
                     "4", "--top-k", "2", "--workers", "0", "--segment-workers", "0", "--quiet", "--no-eval",
                     "--save-masks"]) == 0
    results = json.loads((out / "results.json").read_text())
    saved = list(iter_saved_masks(str(out)))
    assert len(saved) == len(results) == 8
    for r in results:
        np.testing.assert_array_equal(load_mask(mask_path(str(out), r["image_id"], r["category_id"])),
                                      rle_to_mask(r["segmentation"]))
    plain = evaluate_results(str(out / "results.json"), str(path))
    from_png = evaluate_results(str(out / "results.json"), str(path), masks_dir=str(out))
    assert plain["mask_gt_known"] == from_png["mask_gt_known"] and plain["coco_segm"] == from_png["coco_segm"]
    # a changed PNG changes the figures: evaluate really reads the files
    r = results[0]
    save_mask(str(out), r["image_id"], r["category_id"], ~rle_to_mask(r["segmentation"]))
    changed = evaluate_results(str(out / "results.json"), str(path), masks_dir=str(out))
    assert changed["coco_segm"] != plain["coco_segm"] or changed["mask_gt_known"] != plain["mask_gt_known"]
    figures = tmp_path / "f.json"
    assert cli_main(["evaluate", str(out / "results.json"), str(path), "--masks", str(out), "--out",
                     str(figures)]) == 0
    assert json.loads(figures.read_text())["mask_gt_known"] == json.loads(json.dumps(changed["mask_gt_known"]))
