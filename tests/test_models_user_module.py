"""``load_classifier(my_module)`` never changes the caller's module: it works on a copy."""

from __future__ import annotations

import torch
from torch import nn

from wsloc import Preprocess, load_classifier
from wsloc.localizer import Localizer
from wsloc.saliency import attribute


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))


def _state(net: nn.Module) -> dict:
    return {
        "training": [m.training for m in net.modules()],
        "requires_grad": [p.requires_grad for p in net.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in net.modules()],
        "tensors": {k: v.clone() for k, v in net.state_dict().items()},
        "contiguous": [p.is_contiguous() for p in net.parameters()],
        "devices": {p.device for p in net.parameters()},
    }


def _assert_same(net: nn.Module, before: dict) -> None:
    after = _state(net)
    for key in ("training", "requires_grad", "hooks", "contiguous", "devices"):
        assert after[key] == before[key], key
    for k, v in before["tensors"].items():
        assert torch.equal(after["tensors"][k], v), k


def test_load_classifier_leaves_the_callers_module_as_it_was():
    net = _net()  # training mode, parameters requiring grad: the state of a module being trained
    net.train()
    net[6].weight.requires_grad_(False)  # a mixed set of flags, kept as given
    user_hook_calls = []
    net[0].register_forward_hook(lambda *a: user_hook_calls.append(1))
    before = _state(net)
    clf = load_classifier(net, preprocess=Preprocess((16, 16)))
    _assert_same(net, before)
    assert clf.model is not net and not clf.model.training
    assert all(not p.requires_grad for p in clf.model.parameters())
    # Using the classifier (saliency, the localizer's channels-last conversion) does not reach the caller's module.
    x = torch.randn(2, 3, 16, 16)
    attribute(clf, x, method="grad_cam", top_k=2)
    attribute(clf, x, method="gradient", top_k=2)
    Localizer(classifier=clf, device="cpu", top_k=2).localize(torch.randint(0, 255, (20, 24, 3), dtype=torch.uint8).numpy())
    _assert_same(net, before)
    # The caller can go on training its module: it is still in training mode, gradients still flow.
    calls_before = len(user_hook_calls)
    loss = net(x).sum()
    loss.backward()
    assert net[0].weight.grad is not None and net[6].weight.grad is None
    assert len(user_hook_calls) == calls_before + 1  # the caller's hook is still there
    # ... and the classifier does not see the caller's later changes.
    with torch.no_grad():
        ref = clf(x)
        net[0].weight.add_(1.0)
        torch.testing.assert_close(clf(x), ref)


def test_a_module_that_cannot_be_copied_is_a_clear_model_error():
    import threading

    import pytest

    from wsloc.errors import ModelError

    net = _net()
    net.lock = threading.Lock()  # deepcopy fails on locks
    with pytest.raises(ModelError, match="cannot copy the module"):
        load_classifier(net, preprocess=Preprocess((16, 16)))
