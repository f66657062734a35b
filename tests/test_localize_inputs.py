"""``wsloc localize IMAGE [IMAGE ...]``, folders and glob patterns (issue 14: ``wsloc localize photo.jpg``
was refused as an "unsupported dataset file")."""

import json
import os

import pytest

from test_run_helpers import TINY, make_folder
from wsloc.cli import main
from wsloc.errors import DatasetError
from wsloc.io.inputs import ImageFiles, expand_images, open_inputs

COMMON = ["--model", TINY, "--device", "cpu", "--quiet", "--workers", "0", "--segment-workers", "0"]
OUTPUTS = ("images.jsonl", "results.json", "errors.json", "config.json", "summary.json")


@pytest.fixture()
def photos(tmp_path):
    make_folder(tmp_path / "a", 3)
    make_folder(tmp_path / "b" / "c", 2)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_expand_files_folders_and_globs_in_order_each_once(photos):
    a0, a1, a2 = (str(photos / "a" / f"img00{i}.png") for i in range(3))
    c0, c1 = (str(photos / "b" / "c" / f"img00{i}.png") for i in range(2))
    assert expand_images([a2, a0]) == [a2, a0]
    assert expand_images([str(photos / "b"), a1]) == [c0, c1, a1]
    assert expand_images([str(photos / "a" / "*1.png"), a1, str(photos / "**" / "img000.png")]) == [a1, a0, c0]
    ds = ImageFiles(expand_images([a0, c1]))
    assert ds.image_root == str(photos) and [s.file_name for s in ds] == ["a/img000.png", "b/c/img001.png"]
    assert (ds[1].width, ds[1].height, ds[1].label, len(ds[1].boxes)) == (64, 48, None, 0)


@pytest.mark.parametrize("args, message", [
    (["missing.jpg"], "missing.jpg: no such file or folder"),
    (["notes.txt"], "notes.txt: not an image file"),
    (["nothing*.jpg"], "nothing*.jpg: no image files match this pattern"),
    (["a/img000.png", "x.json"], "x.json: a dataset file must be the only input"),
])
def test_bad_inputs_are_one_clear_error(photos, args, message, monkeypatch):
    monkeypatch.chdir(photos)
    (photos / "x.json").write_text("{}")
    with pytest.raises(DatasetError, match=message.replace("*", r"\*")):
        open_inputs(args)


def test_one_dataset_or_folder_is_opened_as_before(photos):
    ds, path = open_inputs([str(photos / "a")])
    assert type(ds).__name__ == "FolderDataset" and len(ds) == 3 and path == str(photos / "a")
    ds, path = open_inputs(None)
    assert type(ds).__name__ == "CocoDataset" and path.endswith("annotations.json")


def test_localize_one_photo_writes_the_outputs_and_says_it_is_not_scored(photos, tmp_path, capsys):
    out = tmp_path / "one"
    photo = photos / "a" / "img001.png"
    assert main(["localize", str(photo), "--out", str(out), *COMMON]) == 0
    printed = capsys.readouterr().out
    assert all((out / f).is_file() for f in OUTPUTS) and not (out / "metrics.json").exists()
    not_scored = [line for line in printed.splitlines() if "not scored" in line]
    assert len(not_scored) == 1 and "no ground truth" in not_scored[0]
    recs = [json.loads(x) for x in (out / "images.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in recs] == ["img001.png"] and recs[0]["status"] == "ok"
    assert {r["image_id"] for r in json.loads((out / "results.json").read_text())} == {0}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dataset"]["kind"] == "ImageFiles" and cfg["dataset"]["path"] == str(photo)


def test_localize_several_images_and_a_quoted_glob(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(photos)
    out = tmp_path / "many"
    assert main(["localize", "a/img002.png", "b/**/*.png", "--out", str(out), "--overlays", "1", *COMMON]) == 0
    recs = [json.loads(x) for x in (out / "images.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in recs] == ["a/img002.png", "b/c/img000.png", "b/c/img001.png"]
    assert len(os.listdir(out / "overlays")) == 1
    assert "not scored" in capsys.readouterr().out
