"""LayerCAM: a hand-computed case, agreement with autograd at a mid-level layer, multi-layer fusion."""

import pytest
import torch
from torch import nn

from wsloc import load_classifier
from wsloc.errors import MethodError
from wsloc.models import Preprocess
from wsloc.saliency import attribute
from wsloc.saliency.layercam import fuse_layers


class Tiny(nn.Module):
    """conv 1x1 (3 -> 2) -> ReLU ("act") -> GAP -> linear (2 -> 2), with hand-set weights."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).reshape(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [-3.0, 4.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def tiny_classifier():
    return load_classifier(Tiny(), preprocess=Preprocess((2, 2), (0.0,) * 3, (1.0,) * 3))


def test_hand_computed_at_the_pooled_layer():
    # A = ReLU(channels 0 and 1 of x); d logit_c / d A_kij = w_ck / 4 everywhere (2 x 2 mean).
    # Class 0 (w = 2, -1): M = ReLU(2/4 * A_0 + 0 * A_1) = A_0 / 2; class 1 (w = -3, 4): M = A_1.
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    x[0, 1] = torch.tensor([[3.0, 0.0], [1.0, 2.0]])
    m = attribute(tiny_classifier(), x, targets=[[0, 1]], method="layer_cam", layers="act").maps
    a0 = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    a1 = torch.tensor([[3.0, 0.0], [1.0, 2.0]])
    torch.testing.assert_close(m[0, 0], a0 / 2)
    torch.testing.assert_close(m[0, 1], a1)
    # Grad-CAM differs exactly by the negative weight LayerCAM drops: class 0 is ReLU(A_0 / 2 - A_1 / 4).
    g = attribute(tiny_classifier(), x, targets=[[0, 1]], method="grad_cam", layer="act").maps
    torch.testing.assert_close(g[0, 0], (a0 / 2 - a1 / 4).clamp(min=0))


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return load_classifier("efficientnet_lite0", weights=None, input_size=(64, 64))


def autograd_layercam(clf, x, cls, layer):
    """Independent LayerCAM: the input requires grad, the layer's output keeps its gradient."""
    kept = {}

    def keep(mod, inp, out):
        out.retain_grad()
        kept["a"] = out

    handle = clf.model.get_submodule(layer).register_forward_hook(keep)
    try:
        xg = x.clone().requires_grad_(True)
        logits = clf.model(xg)
        logits[torch.arange(len(x)), cls].sum().backward()
    finally:
        handle.remove()
    a = kept["a"]
    return (a.grad.clamp(min=0) * a.detach()).sum(1).clamp(min=0)


def test_mid_level_layer_agrees_with_autograd(lite):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    cls = torch.tensor([3, 7])
    m = attribute(lite, x, targets=cls[:, None], method="layer_cam", layers="_blocks.10").maps[:, 0]
    ref = autograd_layercam(lite, x, cls, "_blocks.10")  # [2, 4, 4] at stride 16
    up = torch.nn.functional.interpolate(ref[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    assert ref.shape[-2:] == (4, 4) and float(ref.max()) > 0
    torch.testing.assert_close(m, up, rtol=1e-4, atol=1e-6)


def test_two_layers_fuse_their_peak_normalised_maps(lite):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    single = [attribute(lite, x, method="layer_cam", top_k=3, layers=n).maps for n in ("_blocks.10", "_relu_head")]
    for fuse, how in (("mean", torch.mean), ("max", torch.amax)):
        both = attribute(lite, x, method="layer_cam", top_k=3, layers=["_blocks.10", "_relu_head"], fuse=fuse)
        normed = [s / s.flatten(2).amax(2)[..., None, None] for s in single]
        torch.testing.assert_close(both.maps, how(torch.stack(normed), dim=0), rtol=1e-4, atol=1e-6)
        assert float(both.maps.max()) <= 1.0 + 1e-6


def test_fuse_layers_keeps_a_zero_map_zero_and_one_map_unchanged():
    a = torch.tensor([[[[0.0, 2.0], [1.0, 4.0]]]])
    z = torch.zeros_like(a)
    torch.testing.assert_close(fuse_layers([a, z]), torch.tensor([[[[0.0, 0.25], [0.125, 0.5]]]]))
    assert fuse_layers([a]) is a


@pytest.mark.parametrize("options, message", [
    ({"layers": "no_such_layer"}, "no_such_layer"),
    ({"layers": ["_blocks.10", "_blocks.10"]}, "repeat"),
    ({"layers": []}, "one or more"),
    ({"fuse": "sum"}, "fuse='sum'"),
])
def test_bad_options_name_the_problem(lite, options, message):
    with pytest.raises(MethodError, match=message):
        attribute(lite, torch.zeros(1, 3, 64, 64), method="layer_cam", **options)


def test_layers_on_parallel_branches_of_an_ensemble():
    # members.0 and members.1 run side by side: neither block's output depends on the other's
    torch.manual_seed(3)
    ens = load_classifier("efficientnet_lite0+efficientnet_lite1", weights=None, input_size=(64, 64))
    x = torch.randn(1, 3, 64, 64)
    names = ["members.0._blocks.10", "members.1._blocks.14"]
    single = [attribute(ens, x, method="layer_cam", top_k=2, layers=n).maps for n in names]
    both = attribute(ens, x, method="layer_cam", top_k=2, layers=names, fuse="max").maps
    normed = [s / s.flatten(2).amax(2)[..., None, None] for s in single]
    torch.testing.assert_close(both, torch.maximum(*normed), rtol=1e-4, atol=1e-6)
