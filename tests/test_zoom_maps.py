"""Zoomed-in maps for small objects (wsloc.saliency.zoom)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from wsloc.errors import MethodError
from wsloc.models import Preprocess
from wsloc.saliency import attribute
from wsloc.saliency.zoom import box_share, paste_zoom, should_zoom, zoom_crop, zoom_map, zoom_region

RAW = Preprocess((32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # network input = pixels / 255


class WhiteSpotNet(nn.Module):
    """Fully convolutional toy classifier: class 1 fires on white pixels (channel mean above 0.6),
    seen through a stride-8 average grid; global average pool and a linear layer. Counts its calls."""

    def __init__(self):
        super().__init__()
        self.detect = nn.Conv2d(3, 1, 1)
        self.act = nn.ReLU()
        self.cells = nn.AvgPool2d(8, 8)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(1, 2)
        self.calls = 0
        with torch.no_grad():
            self.detect.weight.fill_(1.0 / 3.0)
            self.detect.bias.fill_(-0.6)
            self.head.weight.copy_(torch.tensor([[-1.0], [2.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        self.calls += 1
        return self.head(torch.flatten(self.gap(self.cells(self.act(self.detect(x)))), 1))


def photo_with_square(h=240, w=320, square=(100, 118, 200, 218)):
    """Grey photo ``h x w`` with one white square ``(y0, y1, x0, x1)``."""
    image = np.full((h, w, 3), 90, np.uint8)
    y0, y1, x0, x1 = square
    image[y0:y1, x0:x1] = 255
    return image, square


def coarse_map(model, image):
    """The first map: the toy network's Grad-CAM of class 1 on the photo squashed to 32 x 32 (a 4 x 4
    grid upsampled: one blurry blob several times the square's size)."""
    return attribute(model, RAW.batch([image]), torch.tensor([[1]]), "grad_cam", 1,
                     layer="cells").maps[0, 0].detach().numpy()


def level_box(m, size, level):
    """xyxy box (image frame) of the map's pixels at >= level of its maximum."""
    return zoom_region(m, size, level)


def test_zoom_puts_a_small_square_s_peak_and_box_inside_it():
    image, (y0, y1, x0, x1) = photo_with_square()
    size = image.shape[:2]
    model = WhiteSpotNet()
    first = coarse_map(model, image)
    before = level_box(first, size, 0.5)
    # the coarse map's half-maximum region is far larger than the 18 x 18 square
    assert box_share(before, size) > 5 * (18 * 18) / (size[0] * size[1])
    out = zoom_map(model, image, RAW, first, 1, box=None, level=0.5, margin=0.5, side=256, layer="cells")
    assert out.zoomed and out.pixels > 0 and out.crop is not None
    cx0, cy0, cx1, cy1 = out.crop
    assert cx0 <= x0 and cy0 <= y0 and cx1 >= x1 and cy1 >= y1  # the crop holds the square
    m = out.maps
    assert m.shape == (168, 224) and m.dtype == np.float32  # the image's aspect at a longer side of 224
    assert 0.0 <= float(m.min()) and float(m.max()) <= 1.0 + 1e-6
    r, c = np.unravel_index(int(m.argmax()), m.shape)
    sy, sx = size[0] / m.shape[0], size[1] / m.shape[1]
    assert y0 <= (r + 0.5) * sy <= y1 and x0 <= (c + 0.5) * sx <= x1
    after = level_box(m, size, 0.75)
    slack = 4  # px: one cell of the paste grid is about 1.4 px of the photo
    assert after[0] >= x0 - slack and after[1] >= y0 - slack and after[2] <= x1 + slack and after[3] <= y1 + slack
    assert box_share(after, size) < box_share(before, size) / 4


def test_gate_leaves_a_large_object_s_map_unchanged_and_runs_nothing():
    image, _ = photo_with_square(square=(20, 220, 30, 290))  # a white block over most of the photo
    size = image.shape[:2]
    model = WhiteSpotNet()
    first = coarse_map(model, image)
    calls = model.calls
    big_box = np.array([30.0, 20.0, 290.0, 220.0])  # the first mask's box: 68 % of the photo
    assert not should_zoom(big_box, size, 0.2)
    out = zoom_map(model, image, RAW, first, 1, box=big_box, max_share=0.2, layer="cells")
    assert not out.zoomed and out.crop is None and out.pixels == 0
    assert np.array_equal(out.maps, first) and out.maps.dtype == np.float32
    assert model.calls == calls  # no network pass for a gated-off image
    small_box = np.array([200.0, 100.0, 218.0, 118.0])
    assert should_zoom(small_box, size, 0.2)
    assert zoom_map(model, image, RAW, first, 1, box=small_box, max_share=0.2, layer="cells").zoomed
    assert model.calls > calls


def test_zoom_region_is_the_union_box_of_the_cells_above_the_level():
    m = np.zeros((4, 4), np.float32)
    m[1, 2] = 1.0
    m[2, 1] = 0.7
    m[3, 3] = 0.2
    # cells (1, 2) and (2, 1) at >= 0.5: columns 1..2, rows 1..2 of a 4 x 4 grid over a 400 x 200 image
    assert zoom_region(m, (400, 200), 0.5).tolist() == [50.0, 100.0, 150.0, 300.0]
    assert zoom_region(m, (400, 200), 0.9).tolist() == [100.0, 100.0, 150.0, 200.0]
    assert zoom_region(m, (400, 200), 0.1).tolist() == [50.0, 100.0, 200.0, 400.0]
    with pytest.raises(MethodError):
        zoom_region(np.zeros((4, 4)), (400, 200), 0.5)  # no positive maximum
    with pytest.raises(MethodError):
        zoom_region(m, (400, 200), 1.5)


def test_zoom_crop_pads_clips_and_keeps_a_minimum_side():
    assert zoom_crop([100, 50, 140, 70], (200, 300), 0.5) == (80, 40, 160, 80)  # 20 / 10 px of padding
    assert zoom_crop([0, 0, 40, 20], (200, 300), 0.5) == (0, 0, 60, 30)  # clipped at the top-left corner
    assert zoom_crop([280, 190, 300, 200], (200, 300), 1.0) == (260, 180, 300, 200)  # and bottom-right
    assert zoom_crop([100, 100, 102, 101], (200, 300), 0.0, min_side=16) == (93, 92, 109, 109)
    with pytest.raises(MethodError):
        zoom_crop([0, 0, 10, 10], (200, 300), -0.1)


def test_paste_zoom_averages_inside_the_crop_and_halves_outside():
    first = np.full((8, 8), 2.0, np.float32)  # flat: 1 everywhere after peak normalisation
    crop_map = np.zeros((4, 4), np.float32)
    crop_map[1:3, 1:3] = 5.0
    m = paste_zoom(first, crop_map, (40, 40, 80, 80), (100, 100), shape=(10, 10))
    assert m.shape == (10, 10)
    outside = np.ones((10, 10), bool)
    outside[4:8, 4:8] = False
    assert np.allclose(m[outside], 0.5)  # the first map alone, halved
    assert float(m.max()) == pytest.approx(1.0)  # both at their peak in the crop's centre
    assert m[5:7, 5:7].min() > m[4, 4]


def test_box_share_and_gate_threshold():
    assert box_share([0, 0, 50, 40], (100, 100)) == pytest.approx(0.2)
    assert not should_zoom([0, 0, 50, 40], (100, 100), 0.2)  # strictly below the share
    assert should_zoom([0, 0, 50, 39], (100, 100), 0.2)
    assert box_share([10, 10, 5, 20], (100, 100)) == 0.0
