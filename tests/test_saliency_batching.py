"""Batched top-K maps equal K single-class computations; memory caps and engines do not change them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsloc.errors import MethodError
from wsloc.models import load_classifier
from wsloc.saliency import attribute
from wsloc.saliency.gradients import tape_unsupported_reason

OPTIONS = {
    "gradient": {},
    "gradient_x_input": {},
    "guided_backprop": {},
    "deconvnet": {},
    "integrated_gradients": {"steps": 5},
    "smoothgrad": {"n_samples": 2, "seed": 3},
    "vargrad": {"n_samples": 2, "seed": 3},
    "cam": {},
    "grad_cam": {},
    "guided_grad_cam": {},
    "occlusion": {"patch": 32, "stride": 32},
}


@pytest.fixture(scope="module")
def lite0():
    clf = load_classifier("efficientnet_lite0")
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    return clf, x


def close(a, b, tol=1e-5):
    scale = max(b.abs().max().item(), 1e-12)
    return (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_top5_maps_equal_five_single_class_maps(lite0, method):
    clf, x = lite0
    opts = OPTIONS[method]
    top = attribute(clf, x, method=method, top_k=5, return_attributions=True, **opts)
    assert torch.equal(top.targets, clf.predict(x, 5)[1])
    for k in range(5):
        one = attribute(clf, x, targets=top.targets[:, k], method=method, return_attributions=True, **opts)
        assert one.maps.shape == (3, 1, 64, 64)
        assert close(top.maps[:, k], one.maps[:, 0]), (method, k)
        assert torch.equal(one.targets[:, 0], top.targets[:, k])
        assert torch.allclose(one.scores[:, 0], top.scores[:, k])
        if top.attributions is not None:
            assert close(top.attributions[:, k], one.attributions[:, 0]), (method, k)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "occlusion", "smoothgrad", "grad_cam"])
def test_max_batch_does_not_change_the_maps(lite0, method):
    clf, x = lite0
    opts = OPTIONS[method]
    a = attribute(clf, x, method=method, top_k=3, max_batch=2, **opts)
    b = attribute(clf, x, method=method, top_k=3, **opts)
    assert torch.equal(a.targets, b.targets)
    assert close(a.maps, b.maps)


def test_target_forms(lite0):
    clf, x = lite0
    ref = attribute(clf, x, targets=[[7, 1], [2, 9], [0, 3]], method="gradient")
    assert ref.targets.tolist() == [[7, 1], [2, 9], [0, 3]]
    same = attribute(clf, x, targets=torch.tensor([1, 9, 3]), method="gradient")
    assert close(same.maps[:, 0], ref.maps[:, 1])
    one = attribute(clf, x, targets=9, method="gradient")
    assert one.targets.tolist() == [[9], [9], [9]]
    assert close(one.maps[1, 0], ref.maps[1, 1])
    # a single image and top-1
    single = attribute(clf, x[1:2], method="gradient", top_k=1)
    assert single.maps.shape == (1, 1, 64, 64) and single.targets[0, 0] == clf.predict(x[1:2], 1)[1][0, 0]


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "deconvnet", "gradient_x_input"])
def test_tape_and_autograd_agree_on_lite0(lite0, method):
    clf, x = lite0
    a = attribute(clf, x, method=method, top_k=3, engine="tape", return_attributions=True)
    b = attribute(clf, x, method=method, top_k=3, engine="autograd", return_attributions=True)
    assert close(a.attributions, b.attributions)
    assert torch.equal(a.logits, b.logits)  # the tape's forward is the model's own, bit for bit


class Mixed(nn.Module):
    """Ops the tape records (functional ReLU6, max-pooling, channel shuffle, chunk, residual sums,
    scalars, cat, pad, avg-pooling, mean)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 6, 3, padding="same")
        self.bn = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.c3 = nn.Conv2d(12, 8, 1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = F.relu6(self.bn(self.c1(x)) * 2.0)
        h = F.max_pool2d(h, 2)
        n, c, hh, ww = h.shape
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
        a, b = h.chunk(2, dim=1)
        h = torch.cat([b, a.permute(0, 1, 3, 2).permute(0, 1, 3, 2)], 1)
        r = F.relu(self.c2(h), inplace=True)
        h = torch.cat([h + r, 0.5 - r], dim=1)
        h = F.pad(self.c3(h), (1, 0, 0, 1))
        h = F.avg_pool2d(torch.relu(h), 2, ceil_mode=True)
        return self.fc(h.mean(dim=(2, 3)))


class Smooth(nn.Module):
    """SiLU is not piecewise linear: the tape refuses it and autograd takes over."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.c = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(F.silu(self.c(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "deconvnet"])
def test_tape_covers_functional_ops(method):
    model = Mixed().eval()
    x = torch.randn(2, 3, 11, 10, generator=torch.Generator().manual_seed(4))
    a = attribute(model, x, method=method, top_k=3, engine="tape", return_attributions=True)
    b = attribute(model, x, method=method, top_k=3, engine="autograd", return_attributions=True)
    assert tape_unsupported_reason(model) is None
    assert close(a.attributions, b.attributions)
    if method == "gradient":
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        for k in range(3):
            (g,) = torch.autograd.grad(out.gather(1, a.targets[:, k:k + 1]).sum(), xg, retain_graph=True)
            assert close(a.attributions[:, k], g)


def test_unsupported_model_falls_back_to_autograd():
    model = Smooth().eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(MethodError, match="engine='tape'"):
        attribute(model, x, method="gradient", engine="tape")
    r = attribute(model, x, method="gradient", top_k=2, return_attributions=True)
    assert "silu" in tape_unsupported_reason(model)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).gather(1, r.targets[:, :1]).sum(), xg)
    assert close(r.attributions[:, 0], g)
    with pytest.raises(MethodError, match="ReLU"):
        attribute(model, x, method="guided_backprop")
