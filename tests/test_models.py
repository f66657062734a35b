"""The classifier loader, the Lite0 architecture and TF "same" padding."""

import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsloc.errors import ModelError
from wsloc.models import EfficientNetLite, Preprocess, efficientnet_lite, load_classifier, same_padding
from wsloc.models.efficientnet_lite import lite_weights_path


def tf_same_padding(size, kernel, stride):
    """TensorFlow's documented rule, written the way the TF docs state it."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("size", range(1, 40))
@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (5, 1), (3, 2), (5, 2), (1, 2), (4, 2), (7, 3)])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride):
    assert same_padding(size, kernel, stride) == tf_same_padding(size, kernel, stride)


def slow_conv(x, weight, stride, groups):
    """Direct convolution with TF "same" padding: explicit zero padding, unfold, per-group matmul."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    top, bottom = tf_same_padding(h, k, stride)
    left, right = tf_same_padding(w, k, stride)
    xp = torch.zeros(n, c, h + top + bottom, w + left + right, dtype=x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    oh, ow = -(-h // stride), -(-w // stride)
    cols = F.unfold(xp, k, stride=stride)  # [n, c*k*k, oh*ow]
    cin = c // groups
    cout = weight.shape[0] // groups
    outs = []
    for g in range(groups):
        cg = cols[:, g * cin * k * k:(g + 1) * cin * k * k]
        wg = weight[g * cout:(g + 1) * cout].reshape(cout, -1)
        outs.append(torch.einsum("ok,nkl->nol", wg, cg))
    return torch.cat(outs, 1).reshape(n, weight.shape[0], oh, ow)


def slow_lite_forward(sd, x, specs):
    """Lite forward pass read straight from the state dict, with slow convolutions."""
    def bn(t, p):
        scale = sd[p + ".weight"] / torch.sqrt(sd[p + ".running_var"] + 1e-3)
        return (t - sd[p + ".running_mean"].view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + sd[p + ".bias"].view(1, -1, 1, 1)

    relu6 = lambda t: t.clamp(0, 6)
    x = relu6(bn(slow_conv(x, sd["_conv_stem.weight"], 2, 1), "_bn0"))
    for i, (cin, cout, exp, k, s) in enumerate(specs):
        p = f"_blocks.{i}."
        y = x
        if exp != cin:
            y = relu6(bn(slow_conv(y, sd[p + "_expand_conv.weight"], 1, 1), p + "_bn0"))
        y = relu6(bn(slow_conv(y, sd[p + "_depthwise_conv.weight"], s, exp), p + "_bn1"))
        y = bn(slow_conv(y, sd[p + "_project_conv.weight"], 1, 1), p + "_bn2")
        x = y + x if (s == 1 and cin == cout) else y
    x = relu6(bn(slow_conv(x, sd["_conv_head.weight"], 1, 1), "_bn1"))
    return x.mean((2, 3)) @ sd["_fc.weight"].T + sd["_fc.bias"]


@pytest.mark.parametrize("size", [(224, 224), (67, 45)])
def test_lite0_forward_matches_slow_reference(size):
    model = efficientnet_lite("efficientnet_lite0").eval()
    sd = {k: v.double() for k, v in model.state_dict().items()}
    from wsloc.models.efficientnet_lite import block_specs_from_state_dict

    specs = block_specs_from_state_dict(sd)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = model.double()(x.double())
        slow = slow_lite_forward(sd, x.double(), specs)
    assert fast.shape == (2, 1000)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)


def test_lite0_state_dict_loads_strictly_and_layout_is_b0():
    sd = torch.load(lite_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = EfficientNetLite.from_state_dict(sd)
    assert len(model._blocks) == 16
    kernels = [b._depthwise_conv.kernel_size[0] for b in model._blocks]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    strides = [b._depthwise_conv.stride[0] for b in model._blocks]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 33


def test_lite0_preprocessing_and_description():
    """Preprocessing: the Lite weights' normalisation ((x - 127) / 128), whole image resized."""
    clf = load_classifier("efficientnet_lite0")
    assert clf.preprocess.mean == pytest.approx((127 / 255,) * 3)
    assert clf.preprocess.std == pytest.approx((128 / 255,) * 3)
    image = np.full((300, 400, 3), 127, np.uint8)
    x = clf.preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x, torch.zeros_like(x))
    assert clf.last_conv == "_relu_head" and clf.fc == "_fc" and clf.gap_linear
    assert all(not p.requires_grad for p in clf.model.parameters())
    assert not clf.model.training


@pytest.mark.parametrize("name,last_conv,fc", [("resnet18", "layer4", "fc"), ("vgg11", "features.19", None),
                                               ("mobilenet_v2", "features", "classifier.1")])
def test_torchvision_models_by_name_random_weights(name, last_conv, fc):
    clf = load_classifier(name, weights=None)
    assert clf.last_conv == last_conv
    assert clf.fc == fc
    assert clf.num_classes == 1000 and clf.class_names[281] == "tabby"
    assert clf.preprocess.size == (224, 224)


def test_torchvision_weights_from_a_local_file(tmp_path):
    ref = load_classifier("resnet18", weights=None).model
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    clf = load_classifier("resnet18", weights=str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), ref(x))


def test_offline_download_failure_is_a_clear_model_error(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)  # wsloc.models.weights downloads with it
    with pytest.raises(ModelError, match=r"resnet18: the weights .* could not be downloaded.*Put the file at"):
        load_classifier("resnet18", weights="DEFAULT")


def test_unknown_model_and_unknown_weights():
    with pytest.raises(ModelError, match="unknown classifier 'not_a_net'"):
        load_classifier("not_a_net")
    with pytest.raises(ModelError, match="unknown weights 'NOPE'"):
        load_classifier("resnet18", weights="NOPE")


def test_user_module_needs_preprocess_and_is_described():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 7))
    with pytest.raises(ModelError, match="preprocess"):
        load_classifier(net)
    clf = load_classifier(net, preprocess=Preprocess((32, 32), (0.5,) * 3, (0.5,) * 3))
    assert clf.last_conv == "1" and clf.fc == "4" and clf.num_classes == 7 and clf.class_names is None
    # A head that is not a plain GAP + linear (a hidden layer) is not CAM-able.
    net2 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4),
                         nn.ReLU(), nn.Linear(4, 3))
    clf2 = load_classifier(net2, preprocess=Preprocess((16, 16)))
    assert clf2.fc is None and clf2.last_conv == "1"


def test_user_module_returning_wrong_shape_is_refused():
    net = nn.Conv2d(3, 2, 3)
    with pytest.raises(ModelError, match="logits"):
        load_classifier(net, preprocess=Preprocess((16, 16)))
