"""Maps fused over scales and mirror images (wsloc.saliency.multiscale)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_saliency_known import SmallCNN as GapNet  # conv-ReLU-conv-ReLU, GAP, linear (CAM applies)
from wsloc.errors import MethodError
from wsloc.normalize import normalize_maps
from wsloc.saliency import attribute, multiscale


def _x(n=3, h=12, w=10, seed=1):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_peak_normalisation_by_hand():
    m = torch.tensor([[[[-1.0, 2.0], [1.0, 4.0]], [[-3.0, -1.0], [-2.0, -5.0]]]])
    out = normalize_maps(m, "peak")
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(out[0, 1], torch.zeros(2, 2))  # no positive evidence: nothing


@pytest.mark.parametrize("method", ["gradient", "cam"])
def test_one_scale_without_flip_is_the_method_itself(method):
    model, x = GapNet(), _x()
    a = attribute(model, x, method=method, top_k=2)
    b = multiscale(model, x, method=method, top_k=2, scales=[1.0], flip=False)
    assert torch.equal(a.maps, b.maps) and torch.equal(a.targets, b.targets)


@pytest.mark.parametrize("method", ["gradient", "cam"])
def test_fusion_is_the_mean_of_the_normalised_runs(method):
    model, x = GapNet(), _x()
    fused = multiscale(model, x, method=method, top_k=2, scales=[1.0, 2.0], flip=True)
    first = attribute(model, x, method=method, top_k=2)
    assert torch.equal(fused.targets, first.targets)  # the first run's classes, explained by every run
    assert torch.allclose(fused.scores, first.scores)
    t = first.targets
    big = F.interpolate(x, size=(24, 20), mode="bilinear", align_corners=False)
    runs = [first.maps,
            attribute(model, x.flip(-1), t, method=method).maps.flip(-1),
            F.interpolate(attribute(model, big, t, method=method).maps, size=(12, 10), mode="bilinear",
                          align_corners=False),
            F.interpolate(attribute(model, big.flip(-1), t, method=method).maps.flip(-1), size=(12, 10),
                          mode="bilinear", align_corners=False)]
    expected = sum(normalize_maps(r, "peak") for r in runs) / 4
    assert fused.maps.shape == (3, 2, 12, 10)
    assert torch.allclose(fused.maps, expected, atol=1e-6)
    assert float(fused.maps.min()) >= 0 and float(fused.maps.max()) <= 1 + 1e-6


def test_flip_of_a_mirror_symmetric_input_changes_nothing_for_a_mirror_symmetric_network():
    model = GapNet()
    with torch.no_grad():  # kernels symmetric left-right: the network commutes with the mirror
        for conv in (model.conv1, model.conv2):
            conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    x = _x(2, 9, 9)  # odd size: the stride-2 samples are mirror images of each other
    x = x + x.flip(-1)
    a = multiscale(model, x, method="cam", top_k=2, scales=[1.0], flip=False)
    b = multiscale(model, x, method="cam", top_k=2, scales=[1.0], flip=True)
    assert torch.allclose(normalize_maps(a.maps, "peak"), b.maps, atol=1e-5)


@pytest.mark.parametrize("scales, flip", [([], False), ([0.0], False), ([1.0, -2.0], False), (["x"], False),
                                          ([1.0], "yes")])
def test_bad_options_are_refused(scales, flip):
    with pytest.raises(MethodError, match="scales|flip"):
        multiscale(GapNet(), _x(), method="cam", scales=scales, flip=flip)


def test_fused_grad_cam_is_fused_cam_on_lite0():
    """The default preset's maps: Grad-CAM on a GAP + linear network is CAM up to a positive
    factor, so after the normalisation the fused maps are the same."""
    from wsloc.models import load_classifier

    clf = load_classifier("efficientnet_lite0")
    x = _x(2, 64, 64)
    a = multiscale(clf, x, method="grad_cam", top_k=2, scales=[1.0, 2.0], flip=True)
    b = multiscale(clf, x, method="cam", top_k=2, scales=[1.0, 2.0], flip=True)
    assert torch.equal(a.targets, b.targets)
    assert torch.allclose(a.maps, b.maps, atol=1e-4)
