"""wsloc.boxes: components and their boxes, box formats, COCO RLE (box IoU: tests/test_vocabulary.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from wsloc.boxes import (component_boxes, components, largest_component_box, mask_box, mask_to_rle,
                         rle_to_mask, xywh_to_xyxy, xyxy_to_xywh)


def two_blobs() -> np.ndarray:
    m = np.zeros((10, 12), bool)
    m[1:3, 1:4] = True  # rows 1-2, cols 1-3: 6 pixels
    m[5:9, 6:11] = True  # rows 5-8, cols 6-10: 20 pixels
    return m


def test_component_boxes_hand_derived():
    boxes = component_boxes(two_blobs())
    np.testing.assert_array_equal(boxes, [[6, 5, 11, 9], [1, 1, 4, 3]])
    assert boxes.dtype == np.float64
    np.testing.assert_array_equal(largest_component_box(two_blobs()), [6, 5, 11, 9])


def test_single_pixel_box_is_one_pixel_wide():
    m = np.zeros((5, 5), bool)
    m[2, 3] = True
    np.testing.assert_array_equal(largest_component_box(m), [3, 2, 4, 3])
    np.testing.assert_array_equal(mask_box(m), [3, 2, 4, 3])


def test_diagonal_touch_joins_with_8_not_4():
    m = np.zeros((6, 6), bool)
    m[0:2, 0:2] = True
    m[2:5, 2:5] = True  # touches the first block at a corner only
    assert len(component_boxes(m, connectivity=8)) == 1
    np.testing.assert_array_equal(component_boxes(m, 8)[0], [0, 0, 5, 5])
    np.testing.assert_array_equal(component_boxes(m, 4), [[2, 2, 5, 5], [0, 0, 2, 2]])


def test_components_labels_match_boxes_and_areas():
    rng = np.random.default_rng(0)
    m = rng.random((40, 50)) > 0.6
    labels, boxes, areas = components(m)
    assert areas.tolist() == sorted(areas.tolist(), reverse=True)
    assert areas.sum() == m.sum() and ((labels > 0) == m).all()
    for i in range(len(boxes)):
        ys, xs = np.nonzero(labels == i + 1)
        assert len(ys) == areas[i]
        np.testing.assert_array_equal(boxes[i], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_empty_mask():
    m = np.zeros((4, 4), bool)
    assert component_boxes(m).shape == (0, 4)
    assert largest_component_box(m) is None
    assert mask_box(m) is None


def test_equal_areas_keep_raster_order():
    m = np.zeros((5, 5), bool)
    m[3, 0] = m[0, 4] = True
    np.testing.assert_array_equal(component_boxes(m), [[4, 0, 5, 1], [0, 3, 1, 4]])


def test_format_conversions():
    xyxy = np.array([[10.0, 20.0, 15.0, 50.0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), [[10, 20, 5, 30], [0, 0, 1, 1]])
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)
    assert xyxy_to_xywh(np.zeros((2, 3, 4))).shape == (2, 3, 4)
    np.testing.assert_array_equal(xywh_to_xyxy([1, 2, 3, 4]), [1, 2, 4, 6])


def test_rle_roundtrip_and_json():
    rng = np.random.default_rng(2)
    m = rng.random((37, 23)) > 0.5
    rle = mask_to_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 23]
    rle2 = json.loads(json.dumps(rle))
    back = rle_to_mask(rle2)
    assert back.dtype == bool and np.array_equal(back, m)
    assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == m.sum()
    # bytes counts and uncompressed (list) counts are read too
    assert np.array_equal(rle_to_mask({"size": [37, 23], "counts": rle["counts"].encode()}), m)
    col = np.asfortranarray(m).ravel(order="F")
    runs, current, n = [], False, 0
    for v in col:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
    assert np.array_equal(rle_to_mask({"size": [37, 23], "counts": runs}), m)


def test_rle_of_empty_and_full_masks():
    for m in (np.zeros((3, 4), bool), np.ones((3, 4), bool)):
        assert np.array_equal(rle_to_mask(mask_to_rle(m)), m)


def test_bad_mask_shape():
    with pytest.raises(ValueError):
        component_boxes(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError):
        components(np.zeros((2, 2), bool), connectivity=6)
