"""Saliency methods on networks whose answers can be worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsloc.saliency import METHODS, attribute, quadrature
from wsloc.saliency.occlusion import window_starts

ENGINES = ("tape", "autograd")


class Linear(nn.Module):
    """f(x) = W flatten(x) + b."""

    def __init__(self, c=3, h=4, w=5, classes=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(c * h * w, classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(classes, c * h * w, generator=g))
            self.fc.bias.copy_(torch.randn(classes, generator=g))

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


def _x(n=2, c=3, h=4, w=5, seed=1):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("engine", ENGINES)
def test_gradient_of_linear_model_is_abs_weight_max_over_channels(engine):
    model, x = Linear(), _x()
    r = attribute(model, x, targets=[[1, 4], [0, 5]], method="gradient", return_attributions=True, engine=engine)
    w = model.fc.weight.detach().view(6, 3, 4, 5)
    for n, classes in enumerate([[1, 4], [0, 5]]):
        for k, c in enumerate(classes):
            assert torch.allclose(r.attributions[n, k], w[c], atol=1e-6)
            assert torch.allclose(r.maps[n, k], w[c].abs().amax(0), atol=1e-6)
    assert r.maps.dtype == torch.float32 and r.maps.shape == (2, 2, 4, 5)
    assert torch.allclose(r.scores, model(x).gather(1, r.targets), atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_gradient_x_input_and_ig_of_linear_model(engine):
    model, x = Linear(), _x()
    w = model.fc.weight.detach().view(6, 3, 4, 5)
    gxi = attribute(model, x, targets=2, method="gradient_x_input", return_attributions=True, engine=engine)
    assert torch.allclose(gxi.attributions[:, 0], x * w[2], atol=1e-6)
    base = torch.full((3, 4, 5), 0.25)
    for rule in ("trapezoid", "left", "middle", "gausslegendre"):
        ig = attribute(model, x, targets=2, method="integrated_gradients", steps=3, rule=rule, baseline=base,
                       return_attributions=True, engine=engine)
        # the gradient is constant: IG = (x - baseline) * w for any rule and number of steps
        assert torch.allclose(ig.attributions[:, 0], (x - base) * w[2], atol=1e-5)


def test_quadrature_rules_integrate_polynomials():
    for rule, exact_degree in (("trapezoid", 1), ("middle", 1), ("gausslegendre", 7)):
        a, wts = quadrature(4, rule)
        assert abs(wts.sum() - 1) < 1e-12
        for d in range(exact_degree + 1):
            assert abs((wts * a ** d).sum() - 1 / (d + 1)) < 1e-12
    a, wts = quadrature(4, "left")
    assert list(a) == [0, 0.25, 0.5, 0.75]
    a, wts = quadrature(4, "right")
    assert list(a) == [0.25, 0.5, 0.75, 1.0]


class TwoLayer(nn.Module):
    """x [N, 3, 1, 1] -> W1 -> activation -> W2 -> logits [N, 2]; ``kind`` picks the ReLU form."""

    def __init__(self, kind="module", w1=None):
        super().__init__()
        self.kind = kind
        self.l1 = nn.Linear(3, 3, bias=False)
        self.l2 = nn.Linear(3, 2, bias=False)
        self.act = {"module": nn.ReLU(), "inplace": nn.ReLU(inplace=True), "relu6": nn.ReLU6()}.get(kind)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor(w1 or [[1.0, 0, 0], [0, -1, 0], [1, 1, 1]]))
            self.l2.weight.copy_(torch.tensor([[2.0, 3, -1], [1, 1, 1]]))

    def forward(self, x):
        h = self.l1(x.flatten(1))
        if self.kind == "functional":
            h = F.relu(h)
        elif self.kind == "torch.relu":
            h = torch.relu(h)
        elif self.kind == "relu_":
            h = h.relu_()
        else:
            h = self.act(h)
        return self.l2(h)


X = torch.tensor([1.0, 2.0, -1.0]).view(1, 3, 1, 1)  # hidden pre-activations W1 x = [1, -2, 2]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["module", "inplace", "functional", "torch.relu", "relu_"])
def test_relu_backward_rules_by_hand(kind, engine):
    # Class 0, upstream gradient at the hidden layer: W2[0] = [2, 3, -1]; hidden unit 2 is off.
    # gradient:  [2, 0, -1] through W1^T -> [1, -1, -1]
    # guided:    relu([2, 3, -1]) * mask = [2, 0, 0] -> [2, 0, 0]
    # deconvnet: relu([2, 3, -1]) = [2, 3, 0] -> [2, -3, 0]
    model = TwoLayer(kind)
    expected = {"gradient": [1.0, -1.0, -1.0], "guided_backprop": [2.0, 0.0, 0.0], "deconvnet": [2.0, -3.0, 0.0]}
    for method, want in expected.items():
        r = attribute(model, X, targets=0, method=method, return_attributions=True, engine=engine)
        assert r.attributions[0, 0, :, 0, 0].tolist() == want, (method, kind)
        assert r.maps[0, 0, 0, 0].item() == max(abs(v) for v in want)


@pytest.mark.parametrize("engine", ENGINES)
def test_relu6_backward_rules_by_hand(engine):
    # W1 x = [1, -2, 7]: unit 2 is above 6, so it passes nothing under gradient and guided rules;
    # the deconvnet rule ignores the forward state.
    model = TwoLayer("relu6", w1=[[1.0, 0, 0], [0, -1, 0], [3, 2, 0]])
    # W1^T g for g = [2, 0, 0] -> [2, 0, 0]; deconvnet g = [2, 3, 0] -> [2 + 0, -3, 0]
    want = {"gradient": [2.0, 0.0, 0.0], "guided_backprop": [2.0, 0.0, 0.0], "deconvnet": [2.0, -3.0, 0.0]}
    for method, w in want.items():
        r = attribute(model, X, targets=0, method=method, return_attributions=True, engine=engine)
        assert r.attributions[0, 0, :, 0, 0].tolist() == w, method
    # class 1 (W2[1] = [1, 1, 1]): all positive, guided == gradient
    g = attribute(model, X, targets=1, method="gradient", return_attributions=True, engine=engine)
    gb = attribute(model, X, targets=1, method="guided_backprop", return_attributions=True, engine=engine)
    assert torch.equal(g.attributions, gb.attributions)


class SmallCNN(nn.Module):
    """conv-ReLU-conv-ReLU, global average pooling, one linear layer (CAM applies)."""

    def __init__(self, classes=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_cam_equals_grad_cam_up_to_a_positive_factor():
    model, x = SmallCNN(), _x(3, 3, 12, 10)
    cam = attribute(model, x, method="cam", top_k=3)
    gc = attribute(model, x, method="grad_cam", top_k=3)
    assert torch.equal(cam.targets, gc.targets)
    hw = 6 * 5  # feature map of conv2: 6 x 5
    cam_relu = attribute(model, x, method="cam", top_k=3, relu=True)
    assert torch.allclose(cam_relu.maps, gc.maps * hw, atol=1e-5)
    gc_signed = attribute(model, x, method="grad_cam", top_k=3, relu=False)
    assert torch.allclose(cam.maps, gc_signed.maps * hw, atol=1e-5)
    assert (cam.maps < 0).any()  # CAM keeps negative evidence unless relu=True
    # CAM's definition: the mean of the (un-upsampled) map plus the bias is the logit
    feats = model.relu2(model.conv2(model.relu1(model.conv1(x)))).detach()
    w = model.fc.weight.detach()[cam.targets]
    m = torch.einsum("nkc,nchw->nkhw", w, feats)
    assert torch.allclose(m.mean((2, 3)) + model.fc.bias.detach()[cam.targets], cam.scores, atol=1e-5)
    assert torch.allclose(F.interpolate(m, size=(12, 10), mode="bilinear", align_corners=False), cam.maps, atol=1e-5)


def test_cam_equals_grad_cam_on_lite0():
    from wsloc.models import load_classifier

    clf = load_classifier("efficientnet_lite0")
    x = _x(2, 3, 64, 64)
    cam = attribute(clf, x, method="cam", top_k=2, relu=True)
    gc = attribute(clf, x, method="grad_cam", top_k=2)
    assert torch.allclose(cam.maps, gc.maps * 4, rtol=1e-4, atol=1e-4 * cam.maps.abs().max().item())


def test_occlusion_of_linear_model_by_hand():
    model = Linear(c=1, h=1, w=5, classes=2)
    x = _x(1, 1, 1, 5)
    assert window_starts(5, 2, 2) == [0, 2, 3]
    r = attribute(model, x, targets=1, method="occlusion", patch=(1, 2), stride=(1, 2), fill=0.0)
    c = (model.fc.weight[1].detach() * x.flatten())  # contribution of each pixel to the logit
    windows = [c[0] + c[1], c[2] + c[3], c[3] + c[4]]  # drop when the window is zeroed
    want = torch.stack([windows[0], windows[0], windows[1], (windows[1] + windows[2]) / 2, windows[2]])
    assert torch.allclose(r.maps[0, 0, 0], want, atol=1e-5)
    # fill value 1: the drop is sum of w * (x - 1) over the window
    r1 = attribute(model, x, targets=1, method="occlusion", patch=(1, 5), stride=1, fill=1.0)
    drop = (model.fc.weight[1].detach() * (x.flatten() - 1)).sum()
    assert torch.allclose(r1.maps[0, 0, 0], drop.expand(5), atol=1e-5)


def test_smoothgrad_with_zero_noise_is_the_base_and_vargrad_zero():
    model, x = SmallCNN(), _x(2, 3, 8, 8)
    g = attribute(model, x, method="gradient", top_k=2, return_attributions=True)
    sg = attribute(model, x, method="smoothgrad", top_k=2, n_samples=3, sigma=0.0, return_attributions=True)
    vg = attribute(model, x, method="vargrad", top_k=2, n_samples=3, sigma=0.0, return_attributions=True)
    assert torch.allclose(sg.maps, g.maps, atol=1e-6) and torch.allclose(sg.attributions, g.attributions, atol=1e-6)
    assert vg.maps.abs().max() < 1e-10 and vg.attributions.abs().max() < 1e-10


def test_smoothgrad_and_vargrad_are_mean_and_variance_over_the_noisy_maps():
    model, x = SmallCNN(), _x(2, 3, 8, 8)
    noise = torch.randn(4, 2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([[0, 3], [2, 1]])
    per = [attribute(model, x + noise[s], targets=t, method="gradient", return_attributions=True) for s in range(4)]
    maps = torch.stack([p.maps for p in per])
    attrs = torch.stack([p.attributions for p in per])
    sg = attribute(model, x, targets=t, method="smoothgrad", noise=noise, return_attributions=True, max_batch=3)
    vg = attribute(model, x, targets=t, method="vargrad", noise=noise, return_attributions=True)
    assert torch.allclose(sg.maps, maps.mean(0), atol=1e-6)
    assert torch.allclose(sg.attributions, attrs.mean(0), atol=1e-6)
    assert torch.allclose(vg.maps, maps.var(0, unbiased=False), atol=1e-6)
    assert torch.allclose(vg.attributions, attrs.var(0, unbiased=False), atol=1e-6)
    assert torch.allclose(sg.scores, model(x).gather(1, t), atol=1e-6)  # the clean input's logits


def test_smoothgrad_noise_scale_is_a_fraction_of_the_value_range():
    # On a linear model every noisy gradient is the same; check the noise via gradient x input:
    # mean of (x + e) * w = x * w + mean(e) * w; its spread grows with sigma * (max - min).
    model = Linear()
    x = _x(1) * 0.0
    x[0, 0, 0, 0] = 10.0  # value range 10
    r = attribute(model, x, targets=0, method="vargrad", base="gradient_x_input", n_samples=400, sigma=0.1,
                  return_attributions=True, seed=5)
    w = model.fc.weight.detach()[0].view(3, 4, 5)
    var = r.attributions[0, 0] / w.square()  # variance of e: (0.1 * 10)^2 = 1
    assert abs(var.mean().item() - 1.0) < 0.05


def test_smoothgrad_maps_do_not_depend_on_max_batch_and_seed_repeats():
    model, x = SmallCNN(), _x(3, 3, 8, 8)
    a = attribute(model, x, method="smoothgrad", top_k=2, n_samples=5, max_batch=2, seed=7)
    b = attribute(model, x, method="smoothgrad", top_k=2, n_samples=5, max_batch=64, seed=7)
    c = attribute(model, x, method="smoothgrad", top_k=2, n_samples=5, seed=8)
    assert torch.allclose(a.maps, b.maps, atol=1e-6)
    assert not torch.allclose(a.maps, c.maps, atol=1e-6)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_returns_the_contract(method):
    model, x = SmallCNN(), _x(2, 3, 8, 8)
    opts = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"n_samples": 2},
            "vargrad": {"n_samples": 2}, "occlusion": {"patch": 4, "stride": 4}}.get(method, {})
    r = attribute(model, x, method=method, top_k=3, return_attributions=True, **opts)
    assert r.maps.shape == (2, 3, 8, 8) and r.maps.dtype == torch.float32
    assert r.targets.shape == (2, 3) and r.targets.dtype == torch.int64
    assert torch.equal(r.targets, model(x).topk(3, 1).indices)
    assert r.scores.shape == (2, 3) and r.scores.dtype == torch.float32
    assert r.logits.shape == (2, 5)
    if method in ("cam", "grad_cam", "layer_cam"):
        assert r.attributions is None
    else:
        assert r.attributions.shape == (2, 3, 3, 8, 8) and r.attributions.dtype == torch.float32
    assert torch.isfinite(r.maps).all()
    assert r.method == method


@pytest.mark.slow
def test_integrated_gradients_completeness_on_lite0():
    """sum(IG) = f(x) - f(baseline): within 5% at 256 steps, the error falling from 64 to 256 to 1024."""
    from wsloc.models import load_classifier

    clf = load_classifier("efficientnet_lite0")
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.randn(2, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits, base = clf.model(x), clf.model(torch.zeros_like(x))
    t = logits.argmax(1)
    diff = (logits - base).gather(1, t[:, None]).squeeze(1).double()
    errors = []
    for steps in (64, 256, 1024):
        r = attribute(clf, x, targets=t, method="integrated_gradients", steps=steps, return_attributions=True)
        total = r.attributions[:, 0].double().sum(dim=(1, 2, 3))
        errors.append(((total - diff) / diff).abs())
    assert (errors[1] < 0.05).all(), errors
    mean = [e.mean().item() for e in errors]
    assert mean[0] > mean[1] > mean[2], mean
