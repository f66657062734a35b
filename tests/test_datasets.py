"""Tests of wsloc.io.datasets: COCO / VOC / ImageNet-XML / folder readers, path safety, demo set."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from wsloc.errors import DatasetError
from wsloc.io import (
    CocoDataset,
    FolderDataset,
    Sample,
    VocDataset,
    load_image,
    open_dataset,
)
from wsloc.paths import demo_annotations, demo_images_dir

DEMO_JSON = demo_annotations()


def _img(path, w, h, color=(10, 20, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (w, h), color).save(path)


# ----------------------------------------------------------------- COCO

def _coco(tmp_path, images=None, annotations=None, categories=None, name="ann.json"):
    data = {
        "images": images
        if images is not None
        else [
            {"id": 7, "file_name": "a.jpg", "width": 40, "height": 30, "label": 5},
            {"id": 3, "file_name": "sub/b.png", "width": 20, "height": 10},
            {"id": 9, "file_name": "c.jpg", "width": 8, "height": 8},
        ],
        "annotations": annotations
        if annotations is not None
        else [
            # polygon (a rectangle 2..12 x 4..9)
            {"id": 1, "image_id": 7, "category_id": 0, "bbox": [2, 4, 10, 5],
             "segmentation": [[2, 4, 12, 4, 12, 9, 2, 9]], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0.5, 1.5, 3, 2]},
            # uncompressed RLE: column-major counts on a 10x20 image: 25 zeros, 5 ones, rest zeros
            {"id": 3, "image_id": 3, "category_id": 999, "bbox": [2, 5, 1, 5],
             "segmentation": {"size": [10, 20], "counts": [25, 5, 170]}, "iscrowd": 1},
        ],
        "categories": categories
        if categories is not None
        else [{"id": 0, "name": "tench"}, {"id": 5, "name": "great white shark"},
              {"id": 999, "name": "toilet tissue"}],
    }
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


# pycocotools.mask.decode triggers a NumPy 2 DeprecationWarning inside pycocotools itself.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco_roundtrip(tmp_path):
    root = tmp_path / "images"
    _img(root / "a.jpg", 40, 30)
    _img(root / "sub" / "b.png", 20, 10)
    _img(root / "c.jpg", 8, 8)
    p = _coco(tmp_path)
    ds = CocoDataset(p)
    assert ds.image_root == str(root)  # default: <json dir>/images
    assert ds.ann_file == str(p)
    assert len(ds) == 3
    assert ds.categories == {0: "tench", 5: "great white shark", 999: "toilet tissue"}
    assert ds.coco.getImgIds() == [7, 3, 9]

    s = ds[0]
    assert isinstance(s, Sample)
    assert s.image_id == 7 and s.file_name == "a.jpg"
    assert s.path == str(root / "a.jpg") and os.path.isabs(s.path)
    assert (s.width, s.height) == (40, 30)
    assert s.boxes.dtype == np.float64 and s.boxes.shape == (2, 4)
    np.testing.assert_allclose(s.boxes, [[2, 4, 12, 9], [0.5, 1.5, 3.5, 3.5]])
    assert s.labels.dtype == np.int64
    np.testing.assert_array_equal(s.labels, [0, 5])
    assert s.label == 5  # images[].label wins over the first annotation's class
    assert len(s.masks) == 2 and s.masks[1] is None
    m = mask_utils.decode(s.masks[0])
    assert m.shape == (30, 40)
    assert m[6, 6] == 1 and m[20, 20] == 0 and m[6, 30] == 0

    s = ds[1]
    assert s.file_name == "sub/b.png" and s.path == str(root / "sub" / "b.png")
    np.testing.assert_allclose(s.boxes, [[2, 5, 3, 10]])
    np.testing.assert_array_equal(s.labels, [999])
    assert s.label == 999  # from the first annotation
    m = mask_utils.decode(s.masks[0])
    assert m.shape == (10, 20)
    assert m.sum() == 5 and m[5:10, 2].all()

    s = ds[2]
    assert s.boxes.shape == (0, 4) and s.labels.shape == (0,)
    assert s.label is None and s.masks is None
    assert ds[-1].image_id == 9
    with pytest.raises(IndexError):
        ds[3]
    assert [x.image_id for x in ds] == [7, 3, 9]
    assert load_image(ds[0].path).shape == (30, 40, 3)


def test_coco_image_root_and_missing_size(tmp_path):
    other = tmp_path / "elsewhere"
    _img(other / "x.png", 13, 7)
    p = _coco(
        tmp_path,
        images=[{"id": 1, "file_name": "x.png"}],
        annotations=[{"id": 1, "image_id": 1, "category_id": 1,
                      "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]}],
        categories=[{"id": 1, "name": "thing"}],
    )
    ds = CocoDataset(p, image_root=other)
    s = ds[0]
    assert s.path == str(other / "x.png")
    assert (s.width, s.height) == (13, 7)  # read from the file header
    # bbox derived from the polygon mask
    np.testing.assert_allclose(s.boxes, [[1, 1, 5, 4]], atol=1)


def test_coco_default_root_without_images_folder(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    p = _coco(d)
    assert CocoDataset(p).image_root == str(d)
    assert CocoDataset(p)[0].path == str(d / "a.jpg")


@pytest.mark.parametrize(
    "content,word",
    [
        ("{not json", "json"),
        (json.dumps([1, 2]), "not a coco"),
        (json.dumps({"images": [], "annotations": []}), "categories"),
        (json.dumps({"annotations": [], "categories": []}), "images"),
        (json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 0}],
                     "annotations": [{"id": 1, "image_id": 2, "category_id": 0, "bbox": [0, 0, 1, 1]}]}),
         "unknown image id"),
        (json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 0}],
                     "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}]}),
         "unknown category id"),
    ],
)
def test_coco_malformed(tmp_path, content, word):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DatasetError) as ei:
        CocoDataset(p)
    assert "bad.json" in str(ei.value)
    assert word in str(ei.value).lower()


def test_coco_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        CocoDataset(tmp_path / "none.json")


# ----------------------------------------------------------------- VOC / ImageNet XML

def _voc_xml(filename, w, h, objects, folder="VOC2012"):
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    fn = f"<filename>{filename}</filename>" if filename is not None else ""
    return (
        f"<annotation><folder>{folder}</folder>{fn}<size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>"
    )


def _voc_layout(tmp_path):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    _img(root / "JPEGImages" / "2008_000002.jpg", 50, 40)
    _img(root / "JPEGImages" / "2008_000001.jpg", 30, 20)
    (root / "Annotations" / "2008_000002.xml").write_text(
        _voc_xml("2008_000002.jpg", 50, 40, [("dog", (1, 1, 50, 40)), ("cat", (10, 5, 20, 15))])
    )
    (root / "Annotations" / "2008_000001.xml").write_text(
        _voc_xml("2008_000001.jpg", 30, 20, [("cat", (3, 4, 10, 12))])
    )
    return root


def test_voc_roundtrip(tmp_path):
    root = _voc_layout(tmp_path)
    ds = VocDataset(root)
    assert ds.image_root == str(root / "JPEGImages")
    assert len(ds) == 2
    assert ds.categories == {0: "cat", 1: "dog"}  # sorted names
    s0, s1 = ds[0], ds[1]
    assert (s0.image_id, s0.file_name, s0.width, s0.height) == (0, "2008_000001.jpg", 30, 20)
    assert s0.path == str(root / "JPEGImages" / "2008_000001.jpg")
    # 1-based inclusive -> continuous 0-based: (xmin-1, ymin-1, xmax, ymax)
    np.testing.assert_array_equal(s0.boxes, [[2, 3, 10, 12]])
    assert s0.boxes.dtype == np.float64
    np.testing.assert_array_equal(s0.labels, [0])
    assert s0.label == 0
    assert s1.image_id == 1
    np.testing.assert_array_equal(s1.boxes, [[0, 0, 50, 40], [9, 4, 20, 15]])  # full image box
    np.testing.assert_array_equal(s1.labels, [1, 0])
    assert s1.label is None  # two classes: no image-level label
    assert s1.labels.dtype == np.int64

    ds2 = VocDataset(root, class_names=["background", "dog", "cat"])
    np.testing.assert_array_equal(ds2[1].labels, [1, 2])
    assert ds2.categories[2] == "cat"
    with pytest.raises(DatasetError, match="2008_00000[12].xml"):
        VocDataset(root, class_names=["dog"])

    assert isinstance(open_dataset(root), VocDataset)


def test_imagenet_xml_without_extension(tmp_path):
    xml_dir = tmp_path / "LOC_val"
    img_dir = tmp_path / "val"
    xml_dir.mkdir()
    _img(img_dir / "ILSVRC2012_val_00000002.JPEG", 60, 45)
    _img(img_dir / "ILSVRC2012_val_00000001.jpg", 32, 24)  # renamed extension also found
    (xml_dir / "ILSVRC2012_val_00000001.xml").write_text(
        _voc_xml("ILSVRC2012_val_00000001", 32, 24,
                 [("n02123045", (5, 6, 20, 24)), ("n02123045", (1, 1, 4, 4))], folder="val")
    )
    (xml_dir / "ILSVRC2012_val_00000002.xml").write_text(
        _voc_xml("ILSVRC2012_val_00000002", 60, 45, [("n01440764", (11, 12, 30.0, 40))], folder="val")
    )
    ds = VocDataset(xml_dir, image_dir=img_dir)
    assert len(ds.categories) == 1000
    assert ds.categories[281] == "tabby" and ds.categories[0] == "tench"
    s0, s1 = ds[0], ds[1]
    assert s0.file_name == "ILSVRC2012_val_00000001.jpg"
    assert s0.path == str(img_dir / "ILSVRC2012_val_00000001.jpg")
    assert s1.file_name == "ILSVRC2012_val_00000002.JPEG"
    assert os.path.isfile(s1.path)
    np.testing.assert_array_equal(s0.labels, [281, 281])
    assert s0.label == 281 and s1.label == 0
    np.testing.assert_array_equal(s0.boxes, [[4, 5, 20, 24], [0, 0, 4, 4]])
    np.testing.assert_array_equal(s1.boxes, [[10, 11, 30, 40]])
    assert (s1.width, s1.height) == (60, 45)

    (xml_dir / "ILSVRC2012_val_00000003.xml").write_text(
        _voc_xml("ILSVRC2012_val_00000003", 6, 6, [("n99999999", (1, 1, 2, 2))])
    )
    with pytest.raises(DatasetError, match="ILSVRC2012_val_00000003.xml.*n99999999"):
        VocDataset(xml_dir, image_dir=img_dir)


def test_voc_malformed_xml(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "broken.xml").write_text("<annotation><filename>a.jpg</filename>")
    with pytest.raises(DatasetError, match="broken.xml"):
        VocDataset(d)
    (d / "broken.xml").write_text(_voc_xml("a.jpg", 5, 5, [("cat", ("one", 1, 2, 2))]))
    with pytest.raises(DatasetError, match="broken.xml"):
        VocDataset(d)


def test_voc_missing_size_read_from_file(tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    _img(d / "q.png", 9, 4)
    (d / "q.xml").write_text(
        "<annotation><filename>q.png</filename><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>4</ymax></bndbox></object></annotation>"
    )
    s = VocDataset(d)[0]
    assert (s.width, s.height) == (9, 4)
    np.testing.assert_array_equal(s.boxes, [[0, 0, 9, 4]])


# ----------------------------------------------------------------- folder

def test_folder_dataset(tmp_path):
    root = tmp_path / "imgs"
    _img(root / "b.PNG", 7, 5)
    _img(root / "a.jpg", 4, 3)
    _img(root / "deep" / "c.JpEg", 2, 9)
    (root / "notes.txt").write_text("x")
    (root / "corrupt.jpg").write_bytes(b"garbage, not a jpeg")
    ds = FolderDataset(root)
    assert [s.file_name for s in ds] == ["a.jpg", "b.PNG", "corrupt.jpg", "deep/c.JpEg"]
    s = ds[0]
    assert (s.image_id, s.width, s.height) == (0, 4, 3)
    assert s.path == str(root / "a.jpg")
    assert s.boxes.shape == (0, 4) and s.labels.shape == (0,) and s.label is None
    assert (ds[2].width, ds[2].height) == (-1, -1)  # corrupt: no error at listing time
    assert (ds[3].width, ds[3].height) == (2, 9)
    assert ds[3].path == str(root / "deep" / "c.JpEg")
    assert [s.file_name for s in FolderDataset(root, recursive=False)] == ["a.jpg", "b.PNG", "corrupt.jpg"]
    assert isinstance(open_dataset(root), FolderDataset)


def test_open_dataset_dispatch(tmp_path):
    p = _coco(tmp_path)
    assert isinstance(open_dataset(p), CocoDataset)
    xml_dir = tmp_path / "xmls"
    xml_dir.mkdir()
    (xml_dir / "a.xml").write_text(_voc_xml("a.jpg", 4, 4, [("cat", (1, 1, 4, 4))]))
    imgs = tmp_path / "ims"
    _img(imgs / "a.jpg", 4, 4)
    ds = open_dataset(xml_dir, image_root=imgs)
    assert isinstance(ds, VocDataset) and ds[0].path == str(imgs / "a.jpg")
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "list.txt").write_text("a.jpg\n")
    with pytest.raises(DatasetError, match="list.txt"):
        open_dataset(tmp_path / "list.txt")


# ----------------------------------------------------------------- path safety

@pytest.mark.parametrize("bad", ["../x.jpg", "sub/../../x.jpg", "sub\\..\\..\\x.jpg", "/etc/passwd"])
def test_coco_path_traversal_refused(tmp_path, bad):
    (tmp_path / "images").mkdir()
    p = _coco(tmp_path, images=[{"id": 1, "file_name": bad, "width": 4, "height": 4}],
              annotations=[], categories=[{"id": 0, "name": "a"}])
    with pytest.raises(DatasetError) as ei:
        CocoDataset(p)
    assert "ann.json" in str(ei.value) and repr(bad) in str(ei.value)


def test_coco_absolute_path_inside_root_still_refused(tmp_path):
    _img(tmp_path / "images" / "a.jpg", 4, 4)
    p = _coco(tmp_path, images=[{"id": 1, "file_name": str(tmp_path / "images" / "a.jpg")}],
              annotations=[], categories=[])
    with pytest.raises(DatasetError, match="absolute"):
        CocoDataset(p)


def test_symlink_escaping_root_refused(tmp_path):
    outside = tmp_path / "secret"
    _img(outside / "s.jpg", 4, 4)
    root = tmp_path / "images"
    root.mkdir()
    os.symlink(outside / "s.jpg", root / "link.jpg")
    os.symlink(outside, root / "linkdir")
    for name in ("link.jpg", "linkdir/s.jpg"):
        p = _coco(tmp_path, images=[{"id": 1, "file_name": name}], annotations=[], categories=[])
        with pytest.raises(DatasetError) as ei:
            CocoDataset(p)
        assert name in str(ei.value) and "outside" in str(ei.value)
    # a symlink that stays inside the root is fine
    _img(root / "real.jpg", 4, 4)
    os.symlink(root / "real.jpg", root / "alias.jpg")
    p = _coco(tmp_path, images=[{"id": 1, "file_name": "alias.jpg"}], annotations=[], categories=[])
    assert CocoDataset(p)[0].path == str(root / "alias.jpg")


@pytest.mark.parametrize("bad", ["../x.jpg", "/tmp/x.jpg"])
def test_voc_path_traversal_refused(tmp_path, bad):
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "Annotations" / "evil.xml").write_text(_voc_xml(bad, 4, 4, [("cat", (1, 1, 4, 4))]))
    with pytest.raises(DatasetError) as ei:
        VocDataset(root)
    assert "evil.xml" in str(ei.value) and repr(bad) in str(ei.value)


# ----------------------------------------------------------------- embedded demo set

def test_demo_set_loads_and_boxes_inside():
    ds = CocoDataset(DEMO_JSON)
    assert ds.image_root == demo_images_dir()
    assert len(ds) >= 4
    assert len(ds.categories) == 1000 and ds.categories[281] == "tabby"
    with open(DEMO_JSON) as f:
        data = json.load(f)
    wnid = {c["id"]: c["wnid"] for c in data["categories"]}
    assert wnid[0] == "n01440764" and wnid[999] == "n15075141"
    by_id = {im["id"]: im for im in data["images"]}
    names = set()
    for s in ds:
        names.add(os.path.splitext(s.file_name)[0])
        a = load_image(s.path)
        assert a.shape == (s.height, s.width, 3)
        assert len(s.boxes) >= 1
        assert s.label is not None and 0 <= s.label < 1000
        assert (s.labels == s.label).all()
        assert by_id[s.image_id]["wnid"] == wnid[s.label]
        x0, y0, x1, y1 = s.boxes.T
        assert (x0 >= 0).all() and (y0 >= 0).all()
        assert (x1 <= s.width).all() and (y1 <= s.height).all()
        assert (x1 > x0).all() and (y1 > y0).all()
        # hand-drawn boxes are on an object, not the whole frame or a sliver
        area = (x1 - x0) * (y1 - y0)
        assert (area >= 0.01 * s.width * s.height).all()
    assert {"chelsea", "coffee", "rocket"} <= names
    total = sum(
        os.path.getsize(os.path.join(dp, f))
        for dp, _, fs in os.walk(os.path.dirname(DEMO_JSON))
        for f in fs
    )
    assert total <= 1_000_000
