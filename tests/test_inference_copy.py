"""The forward-only maps' network (issue 17): BN folded, activations in place, small chunks.

With ``LocalizerConfig.fold_batchnorm=None`` (the default) a method that needs only the forward
pass (CAM; Grad-CAM at a GAP + linear model's last feature map, the default preset) runs on
:func:`wsloc.models.inference.inference_copy` of the classifier, in chunks of at most
``CPU_FORWARD_PIXELS`` input pixels on a CPU. These tests check that the default preset's
*segmentation output* is the one of the plain network, that nothing of the user's classifier
changes, and each step on small hand-made cases.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch
from torch import nn

import wsloc.io
from wsloc.localizer import Localizer
from wsloc.models import Preprocess, load_classifier
from wsloc.models.inference import fold_batchnorm, inference_copy, inplace_activations
from wsloc.paths import demo_images_dir
from wsloc.saliency.cam import forward_only_maps
from wsloc.saliency.core import CPU_FORWARD_PIXELS
from wsloc.saliency.multiscale import multiscale


class BnNet(nn.Module):
    """conv-BN-ReLU6-conv-BN-ReLU, GAP, linear: BN to fold, activations to make in place."""

    def __init__(self, seed=0, classes=4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1, self.bn1, self.act1 = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU6()
        self.conv2, self.bn2, self.act2 = nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, classes)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):  # statistics that make folding do something
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
                bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        self.eval()

    def forward(self, x):
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _demo_images():
    return [wsloc.io.load_image(p) for p in sorted(glob.glob(os.path.join(demo_images_dir(), "*.jpg")))]


def test_default_preset_segmentation_is_that_of_the_plain_network_on_the_demo_set():
    torch.set_num_threads(2)
    images = _demo_images()
    fast = Localizer(device="cpu")
    plain = Localizer(device="cpu", classifier=fast.classifier, fold_batchnorm=False)
    assert fast.folded == 49 and plain.folded == 0  # Lite0: every BN follows a convolution
    assert fast.max_pixels == CPU_FORWARD_PIXELS and plain.max_pixels is None
    a, b = fast.localize(images), plain.localize(images)
    for ra, rb in zip(a, b):
        assert [c.class_id for c in ra.classes] == [c.class_id for c in rb.classes]
        for ca, cb in zip(ra.classes, rb.classes):
            assert np.array_equal(ca.mask, cb.mask) and np.array_equal(ca.box, cb.box)
            assert abs(ca.score - cb.score) < 1e-5
        peak = float(rb.maps.max())
        assert float(np.abs(ra.maps - rb.maps).max()) < 1e-5 * peak


def test_the_users_classifier_is_left_as_it_was():
    loc = Localizer(device="cpu", weights=None)
    model = loc.classifier.model
    assert loc._net.model is not model
    assert any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert not any(getattr(m, "inplace", False) for m in model.modules() if type(m) in (nn.ReLU, nn.ReLU6))
    assert not any(type(m) is nn.BatchNorm2d for m in loc._net.model.modules())
    assert all(m.inplace for m in loc._net.model.modules() if type(m) in (nn.ReLU, nn.ReLU6))


def test_methods_with_a_backward_pass_keep_the_plain_network():
    loc = Localizer(preset="simonyan2014", device="cpu", weights=None)
    assert loc.folded == 0 and loc._net.model is loc.classifier.model and loc.max_pixels is None
    forced = Localizer(device="cpu", weights=None, **{"saliency.options.shortcut": False})
    assert forced.folded == 0 and forced._net.model is forced.classifier.model


def test_forward_only_maps_truth_table():
    clf = load_classifier(BnNet(), preprocess=Preprocess((16, 16), (0.5,) * 3, (0.25,) * 3))
    assert clf.fc == "fc" and clf.last_conv == "act2"
    assert forward_only_maps(clf, "cam", {})
    assert forward_only_maps(clf, "grad_cam", {})
    assert forward_only_maps(clf, "grad_cam", {"layer": "act2"})
    assert not forward_only_maps(clf, "grad_cam", {"layer": "act1"})  # not the pooled layer: a backward
    assert not forward_only_maps(clf, "grad_cam", {"shortcut": False})
    for method in ("gradient", "guided_grad_cam", "smoothgrad", "integrated_gradients"):
        assert not forward_only_maps(clf, method, {})


def test_inference_copy_is_the_folded_function_with_activations_in_place():
    net = BnNet(seed=1)
    x = torch.randn(3, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    folded, n = fold_batchnorm(net, (10, 12))
    copy, m = inference_copy(net, (10, 12))
    assert n == m == 2
    with torch.no_grad():
        ref, f, c = net(x), folded(x), copy(x)
    assert torch.equal(f, c)  # in place: the same values bit for bit
    assert float((c - ref).abs().max()) < 1e-5 * float(ref.abs().max())
    assert copy.act1.inplace and copy.act2.inplace and not net.act1.inplace and not net.act2.inplace
    assert isinstance(copy.bn1, nn.Identity) and isinstance(net.bn1, nn.BatchNorm2d)
    net.train()
    assert inference_copy(net, (10, 12)) == (net, 0)  # a training model is not touched


def test_inplace_activations_counts_and_sets():
    seq = nn.Sequential(nn.ReLU(), nn.ReLU6(inplace=True), nn.Conv2d(1, 1, 1), nn.ReLU6(), nn.Hardtanh())
    assert inplace_activations(seq) == 2  # the ReLU and the second ReLU6 (Hardtanh is not one of them)
    assert seq[0].inplace and seq[1].inplace and seq[3].inplace and not seq[4].inplace


def test_multiscale_cuts_each_scale_into_chunks_of_max_pixels():
    clf = load_classifier(BnNet(seed=2), preprocess=Preprocess((24, 20), (0.5,) * 3, (0.25,) * 3))
    x = torch.randn(5, 3, 24, 20, generator=torch.Generator().manual_seed(3))
    sizes = []
    handle = clf.model.register_forward_pre_hook(lambda mod, inp: sizes.append(tuple(inp[0].shape)))
    try:
        whole = multiscale(clf, x, None, "grad_cam", 2, scales=(1.0, 2.0))
        n_whole = len(sizes)
        sizes.clear()
        # 960 pixels: two 24 x 20 images per call at scale 1, one 48 x 40 image (1,920 px) at scale 2
        cut = multiscale(clf, x, None, "grad_cam", 2, scales=(1.0, 2.0), max_pixels=960)
    finally:
        handle.remove()
    assert n_whole == 2  # one call per scale: the batch of 5 whole
    assert [s[0] for s in sizes if s[-2:] == (24, 20)] == [2, 2, 1]
    assert [s[0] for s in sizes if s[-2:] == (48, 40)] == [1] * 5
    assert torch.equal(cut.targets, whole.targets)
    assert float((cut.maps - whole.maps).abs().max()) < 1e-5
    sizes.clear()
    handle = clf.model.register_forward_pre_hook(lambda mod, inp: sizes.append(tuple(inp[0].shape)))
    try:  # max_batch still bounds the chunk
        multiscale(clf, x, None, "grad_cam", 2, scales=(1.0,), max_pixels=960, max_batch=1)
    finally:
        handle.remove()
    assert [s[0] for s in sizes] == [1] * 5


@pytest.mark.parametrize("method", ["cam", "grad_cam"])
def test_localizer_on_a_small_bn_model_matches_the_plain_network(method):
    clf = load_classifier(BnNet(seed=4), preprocess=Preprocess((24, 20), (0.5,) * 3, (0.25,) * 3))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for _ in range(3)]
    opts = {"saliency.method": method, "top_k": 2, "batch_size": 3}
    fast = Localizer(classifier=clf, device="cpu", **opts)
    plain = Localizer(classifier=clf, device="cpu", fold_batchnorm=False, **opts)
    assert fast.folded == 2
    for ra, rb in zip(fast.localize(images), plain.localize(images)):
        assert [c.class_id for c in ra.classes] == [c.class_id for c in rb.classes]
        assert float(np.abs(ra.maps - rb.maps).max()) < 1e-4 * max(1e-6, float(np.abs(rb.maps).max()))
