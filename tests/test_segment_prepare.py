"""The two steps of wsloc.segment.segment: maps -> working grid (prepare_maps), then the cuts
(segment_prepared); what the batch runner splits between its main and segmentation processes."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from test_segment_scenes import make_scene
from wsloc.errors import MethodError
from wsloc.run.segment_worker import SegmentJob, segment_job
from wsloc.segment import PreparedMaps, SegmentConfig, prepare_maps, segment, segment_prepared
from wsloc.segment.seeds import resize_map, working_image


def _maps(sal: np.ndarray) -> np.ndarray:
    """Five maps of one scene: the scene's map, one with NaNs, one all NaN, a constant one, one salient pixel."""
    partial = sal.copy()
    partial[:5, :7] = np.nan
    one = np.zeros_like(sal)
    one[30, 30] = 1.0
    return np.stack([sal, partial, np.full_like(sal, np.nan), np.full_like(sal, 2.0), one])


def test_prepared_maps_are_the_working_grid_with_the_full_maps_flags():
    image, _, sal = make_scene(1, map_size=(224, 224))  # 150 x 200 image
    p = prepare_maps(_maps(sal), (150, 200), SegmentConfig(max_side=80, saliency_resize="nearest"))
    assert p.size == (150, 200) and p.maps.shape == (5, 60, 80) and p.maps.dtype == np.float32
    assert p.flags == [None, "partial_nan_saliency", "nan_saliency", "constant_saliency", None]
    assert not p.maps[2].any() and not p.maps[3].any()
    assert np.isfinite(p.maps).all() and len(p) == 5 and len(p.seconds) == 5
    np.testing.assert_array_equal(p.maps[0], resize_map(sal, (60, 80), "nearest"))
    # the one salient pixel (row 30): "nearest" from 224 to 60 rows reads rows 0, 3, 7, ..., 26, 29, 33,
    # so the map would be flat; it is shrunk by area instead
    assert not resize_map(_maps(sal)[4], (60, 80), "nearest").any()
    np.testing.assert_array_equal(p.maps[4], resize_map(_maps(sal)[4], (60, 80), "area"))
    assert p.maps[4].max() > 0
    tiny = prepare_maps(sal, (2, 100), SegmentConfig())  # shorter side < min_side (3)
    assert tiny.flags == ["tiny_image"] and tiny.maps.shape == (1, 2, 80)


@pytest.mark.parametrize("change", [{}, {"box_rule": "mass"}, {"algorithm": "threshold"},
                                    {"seed_rule": "fraction", "q_fg": 40.0, "q_bg": 20.0, "map_weight": 1.0},
                                    {"saliency_resize": "bicubic", "saliency_blur": 0.5, "max_side": 64}])
def test_the_two_steps_on_the_working_copy_give_segment_of_the_whole_image(change):
    image, _, sal = make_scene(2)
    config = SegmentConfig().replace(**change)
    maps = _maps(sal)
    whole = segment(image, maps, config)
    prepared = prepare_maps(maps, image.shape[:2], config)
    split = segment_prepared(working_image(image, config.max_side), prepared, config)
    assert [s.flag for s in whole] == [s.flag for s in split]
    assert whole[0].flag is None and whole[1].flag == "partial_nan_saliency"
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.box, b.box)


def test_prepared_maps_of_another_grid_are_refused():
    image, _, sal = make_scene(3)
    prepared = prepare_maps(sal, image.shape[:2], SegmentConfig(max_side=64))
    with pytest.raises(MethodError, match="working grid"):
        segment_prepared(image, prepared, SegmentConfig(max_side=80))
    with pytest.raises(MethodError, match="saliency must be"):
        prepare_maps(np.zeros((2, 3, 4, 5)), image.shape[:2])


def test_a_job_with_prepared_maps_gives_the_record_of_full_maps_in_a_tenth_of_the_bytes():
    image, _, sal = make_scene(4, shape=(240, 320), map_size=(224, 224))
    maps = np.stack([sal, sal[::-1], sal[:, ::-1], sal.T, 1.0 - sal])  # five 224 x 224 maps, like the default preset
    config = SegmentConfig().replace(box_rule="mass")
    full = SegmentJob(index=0, image_id=9, file_name="a.png", path=None, image=working_image(image, config.max_side),
                      maps=maps, classes=np.arange(5), logits=np.linspace(3, 1, 5).astype(np.float32),
                      probs=np.linspace(0.5, 0.1, 5).astype(np.float32), names=None, config=config,
                      size=(240, 320))
    lean = SegmentJob(**{**full.__dict__, "maps": prepare_maps(maps, (240, 320), config)})
    assert isinstance(lean.maps, PreparedMaps) and lean.maps.maps.shape == (5, 60, 80)
    assert json.dumps(segment_job(lean)[0]) == json.dumps(segment_job(full)[0])
    assert len(pickle.dumps(lean)) < len(pickle.dumps(full)) / 8  # 5 x 60 x 80 floats instead of 5 x 224 x 224
