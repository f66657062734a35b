"""The batch runner in-process: outputs, bad inputs, determinism, resume and shards (tiny model)."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from test_run_helpers import make_coco, make_folder, tiny_classifier
from wsloc.boxes import rle_to_mask
from wsloc.io import open_dataset
from wsloc.localizer import Localizer
from wsloc.run import RunOptions, merge, run_dataset

K = 3


@pytest.fixture(scope="module")
def loc():
    return Localizer(classifier=tiny_classifier(), device="cpu", top_k=K, batch_size=4)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"), 14)


def _run(loc, dataset, out, **kw):
    kw.setdefault("workers", 0)
    kw.setdefault("segment_workers", 0)
    return run_dataset(loc, dataset, RunOptions(out_dir=str(out), progress=False, **kw), {"path": "test"})


@pytest.fixture(scope="module")
def base(loc, coco, tmp_path_factory):
    """One uninterrupted single-process run over the COCO set with bad files."""
    out = tmp_path_factory.mktemp("base")
    summary = _run(loc, open_dataset(str(coco)), out)
    return out, summary


def _bytes(out, *names):
    return {n: (out / n).read_bytes() for n in names}


FINAL = ("results.json", "errors.json", "images.jsonl")


def test_outputs_of_a_run(base, coco):
    out, summary = base
    assert summary["complete"] and summary["images"] == 18 and summary["ok"] == 14 and summary["errors"] == 4
    for name in ("images.jsonl", "results.json", "errors.json", "config.json", "summary.json"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 14 * K
    gt = json.loads(coco.read_text())
    ok_ids = [im["id"] for im in gt["images"] if im["file_name"].startswith("img")]
    assert [r["image_id"] for r in results] == [i for i in ok_ids for _ in range(K)]  # dataset order, then rank
    assert [r["rank"] for r in results] == [1, 2, 3] * 14
    for r in results:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 64 and y + h <= 48
        mask = rle_to_mask(r["segmentation"])
        assert mask.shape == (48, 64) and mask.any()
        assert 0 <= r["score"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["localizer"]["top_k"] == K and config["localizer"]["batch_size"] == 4
    assert {"torch", "numpy", "wsloc"} <= set(config["versions"])
    stages = summary["stage_seconds"]
    for key in ("decode", "network", "colour_models", "graph_cut", "boxes", "writing"):
        assert key in stages and stages[key] >= 0
    assert summary["stage_seconds"]["network"] > 0 and summary["memory_mb"]["peak_main"] > 0


def test_bad_inputs_are_recorded_with_their_reason(base):
    out, _ = base
    errors = json.loads((out / "errors.json").read_text())
    by_name = {e["file_name"]: e for e in errors}
    assert set(by_name) == {"corrupt.jpg", "empty.jpg", "missing.jpg", "dot.png"}
    assert "truncated" in by_name["corrupt.jpg"]["reason"]
    assert "empty" in by_name["empty.jpg"]["reason"]
    assert "not found" in by_name["missing.jpg"]["reason"]
    assert "too small" in by_name["dot.png"]["reason"]
    assert all(e["stage"] == "decode" for e in errors)


def test_huge_image_is_refused_and_recorded(loc, tmp_path):
    folder = make_folder(tmp_path / "imgs", 2)
    cv2.imwrite(str(folder / "big.png"), np.full((120, 100, 3), 200, np.uint8))
    summary = _run(loc, open_dataset(str(folder)), tmp_path / "out", max_pixels=100 * 100)
    errors = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert summary["ok"] == 2 and [e["file_name"] for e in errors] == ["big.png"]
    assert "too large" in errors[0]["reason"]


def test_results_do_not_depend_on_worker_processes(loc, coco, base, tmp_path):
    """Decoding in a DataLoader worker and segmenting in a spawned pool gives the same bytes."""
    _run(loc, open_dataset(str(coco)), tmp_path, workers=1, segment_workers=1, overlays=3)
    assert _bytes(tmp_path, *FINAL) == _bytes(base[0], *FINAL)
    pngs = sorted(os.listdir(tmp_path / "overlays"))  # the first 3 images: img000, corrupt.jpg, img001
    assert pngs == ["0000000_img000.png", "0000002_img001.png"] and cv2.imread(str(tmp_path / "overlays" / pngs[0])) is not None


def test_resume_after_a_crash_recomputes_nothing_done_and_gives_the_same_bytes(loc, coco, base, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base[0], out)
    lines = (out / "images.jsonl").read_bytes().split(b"\n")
    # a crash after 6 images, in the middle of writing the 7th line; no final files yet
    (out / "images.jsonl").write_bytes(b"\n".join(lines[:6]) + b"\n" + lines[6][:25])
    for name in ("results.json", "errors.json", "summary.json"):
        (out / name).unlink()
    summary = _run(loc, open_dataset(str(coco)), out, resume=True)
    assert summary["done_before"] == 6 and summary["processed"] == 12
    assert _bytes(out, *FINAL) == _bytes(base[0], *FINAL)


def test_resume_refuses_other_options_and_needs_a_choice(loc, coco, base, tmp_path):
    from wsloc.errors import WslocError

    out = tmp_path / "run"
    shutil.copytree(base[0], out)
    with pytest.raises(WslocError, match="--resume"):
        _run(loc, open_dataset(str(coco)), out)
    other = Localizer(classifier=tiny_classifier(), device="cpu", top_k=2, batch_size=4)
    with pytest.raises(WslocError, match="top_k"):
        _run(other, open_dataset(str(coco)), out, resume=True)


def test_shards_merged_equal_the_single_run(loc, coco, base, tmp_path):
    for i in range(3):
        s = _run(loc, open_dataset(str(coco)), tmp_path, shard=(i, 3))
        assert s["complete"]
    assert sorted(os.listdir(tmp_path / "shards")) == ["00000-of-00003", "00001-of-00003", "00002-of-00003"]
    summary = merge(str(tmp_path))
    assert summary["images"] == 18 and summary["errors"] == 4
    assert _bytes(tmp_path, *FINAL) == _bytes(base[0], *FINAL)


def test_limit_runs_a_prefix(loc, coco, base, tmp_path):
    summary = _run(loc, open_dataset(str(coco)), tmp_path, limit=5)
    assert summary["images"] == 5
    assert (tmp_path / "images.jsonl").read_bytes() == b"".join(
        line + b"\n" for line in (base[0] / "images.jsonl").read_bytes().split(b"\n")[:5])
