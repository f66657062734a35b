"""Ground truth is validated when the dataset opens: one line per problem, ids normalised."""

import json

import numpy as np
import pytest

from wsloc.errors import DatasetError
from wsloc.io import CocoDataset, VocDataset
from wsloc.io.validate import MAX_LINES, rle_counts


def _coco(tmp_path, images=None, annotations=None, categories=None, name="gt.json"):
    data = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": annotations if annotations is not None else [],
        "categories": categories if categories is not None else [{"id": 0, "name": "zero"}, {"id": 7, "name": "seven"}],
    }
    p = tmp_path / name
    p.write_text(json.dumps(data))  # json writes NaN / Infinity tokens, which json.load reads back
    return p


def _problems(path) -> list[str]:
    with pytest.raises(DatasetError) as ei:
        CocoDataset(path)
    text = str(ei.value)
    head, *lines = text.splitlines()
    assert head.startswith(str(path)) and "in the ground truth" in head
    return [line.strip() for line in lines]


def _ann(k, **kw):
    a = {"id": k, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 10]}
    a.update(kw)
    return a


def test_string_and_int_image_ids_are_one_id_and_a_duplicate(tmp_path):
    p = _coco(tmp_path, images=[{"id": 1001, "file_name": "a.jpg"}, {"id": "1001", "file_name": "b.jpg"}])
    (line,) = _problems(p)
    assert line == "images[1] (id 1001): id: duplicate of images[0]"


def test_string_ids_are_normalised_to_ints(tmp_path):
    p = _coco(tmp_path, images=[{"id": "1001", "file_name": "a.jpg", "width": 40, "height": 30, "label": "7"}],
              annotations=[_ann(1, image_id="1001", category_id="7")])
    ds = CocoDataset(p)
    s = ds[0]
    assert s.image_id == 1001 and s.label == 7 and s.labels.tolist() == [7]
    assert ds.coco.imgToAnns[1001][0]["image_id"] == 1001


def test_fractional_and_non_numeric_ids_are_refused(tmp_path):
    p = _coco(tmp_path, images=[{"id": 1.5, "file_name": "a.jpg"}, {"id": "abc", "file_name": "b.jpg"},
                                {"id": True, "file_name": "c.jpg"}, {"id": 2.0, "file_name": "d.jpg"}])
    lines = _problems(p)
    assert lines == ["images[0]: id: must be an integer, got 1.5", "images[1]: id: must be an integer, got 'abc'",
                     "images[2]: id: must be an integer, got True"]


def test_bad_boxes_are_each_named(tmp_path):
    anns = [_ann(1), _ann(2, bbox=[1, 2, -3, 4]), _ann(3, bbox=[1, 2, 0, 4]), _ann(4, bbox=[float("nan"), 0, 3, 3]),
            _ann(5, bbox=[0, 0, float("inf"), 3]), _ann(6, bbox=[30, 0, 20, 10]), _ann(7, bbox=[0, 0, 3]),
            _ann(8, bbox=["1", 0, 3, 3])]
    lines = _problems(_coco(tmp_path, annotations=anns))
    assert len(lines) == 7
    assert lines[0] == "annotations[1] (id 2, image 1): bbox: zero or negative size (width -3, height 4)"
    assert lines[1] == "annotations[2] (id 3, image 1): bbox: zero or negative size (width 0, height 4)"
    assert lines[2].startswith("annotations[3] (id 4, image 1): bbox: values must be finite numbers")
    assert lines[3].startswith("annotations[4] (id 5, image 1): bbox: values must be finite numbers")
    assert lines[4] == "annotations[5] (id 6, image 1): bbox: [30, 0, 50, 10] (xyxy) lies outside the 40x30 image"
    assert lines[5].startswith("annotations[6] (id 7, image 1): bbox: must be [x, y, width, height]")
    assert lines[6].startswith("annotations[7] (id 8, image 1): bbox: values must be finite numbers")


def test_non_integer_labels_categories_and_sizes(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30, "label": 2.5},
              {"id": 2, "file_name": "b.jpg", "width": -4, "height": 30, "label": 3}]
    anns = [_ann(1, category_id="seven"), _ann(2, category_id=9), _ann(3, image_id=5), _ann(4, image_id=1.5)]
    lines = _problems(_coco(tmp_path, images=images, annotations=anns))
    assert lines == [
        "images[0] (id 1): label: must be an integer class id, got 2.5",
        "images[1] (id 2): width: must be a positive integer, got -4",
        "images[1] (id 2): label: unknown category id 3",
        "annotations[0] (id 1, image 1): category_id: must be an integer, got 'seven'",
        "annotations[1] (id 2, image 1): category_id: unknown category id 9",
        "annotations[2] (id 3, image 5): image_id: unknown image id 5",
        "annotations[3] (id 4): image_id: must be an integer, got 1.5",
    ]


