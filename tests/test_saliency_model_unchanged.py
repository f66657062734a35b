"""Every method leaves the model exactly as it was (state, hooks, flags, mode), also after an error;
bad input raises MethodError naming the problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsloc.errors import MethodError
from wsloc.models import load_classifier
from wsloc.saliency import METHODS, attribute

OPTIONS = {"integrated_gradients": {"steps": 3}, "smoothgrad": {"n_samples": 2}, "vargrad": {"n_samples": 2},
           "occlusion": {"patch": 4, "stride": 4}}


class Net(nn.Module):
    def __init__(self, boom=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)
        self.boom = boom

    def forward(self, x):
        h = self.relu(self.bn(self.conv(x)))
        if self.boom:
            raise RuntimeError("boom")
        return self.fc(self.drop(torch.flatten(self.pool(h), 1)))


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                   len(getattr(m, "_backward_pre_hooks", {}))) for m in model.modules()],
    }


def assert_same(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for k in before["state"]:
        assert torch.equal(after["state"][k], before["state"][k]), k
    for key in ("training", "requires_grad", "hooks"):
        assert after[key] == before[key], key
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch._C._len_torch_function_stack() == 0  # no TorchFunctionMode left active
    assert torch.is_grad_enabled()


def user_model() -> nn.Module:
    """A model as a user might hand it over: training mode, trainable weights, a hook of its own."""
    model = Net().train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    model.conv.register_forward_hook(lambda m, i, o: None)
    model.bn.weight.requires_grad_(False)
    return model


@pytest.mark.parametrize("method", sorted(METHODS))
def test_model_unchanged_after_every_method(method):
    model = user_model()
    x = torch.randn(2, 3, 8, 8)
    x_before = x.clone()
    before = snapshot(model)
    r1 = attribute(model, x, method=method, top_k=2, return_attributions=True, **OPTIONS.get(method, {}))
    assert_same(model, before)
    assert torch.equal(x, x_before) and not x.requires_grad
    # eval mode was used (deterministic): dropout off, running statistics used and not updated
    r2 = attribute(model, x, method=method, top_k=2, **OPTIONS.get(method, {}))
    assert torch.allclose(r1.maps, r2.maps, atol=1e-6)
    assert model.training


@pytest.mark.parametrize("method", sorted(METHODS))
def test_model_unchanged_after_an_error_midway(method):
    model = user_model()
    model.boom = True
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, x, method=method, top_k=2, **OPTIONS.get(method, {}))
    assert_same(model, before)


def test_lite0_classifier_unchanged():
    clf = load_classifier("efficientnet_lite0")
    x = torch.randn(1, 3, 64, 64)
    before = snapshot(clf.model)
    for method in sorted(METHODS):
        attribute(clf, x, method=method, top_k=2, **OPTIONS.get(method, {"patch": 32, "stride": 32}
                                                                  if method == "occlusion" else {}))
        assert_same(clf.model, before)


@pytest.mark.parametrize("call,match", [
    (lambda m, x: attribute(m, x, method="nope"), "unknown saliency method"),
    (lambda m, x: attribute(m, x, method="gradient", steps=3), "unknown option 'steps'"),
    (lambda m, x: attribute(m, x, method="smoothgrad", stepz=3), "unknown option 'stepz'"),
    (lambda m, x: attribute(m, x, method="smoothgrad", base="vargrad"), "base must be"),
    (lambda m, x: attribute(m, x, targets=5, method="gradient"), r"targets must be class indices in \[0, 5\)"),
    (lambda m, x: attribute(m, x, targets=[1, 2, 3], method="gradient"), "targets must be"),
    (lambda m, x: attribute(m, x, targets=[0.5, 1.0], method="gradient"), "integer"),
    (lambda m, x: attribute(m, x, top_k=0, method="gradient"), "top_k"),
    (lambda m, x: attribute(m, x[0], method="gradient"), r"\[N, 3, H, W\]"),
    (lambda m, x: attribute(m, x.long(), method="gradient"), "float"),
    (lambda m, x: attribute(m, x, method="gradient", max_batch=0), "max_batch"),
    (lambda m, x: attribute(m, x, method="gradient", reduce="median"), "reduce must be"),
    (lambda m, x: attribute(m, x, method="gradient", engine="jit"), "engine"),
    (lambda m, x: attribute(m, x, method="integrated_gradients", rule="simpson"), "rule must be"),
    (lambda m, x: attribute(m, x, method="integrated_gradients", baseline=torch.zeros(4, 4)), "baseline"),
    (lambda m, x: attribute(m, x, method="grad_cam", layer="nothing"), "no module named 'nothing'"),
    (lambda m, x: attribute(m, x, method="grad_cam", layer="fc"), "feature map"),
    (lambda m, x: attribute(m, x, method="occlusion", patch=0), "patch"),
    (lambda m, x: attribute(m, x, method="smoothgrad", noise=torch.zeros(2, 3)), "noise"),
    (lambda m, x: attribute("model", x, method="gradient"), "nn.Module"),
])
def test_bad_input_raises_method_error(call, match):
    model = user_model()
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(model)
    with pytest.raises(MethodError, match=match):
        call(model, x)
    assert_same(model, before)


class NoGap(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_cam_needs_gap_linear_and_grad_cam_needs_a_layer_that_runs_once():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(MethodError, match="global average pooling"):
        attribute(NoGap(), x, method="cam")
    assert attribute(NoGap(), x, method="grad_cam", top_k=1).maps.shape == (1, 1, 8, 8)

    class Twice(Net):
        def forward(self, x):
            h = self.relu(self.conv(x))
            h = self.relu(h)
            return self.fc(torch.flatten(self.pool(h), 1))

    model = Twice()
    before = snapshot(model)
    with pytest.raises(MethodError, match="ran 2 times"):
        attribute(model, x, method="grad_cam", layer="relu")
    assert_same(model, before)
