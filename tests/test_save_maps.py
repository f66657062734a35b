"""``--save-maps``: maps written per image, read back equal to the in-memory maps; PxAP from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_run_helpers import TINY, make_coco, scene, tiny_classifier
from wsloc.boxes import mask_to_rle
from wsloc.cli import main as cli_main
from wsloc.errors import DatasetError
from wsloc.evaluate import evaluate_results, format_table
from wsloc.localizer import Localizer
from wsloc.run.saved_maps import iter_saved_maps, load_image_maps, map_path, save_image_maps


def test_cli_saved_maps_equal_the_in_memory_maps(tmp_path):
    path = make_coco(tmp_path, 5, bad=())
    out = tmp_path / "run"
    assert cli_main(["localize", str(path), "--out", str(out), "--model", TINY, "--device", "cpu", "--batch-size",
                     "4", "--top-k", "3", "--workers", "0", "--segment-workers", "0", "--quiet", "--save-maps"]) == 0
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)
    images = [scene(i) for i in range(5)]
    # the run's batches: images 0-3, then 4
    memory = [m for b in (images[:4], images[4:]) for m in loc.network(loc.preprocess.batch(b)).maps]
    results = json.loads((out / "results.json").read_text())
    saved = list(iter_saved_maps(str(out)))
    assert len(saved) == 5
    for i, d in enumerate(saved):
        assert d["maps"].dtype == np.float16 and d["size"] == (48, 64) and d["image_id"] == 100 + i
        np.testing.assert_allclose(d["maps"].astype(np.float32), memory[i], rtol=2e-3, atol=2e-3 * memory[i].max())
        ranked = sorted((r for r in results if r["image_id"] == d["image_id"]), key=lambda r: r["rank"])
        assert d["classes"].tolist() == [r["category_id"] for r in ranked]


def test_round_trip_and_bad_file(tmp_path):
    maps = np.random.default_rng(0).random((2, 7, 5)).astype(np.float32)
    p = save_image_maps(str(tmp_path), 12, 99, maps, [3, 1], 70, 50)
    assert p == map_path(str(tmp_path), 12) and p.endswith("maps/000012.npz")
    d = load_image_maps(p)
    np.testing.assert_array_equal(d["maps"], maps.astype(np.float16))
    assert d["classes"].tolist() == [3, 1] and d["image_id"] == 99 and d["size"] == (70, 50)
    bad = tmp_path / "maps" / "000013.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DatasetError, match="000013.npz: not a saved-maps file"):
        load_image_maps(str(bad))


def test_pxap_of_saved_maps_hand_computed(tmp_path):
    # 20 x 20 image; category 1: gt rows 0-9, cols 0-9 (100 px). Its map: gt rows 0-4 at 1.0, gt rows 5-9
    # and 100 background px (rows 10-19, cols 0-9) at 0.5, the rest 0. Thresholds <= 0.5: R = 1,
    # P = 100 / 200; above: R = 0.5, P = 1. PxAP = 0.5 * (1 - 0.5) + 1 * 0.5 = 0.75.
    # Category 2 (rows 0-4, cols 15-19) has no saved map: left out and counted.
    gt1 = np.zeros((20, 20), bool)
    gt1[:10, :10] = True
    gt2 = np.zeros((20, 20), bool)
    gt2[:5, 15:] = True
    m = np.zeros((20, 20), np.float32)
    m[:5, :10] = 1.0
    m[5:10, :10] = 0.5
    m[10:, :10] = 0.5
    anns = [{"id": k + 1, "image_id": 7, "category_id": c, "iscrowd": 0, "area": int(g.sum()),
             "bbox": [0, 0, 10, 10], "segmentation": mask_to_rle(g)} for k, (c, g) in enumerate(((1, gt1), (2, gt2)))]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg", "width": 20, "height": 20}],
                               "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    run = tmp_path / "run"
    save_image_maps(str(run), 0, 7, m[None], [1], 20, 20)
    res = run / "results.json"
    res.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    f = evaluate_results(str(res), str(ann), maps_dir=str(run), coco=False)
    assert f["pxap_gt_known"]["pxap"] == pytest.approx(0.75)
    assert f["pxap_gt_known"]["n_pairs"] == 1 and f["pxap_gt_known"]["n_without_map"] == 1
    assert "PxAP of the saved maps" in format_table(f)
    # the same map at half the resolution is resized to the image first (as the segmenter does)
    save_image_maps(str(run), 0, 7, m[None, ::2, ::2], [1], 20, 20)
    f = evaluate_results(str(res), str(ann), maps_dir=str(run), coco=False)
    assert 0.5 < f["pxap_gt_known"]["pxap"] <= 1.0
    # wsloc evaluate finds the maps beside the results file
    assert cli_main(["evaluate", str(res), str(ann), "--no-coco"]) == 0