def test_malformed_masks_and_polygons(tmp_path):
    from pycocotools import mask as mask_utils

    m = np.zeros((30, 40), np.uint8, order="F")
    m[5:9, 3:20] = 1
    good = mask_utils.encode(m)
    good = {"size": good["size"], "counts": good["counts"].decode("ascii")}
    anns = [
        _ann(1, segmentation=good),
        _ann(2, segmentation={"size": [31, 40], "counts": [31 * 40]}),             # not the image's size
        _ann(3, segmentation={"size": [30, 40], "counts": [10, 5, 3]}),             # covers 18 pixels
        _ann(4, segmentation={"size": [30, 40], "counts": good["counts"] + "~~"}),  # bad character
        _ann(5, segmentation={"size": [30, 40], "counts": [1199, -1, 2]}),          # negative run
        _ann(6, segmentation=[[1, 2, 3, 4]]),                                        # 2 points
        _ann(7, segmentation=[[1, 2, 3, 4, 5]]),                                     # odd length
        _ann(8, segmentation=[[1, 2, 3, "x", 5, 6]]),
        _ann(9, segmentation={"size": [30, 40], "counts": good["counts"][:-1] + "P"}),  # last group says "more"
    ]
    lines = _problems(_coco(tmp_path, annotations=anns))
    assert [line.split(":")[0] for line in lines] == [f"annotations[{k}] (id {k + 1}, image 1)" for k in range(1, 9)]
    assert "RLE size [31, 40] differs from the image's [30, 40]" in lines[0]
    assert "RLE counts cover 18 pixels, not 30x40 = 1200" in lines[1]
    assert "not in the RLE alphabet" in lines[2]
    assert "negative run length" in lines[3]
    assert all("polygon 0 must be at least 3 finite (x, y) pairs" in line for line in lines[4:7])
    assert "cut off" in lines[7]


def test_compressed_rle_decoder_agrees_with_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (40, 33), (120, 90)]:
        for density in (0.0, 0.1, 0.5, 1.0):
            m = np.asfortranarray((rng.random(shape) < density).astype(np.uint8))
            runs = rle_counts(mask_utils.encode(m)["counts"])
            assert sum(runs) == m.size and min(runs) >= 0
            flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)  # runs alternate 0, 1, 0, ...
            np.testing.assert_array_equal(flat.reshape(shape[::-1]).T, m)


def test_listing_is_capped(tmp_path):
    anns = [_ann(k, bbox=[0, 0, 0, 0]) for k in range(1, 31)]
    with pytest.raises(DatasetError) as ei:
        CocoDataset(_coco(tmp_path, annotations=anns))
    lines = str(ei.value).splitlines()
    assert lines[0].endswith("30 problems in the ground truth:")
    assert len(lines) == 1 + MAX_LINES + 1 and lines[-1].strip() == f"... and {30 - MAX_LINES} more"


def test_duplicate_and_missing_annotation_ids(tmp_path):
    lines = _problems(_coco(tmp_path, annotations=[_ann(4), _ann(4)]))
    assert lines == ["annotations[1] (id 4): id: duplicate of annotations[0]"]
    anns = [_ann(4), {"image_id": 1, "category_id": 0, "bbox": [0, 0, 2, 2]}]
    ds = CocoDataset(_coco(tmp_path, annotations=anns, name="noid.json"))  # pycocotools needs ids: filled in
    assert sorted(ds.coco.anns) == [4, 5] and ds[0].labels.tolist() == [7, 0]


def test_voc_bad_boxes_in_several_files_are_listed_together(tmp_path):
    def xml(name, box, size=(50, 40)):
        x0, y0, x1, y1 = box
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"</size><object><name>cat</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object></annotation>")

    xml("a", (5, 5, 20, 20))
    xml("b", (20, 5, 10, 20))            # xmax < xmin
    xml("c", ("nan", 5, 10, 20))
    xml("d", (5, 5, 90, 20))              # beyond the 50 px width
    xml("e", (5, 5, 10, 10), size=(50.5, 40))
    with pytest.raises(DatasetError) as ei:
        VocDataset(tmp_path)
    head, *lines = str(ei.value).splitlines()
    assert head.endswith("4 problems in the ground truth:")
    assert [line.strip().split("/")[-1].split(":")[0] for line in lines] == ["b.xml", "c.xml", "d.xml", "e.xml"]
    assert "bndbox: zero or negative size" in lines[0] and "finite" in lines[1] and "outside the 50x40" in lines[2]
    assert "size: width and height must be integers" in lines[3]


def test_real_datasets_still_open():
    from wsloc.paths import demo_annotations

    ds = CocoDataset(demo_annotations())
    assert len(ds) == 6 and all(s.label is not None for s in ds)


def test_evaluate_with_bad_ground_truth_is_one_clear_line_not_a_traceback(tmp_path, capsys):
    from wsloc.cli import main

    gt = _coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                                 {"id": "1", "file_name": "b.jpg", "width": 40, "height": 30}],
               annotations=[_ann(1)])
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 10], "score": 1.0}]))
    assert main(["evaluate", str(res), str(gt), "--no-coco"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"wsloc evaluate: error: {gt}: 1 problem in the ground truth:")
    assert "images[1] (id 1): id: duplicate of images[0]" in err
