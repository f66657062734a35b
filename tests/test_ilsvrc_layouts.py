"""ImageNet's own layouts are scored directly (issue 14): an ILSVRC XML folder and a Kaggle-style
``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt`` give the same samples, and ``wsloc localize``
prints the same figures on them as on the equivalent COCO file.

The failures: an XML folder was localized but "not scored here"; a ``.csv`` was refused.
"""

import json
import re

import numpy as np
import pytest

from imagenet_helpers import demo_layouts
from wsloc import imagenet
from wsloc.cli import main
from wsloc.errors import DatasetError
from wsloc.io import open_dataset
from wsloc.io.ilsvrc_csv import IlsvrcCsvDataset, read_synset_mapping

MODEL = ["--model", "imagenet_helpers:tiny_imagenet_classifier", "--device", "cpu", "--quiet", "--workers", "0",
         "--segment-workers", "0"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return demo_layouts(tmp_path_factory.mktemp("layouts"))


def test_three_layouts_give_the_same_samples(layouts):
    sets = {k: open_dataset(p) for k, p in layouts.items()}
    assert type(sets["csv"]).__name__ == "IlsvrcCsvDataset"
    for i in range(6):
        a, b, c = (sets[k][i] for k in ("coco", "xml", "csv"))
        for s in (b, c):
            assert (s.image_id, s.file_name, s.width, s.height, s.label) == \
                   (a.image_id, a.file_name, a.width, a.height, a.label)
            np.testing.assert_array_equal(s.boxes, a.boxes)
            np.testing.assert_array_equal(s.labels, a.labels)


def test_csv_boxes_are_read_like_the_xml_ones(tmp_path):
    """1-based inclusive numbers -> continuous xyxy [x_min - 1, y_min - 1, x_max, y_max]; two groups."""
    (tmp_path / "ILSVRC2012_val_00000007.JPEG").write_bytes(b"")
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\n"
                   "ILSVRC2012_val_00000007,n02123045 1 1 10 20 n02123045 5 6 7 8 \n")
    ds = IlsvrcCsvDataset(csv)
    s = ds[0]
    assert s.file_name == "ILSVRC2012_val_00000007.JPEG" and s.label == 281
    np.testing.assert_array_equal(s.boxes, [[0, 0, 10, 20], [4, 5, 7, 8]])


@pytest.mark.parametrize("text, message", [
    ("id,boxes\nx,n02123045 1 1 2 2\n", "first line must be 'ImageId,PredictionString'"),
    ("ImageId,PredictionString\nx,n02123045 1 1 2\n", "line 2: PredictionString must be groups"),
    ("ImageId,PredictionString\nx,n99999999 1 1 2 2\n", "line 2: unknown wnid 'n99999999'"),
    ("ImageId,PredictionString\nx,n02123045 1 a 2 2\n", "line 2: non-numeric box"),
    ("ImageId,PredictionString\nx,n02123045 1 1 2 2\nx,n02123045 1 1 2 2\n", "ImageId 'x' listed twice"),
    ("ImageId,PredictionString\n../x,n02123045 1 1 2 2\n", "path traversal"),
])
def test_bad_csv_is_one_clear_error(tmp_path, text, message):
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text(text)
    with pytest.raises(DatasetError, match=re.escape(message)) as exc:
        open_dataset(csv)
    assert str(csv) in str(exc.value)


def test_synset_mapping_is_the_sorted_wnid_order(tmp_path, layouts):
    """The Kaggle mapping lists the 1000 wnids sorted, which is timm's / the classifiers' index;
    a permuted one is refused, a mapping of other classes gives its own line order."""
    wnids, names = read_synset_mapping(layouts["csv"].parent / "LOC_synset_mapping.txt")
    assert wnids == sorted(wnids) == list(imagenet.wnids()) and names[281] == "tabby, tabby cat"
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\nx,n02123045 1 1 2 2\n")
    perm = list(imagenet.wnids())
    perm[0], perm[1] = perm[1], perm[0]
    (tmp_path / "LOC_synset_mapping.txt").write_text("".join(f"{w} c\n" for w in perm))
    with pytest.raises(DatasetError, match="order other than the sorted-wnid"):
        IlsvrcCsvDataset(csv)
    (tmp_path / "LOC_synset_mapping.txt").write_text("n09999999 thing, stuff\nn02123045 tabby, tabby cat\n")
    ds = IlsvrcCsvDataset(csv)
    assert ds.categories == {0: "thing", 1: "tabby"} and ds[0].label == 1


def _figures(printed: str) -> str:
    """The table lines of ``wsloc localize``'s output (from the IoU line on)."""
    return printed[printed.index("IoU convention"):]


@pytest.mark.slow
def test_localize_prints_the_same_figures_on_the_three_layouts(layouts, tmp_path, capsys):
    printed, metrics = {}, {}
    for kind, path in layouts.items():
        out = tmp_path / kind
        assert main(["localize", str(path), "--out", str(out), *MODEL]) == 0
        printed[kind] = _figures(capsys.readouterr().out)
        metrics[kind] = json.loads((out / "metrics.json").read_text())
    assert "not scored" not in printed["xml"]
    assert printed["xml"] == printed["coco"] and printed["csv"] == printed["coco"]
    m = metrics["coco"]
    assert m["n_images"] == 6 and 0 < m["top5_loc_error"] < 1 and 0 < m["top5_cls_error"] < 1
    for kind in ("xml", "csv"):
        for key in ("top1_loc_error", "top5_loc_error", "top1_cls_error", "top5_cls_error", "gt_known_loc_acc",
                    "coco_bbox", "by_size"):
            assert metrics[kind][key] == m[key]
    assert json.loads((tmp_path / "xml" / "results.json").read_text()) == \
           json.loads((tmp_path / "coco" / "results.json").read_text())
