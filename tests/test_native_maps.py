"""Maps at the photo's own aspect ratio and their pyramid (wsloc.saliency.native_multiscale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from wsloc.errors import MethodError
from wsloc.models import Preprocess
from wsloc.models.preprocess import native_size
from wsloc.saliency import multiscale
from wsloc.saliency.multiscale import native_multiscale

PLAIN = Preprocess((32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # x = image / 255


class BrightNet(nn.Module):
    """Fully convolutional: class 0 = bright pixels (above 0.5), pooled to a stride-8 grid, then GAP + linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.relu = nn.ReLU()
        self.grid = nn.AvgPool2d(8, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 3.0)
            self.conv.bias.fill_(-0.5)
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.grid(self.relu(self.conv(x)))), 1))


def wide_image(h=120, w=320, box=(50, 70, 240, 260)):
    """A dark wide photo with one small bright square ``box = (y0, y1, x0, x1)``."""
    image = np.full((h, w, 3), 20, np.uint8)
    y0, y1, x0, x1 = box
    image[y0:y1, x0:x1] = 250
    return image, box


def test_native_size_keeps_the_aspect_and_rounds_to_32():
    assert native_size(375, 500, 640) == (480, 640)
    assert native_size(500, 375, 640) == (640, 480)
    assert native_size(375, 500, 448) == (320, 448)  # 336 = 10.5 x 32: halves round to even
    assert native_size(10, 1000, 224) == (32, 224)  # never below one multiple
    x = PLAIN.native(wide_image()[0], 256)  # 120 x 320 -> 96 x 256
    assert x.shape == (3, 96, 256) and x.dtype == torch.float32


def test_native_map_has_the_photo_aspect_and_its_peak_on_the_object():
    image, (y0, y1, x0, x1) = wide_image()
    out = native_multiscale(BrightNet(), [image], PLAIN, targets=[0], method="grad_cam", long_side=256)
    assert len(out) == 1
    m = out[0].maps[0, 0]
    assert tuple(m.shape) == (96, 256)  # 120 x 320 at a longer side of 256: the photo's own aspect
    r, c = np.unravel_index(int(m.argmax()), m.shape)
    sy, sx = image.shape[0] / m.shape[0], image.shape[1] / m.shape[1]
    assert y0 <= (r + 0.5) * sy <= y1 and x0 <= (c + 0.5) * sx <= x1


def test_pyramid_peak_on_the_object_and_finer_than_the_coarse_scale():
    image, (y0, y1, x0, x1) = wide_image()
    model = BrightNet()
    fused = native_multiscale(model, [image], PLAIN, targets=[0], method="grad_cam", long_side=128,
                              scales=(4.0, 2.0, 1.0))[0].maps[0, 0]
    assert tuple(fused.shape) == (192, 512)  # the first (finest) scale's grid
    assert float(fused.max()) == pytest.approx(1.0, abs=1e-6) and float(fused.min()) >= 0  # mean of peak-normalised
    r, c = np.unravel_index(int(fused.argmax()), fused.shape)
    sy, sx = image.shape[0] / fused.shape[0], image.shape[1] / fused.shape[1]
    assert y0 <= (r + 0.5) * sy <= y1 and x0 <= (c + 0.5) * sx <= x1
    # more of the map's mass on the object than the coarse scale alone puts there
    coarse = native_multiscale(model, [image], PLAIN, targets=[0], method="grad_cam", long_side=128)[0].maps[0, 0]

    def on_object(m):
        m = torch.nn.functional.interpolate(m.detach()[None, None], size=image.shape[:2], mode="bilinear")[0, 0]
        return float(m[y0:y1, x0:x1].sum() / m.sum())

    assert on_object(fused) > on_object(coarse)


def test_squashed_multiscale_is_square_native_is_not():
    image, _ = wide_image()
    model = BrightNet()
    square = multiscale(model, Preprocess((64, 64), mean=(0, 0, 0), std=(1, 1, 1)).batch([image]), [0],
                        method="grad_cam", scales=(1.0, 2.0)).maps
    native = native_multiscale(model, [image], PLAIN, targets=[0], method="grad_cam", long_side=128,
                               scales=(2.0, 1.0))[0].maps
    assert square.shape[-2] == square.shape[-1]
    assert native.shape[-1] / native.shape[-2] == pytest.approx(320 / 120, rel=0.15)


def test_classes_from_the_squashed_pass_and_images_of_several_sizes():
    model = BrightNet()
    a, _ = wide_image()
    b = np.full((120, 40, 3), 20, np.uint8)  # tall
    out = native_multiscale(model, [a, b], PLAIN, top_k=1, method="grad_cam", long_side=64)
    assert [tuple(o.maps.shape[-2:]) for o in out] == [(32, 64), (64, 32)]
    logits = model(PLAIN.batch([a]))
    assert int(out[0].targets[0, 0]) == int(logits.argmax()) == 0  # the squashed pass's class
    assert torch.allclose(out[0].logits, logits, atol=1e-6)
    with pytest.raises(MethodError):
        native_multiscale(model, [], PLAIN)


def test_random_weight_lite0_runs_at_the_photo_aspect():
    from wsloc.models import efficientnet_lite

    net = efficientnet_lite("efficientnet_lite0", pretrained=False).eval()
    image = np.random.default_rng(0).integers(0, 255, (150, 400, 3), dtype=np.uint8)
    out = native_multiscale(net, [image], Preprocess(), targets=[3], method="grad_cam", long_side=320)[0]
    assert tuple(out.maps.shape) == (1, 1, 128, 320)  # 150 x 400 -> 120 x 320 -> 128 x 320


def test_squashed_pass_map_is_fused_with_the_native_runs():
    from wsloc.normalize import normalize_maps
    from wsloc.saliency import attribute
    from wsloc.saliency.core import upsample_maps

    image, (y0, y1, x0, x1) = wide_image()
    model = BrightNet()
    both = native_multiscale(model, [image], PLAIN, targets=[0], method="grad_cam", long_side=256, squashed=True)[0]
    native = native_multiscale(model, [image], PLAIN, targets=[0], method="grad_cam", long_side=256)[0].maps
    square = attribute(model, PLAIN.batch([image]), [0], method="grad_cam")
    expected = (normalize_maps(native, "peak") + normalize_maps(upsample_maps(square.maps, (96, 256)), "peak")) / 2
    assert tuple(both.maps.shape) == (1, 1, 96, 256)
    assert torch.allclose(both.maps, expected, atol=1e-6)
    assert torch.allclose(both.logits, square.logits, atol=1e-6)

