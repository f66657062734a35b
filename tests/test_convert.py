"""``wsloc convert SRC --to coco OUT.json`` (issue 14: there was no converter to COCO)."""

import json

import numpy as np
import pytest

from imagenet_helpers import demo_layouts
from wsloc.cli import main
from wsloc.io import CocoDataset, open_dataset


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return demo_layouts(tmp_path_factory.mktemp("layouts"))


@pytest.mark.parametrize("kind", ["xml", "csv"])
def test_converted_file_reads_back_as_the_same_samples(layouts, tmp_path, kind, capsys):
    out = tmp_path / f"{kind}.json"
    assert main(["convert", str(layouts[kind]), "--to", "coco", str(out)]) == 0
    src = open_dataset(layouts[kind])
    assert f"6 images, 6 boxes, 1000 classes -> {out}" in capsys.readouterr().out
    back = CocoDataset(out, image_root=src.image_root)
    assert len(back) == len(src) == 6
    for a, b in zip(src, back):
        assert (a.image_id, a.file_name, a.width, a.height, a.label, a.path) == \
               (b.image_id, b.file_name, b.width, b.height, b.label, b.path)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)
    data = json.loads(out.read_text())
    cats = {c["id"]: c for c in data["categories"]}
    assert cats[281]["wnid"] == "n02123045" and cats[281]["name"] == "tabby"
    # the same annotations as the demo COCO file they were generated from (box pixels unchanged)
    ref = json.loads(layouts["coco"].read_text())
    key = lambda a: (a["image_id"], a["category_id"], [float(v) for v in a["bbox"]])  # noqa: E731
    assert sorted(map(key, data["annotations"])) == sorted(map(key, ref["annotations"]))


def test_convert_refuses_what_it_cannot_do(layouts, tmp_path, capsys):
    out = tmp_path / "a.json"
    out.write_text("{}")
    assert main(["convert", str(layouts["xml"]), str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["convert", str(layouts["xml"]), str(out), "--overwrite"]) == 0
    folder = layouts["xml"] / "JPEGImages"
    assert main(["convert", str(folder), str(tmp_path / "b.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wsloc convert: error: ") and "has no annotations to convert" in err
