"""Grad-CAM without a backward pass on GAP + linear models (issue 17).

On a network ending in global average pooling and one linear layer, Grad-CAM's weights at the
pooled feature map are the linear weights divided by ``h w``; ``grad_cam(shortcut=True)`` (the
default) computes them without autograd. These tests check that the default preset's *output*
(classes, masks, boxes) is the same as with the backward pass forced (``shortcut=False``), on
the demo set with Lite0's weights and with random weights, and that no backward pass runs.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch
from torch import nn

import wsloc.io
from wsloc.errors import MethodError
from wsloc.localizer import Localizer
from wsloc.models import Preprocess, load_classifier
from wsloc.paths import demo_images_dir
from wsloc.saliency import attribute
from wsloc.saliency.multiscale import multiscale

from test_saliency_known import SmallCNN as GapNet  # conv-ReLU-conv-ReLU, GAP, linear


def _demo_images(n=None):
    paths = sorted(glob.glob(os.path.join(demo_images_dir(), "*.jpg")))[:n]
    return [wsloc.io.load_image(p) for p in paths]


def _assert_same_output(a, b):
    """Two lists of ImageLocalization: the same classes, scores, masks and boxes, exactly."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert [c.class_id for c in ra.classes] == [c.class_id for c in rb.classes]
        for ca, cb in zip(ra.classes, rb.classes):
            assert ca.score == cb.score and ca.flag == cb.flag
            assert np.array_equal(ca.mask, cb.mask)
            assert np.array_equal(ca.box, cb.box)
            assert np.array_equal(ca.boxes, cb.boxes)


@pytest.fixture(scope="module")
def demo_runs():
    """The default preset on the demo set, with the shortcut and with the backward pass forced."""
    torch.set_num_threads(2)
    images = _demo_images()
    fast = Localizer(device="cpu", fold_batchnorm=False)  # the shortcut alone (the inference copy: below)
    forced = Localizer(device="cpu", classifier=fast.classifier, **{"saliency.options.shortcut": False})
    assert fast.config.saliency.method == "grad_cam" and fast.config.saliency.scales == (1.0, 2.0)
    return images, fast, fast.localize(images), forced.localize(images)


def test_default_preset_output_is_identical_on_the_demo_set(demo_runs):
    _, _, fast, forced = demo_runs
    _assert_same_output(fast, forced)
    for r_fast, r_forced in zip(fast, forced):  # the fused maps themselves, bit for bit
        assert np.array_equal(r_fast.maps, r_forced.maps)


def test_the_maps_are_relu_cam_over_hw_by_an_independent_route(demo_runs):
    # CAM (einsum of the linear weights with the features) is another implementation of the
    # same quantity: Grad-CAM = ReLU(CAM) / (h w) at each scale, up to float rounding.
    images, loc, _, _ = demo_runs
    x = loc.preprocess.batch(images[:2])
    for scale, hw in ((1.0, 7 * 7), (2.0, 14 * 14)):
        xs = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False) \
            if scale != 1.0 else x
        gc = attribute(loc.classifier, xs, None, "grad_cam", 5)
        cam = attribute(loc.classifier, xs, gc.targets, "cam", 5, relu=True)
        peak = gc.maps.amax(dim=(-2, -1), keepdim=True)
        assert float(((gc.maps - cam.maps / hw).abs() / peak).max()) < 1e-5


def test_default_preset_output_is_identical_with_random_lite0_weights():
    torch.set_num_threads(2)
    images = _demo_images(3)
    fast = Localizer(device="cpu", weights=None, fold_batchnorm=False)
    forced = Localizer(device="cpu", weights=None, **{"saliency.options.shortcut": False},
                       classifier=fast.classifier)
    a, b = fast.localize(images), forced.localize(images)
    _assert_same_output(a, b)
    assert all(np.array_equal(ra.maps, rb.maps) for ra, rb in zip(a, b))


def _gap_classifier(seed=0):
    return load_classifier(GapNet(classes=6, seed=seed), preprocess=Preprocess((24, 20), (0.5,) * 3, (0.25,) * 3))


def _random_images(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = rng.integers(0, 60, (30, 40, 3), dtype=np.uint8)
        y, x = rng.integers(0, 15), rng.integers(0, 20)
        im[y:y + 12, x:x + 16] = rng.integers(150, 255, 3, dtype=np.uint8)  # a bright object
        out.append(im)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_preset_output_is_identical_on_a_small_random_model(seed):
    clf = _gap_classifier(seed)
    images = _random_images(5, seed)
    fast = Localizer(classifier=clf, device="cpu", top_k=3, batch_size=2, fold_batchnorm=False)
    forced = Localizer(classifier=clf, device="cpu", top_k=3, batch_size=2, **{"saliency.options.shortcut": False})
    a, b = fast.localize(images), forced.localize(images)
    _assert_same_output(a, b)
    assert all(np.array_equal(ra.maps, rb.maps) for ra, rb in zip(a, b))


@pytest.fixture
def no_backward(monkeypatch):
    """Make every autograd backward raise, so a test can see that none runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("a backward pass ran")

    monkeypatch.setattr(torch.autograd, "grad", refuse)
    monkeypatch.setattr(torch.Tensor, "backward", refuse)


def test_no_backward_pass_on_a_gap_linear_model(no_backward):
    clf = _gap_classifier()
    x = torch.randn(3, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    out = multiscale(clf, x, None, "grad_cam", 3, scales=(1.0, 2.0))
    assert out.maps.shape == (3, 3, 24, 20) and float(out.maps.max()) > 0
    with pytest.raises(AssertionError, match="a backward pass ran"):  # the patch works: forced backward fails
        attribute(clf, x, None, "grad_cam", 3, shortcut=False)


class MlpHead(nn.Module):
    """conv-ReLU, GAP, then two linear layers: not GAP + one linear layer (no shortcut)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(torch.flatten(self.pool(self.relu(self.conv(x))), 1))))


def _count_backward(monkeypatch):
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


def test_other_models_and_layers_keep_the_backward_pass(monkeypatch):
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    calls = _count_backward(monkeypatch)
    mlp = MlpHead()
    a = attribute(mlp, x, None, "grad_cam", 2)
    assert len(calls) == 2  # one backward per class
    b = attribute(mlp, x, None, "grad_cam", 2, shortcut=False)
    assert torch.equal(a.maps, b.maps)
    calls.clear()
    gap = GapNet()
    c = attribute(gap, x, None, "grad_cam", 2, layer="relu1")  # not the pooled layer
    assert len(calls) == 2
    d = attribute(gap, x, None, "grad_cam", 2, layer="relu1", shortcut=False)
    assert torch.equal(c.maps, d.maps)
    calls.clear()
    attribute(gap, x, None, "grad_cam", 2, layer="relu2")  # the pooled layer named explicitly
    assert calls == []


def test_shortcut_option_is_checked():
    with pytest.raises(MethodError, match="shortcut"):
        attribute(GapNet(), torch.zeros(1, 3, 8, 8), None, "grad_cam", 2, shortcut="yes")
