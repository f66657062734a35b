"""Ensembles of EfficientNet-Lite classifiers as one GAP + linear classifier (issue 12).

``LiteEnsemble`` concatenates its members' last feature maps and applies one linear layer built
from their ``_fc`` layers, so its logits must be the mean of the members' logits and CAM / Grad-CAM
at the concatenated map the mean of the members' maps (before the ReLU). Random weights at a small
input: no package files needed, except in the last test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsloc.errors import ModelError
from wsloc.localizer import Localizer, LocalizerConfig
from wsloc.models import Preprocess, describe_layers, load_classifier
from wsloc.models.efficientnet_lite import LITE_MEAN, LITE_PACKAGES, LITE_STD, efficientnet_lite
from wsloc.models.ensemble import LiteEnsemble, ensemble_members
from wsloc.saliency import attribute
from wsloc.saliency.cam import forward_only_maps

NAMES = ("efficientnet_lite0", "efficientnet_lite1")
SIZE = (64, 64)  # 2 x 2 feature maps at stride 32


def _random_member(name: str, seed: int) -> torch.nn.Module:
    """A random-weight member in eval mode whose activations are of order one, not the ~1e-9 of the
    default init: each BatchNorm's running statistics are those of one random batch (a train-mode pass
    with momentum 1), and ``_fc`` gets weights of scale 0.1 and a bias, so members differ clearly."""
    member = efficientnet_lite(name, pretrained=False)
    gen = torch.Generator().manual_seed(seed)
    for m in member.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        member.train()(torch.randn(4, 3, *SIZE, generator=gen))
        member._fc.weight.copy_(torch.randn(member._fc.weight.shape, generator=gen) * 0.1)
        member._fc.bias.copy_(torch.randn(member._fc.bias.shape, generator=gen))
    return member.eval()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    """``a`` equals ``b`` to ``tol`` of the larger one's peak magnitude."""
    a, b = a.detach(), b.detach()
    scale = max(float(a.abs().max()), float(b.abs().max()))
    return scale > 0 and float((a - b).abs().max()) <= tol * scale


@pytest.fixture(scope="module")
def parts():
    """(members, the ensemble of those very modules, its Classifier, a batch [2, 3, 64, 64])."""
    torch.manual_seed(0)
    members = [_random_member(n, seed=i + 1) for i, n in enumerate(NAMES)]
    ensemble = LiteEnsemble(members, names=NAMES).eval()
    clf = load_classifier(ensemble, preprocess=Preprocess(SIZE, LITE_MEAN, LITE_STD))
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(3))
    return members, ensemble, clf, x


def test_logits_are_the_mean_of_the_members_logits(parts):
    members, ensemble, _, x = parts
    with torch.no_grad():
        each = [m(x) for m in members]
        got = ensemble(x)
    assert got.shape == (2, 1000)
    assert not torch.allclose(each[0], each[1], atol=1e-2)  # the mean is not either member
    torch.testing.assert_close(got, (each[0] + each[1]) / 2, atol=1e-5, rtol=1e-5)


def test_fc_is_the_members_weights_side_by_side_over_n(parts):
    members, ensemble, _, _ = parts
    w0, w1 = (m._fc.weight for m in members)
    assert ensemble.fc.weight.shape == (1000, w0.shape[1] + w1.shape[1])
    assert torch.equal(ensemble.fc.weight[:, :w0.shape[1]], w0 / 2)
    assert torch.equal(ensemble.fc.weight[:, w0.shape[1]:], w1 / 2)
    torch.testing.assert_close(ensemble.fc.bias, (members[0]._fc.bias + members[1]._fc.bias) / 2)


def test_classifier_finds_the_concatenated_map_and_the_linear_layer(parts):
    members, ensemble, clf, x = parts
    assert clf.last_conv == "concat" and clf.fc == "fc" and clf.gap_linear and clf.tokens is None
    assert clf.num_classes == 1000
    assert [describe_layers(m, SIZE)[:2] for m in members] == [("_relu_head", "_fc")] * 2  # the members' own
    assert ensemble.features(x).shape == (2, 2 * 1280, 2, 2)
    assert forward_only_maps(clf, "grad_cam", {}) and forward_only_maps(clf, "cam", {})


@pytest.mark.parametrize("shortcut", [True, False])
def test_grad_cam_is_the_mean_of_the_members_grad_cam(parts, shortcut):
    members, _, clf, x = parts
    targets = torch.tensor([[1, 7, 42], [999, 0, 500]])
    got = attribute(clf, x, targets, "grad_cam", relu=False, shortcut=shortcut)
    each = [attribute(m, x, targets, "grad_cam", relu=False, shortcut=shortcut) for m in members]  # at _relu_head
    assert got.maps.shape == (2, 3, *SIZE) and torch.equal(got.targets, targets)
    assert not _close(each[0].maps, each[1].maps, tol=0.1)  # the members' maps differ
    assert float(got.maps.abs().max()) > 1e-3  # of order one, not the default init's ~1e-9
    assert _close(got.maps, (each[0].maps + each[1].maps) / 2)
    # CAM (the weights times the map, no 1 / hw) adds up the same way
    cam = attribute(clf, x, targets, "cam")
    cams = [attribute(m, x, targets, "cam") for m in members]
    assert _close(cam.maps, (cams[0].maps + cams[1].maps) / 2)


def test_load_classifier_spells_an_ensemble_with_plus():
    torch.manual_seed(0)
    clf = load_classifier("efficientnet_lite0+efficientnet_lite1", weights=None, input_size=SIZE)
    assert isinstance(clf.model, LiteEnsemble) and clf.model.names == NAMES
    assert (clf.last_conv, clf.fc, clf.name) == ("concat", "fc", "efficientnet_lite0+efficientnet_lite1")
    assert forward_only_maps(clf, "grad_cam", {})
    # default size: the first member's (Lite1 first: 240 px for both)
    assert load_classifier("efficientnet_lite0+efficientnet_lite2", weights=None).input_size == (224, 224)
    assert load_classifier("efficientnet_lite1+efficientnet_lite0", weights=None).input_size == (240, 240)


@pytest.mark.parametrize("name, bad", [
    ("efficientnet_lite0+resnet50", "'resnet50'"),
    ("efficientnet_lite3+efficientnet_lite0", "'efficientnet_lite3'"),
    ("efficientnet_lite0+", "empty member"),
    ("efficientnet_lite0+efficientnet_lite0", "more than once"),
])
def test_bad_ensemble_names_raise_model_error_naming_the_member(name, bad):
    with pytest.raises(ModelError) as info:
        load_classifier(name, weights=None)
    assert bad in str(info.value) and name in str(info.value)


def test_ensemble_weights_other_than_default_or_none_are_refused(tmp_path):
    with pytest.raises(ModelError, match="DEFAULT"):
        load_classifier("efficientnet_lite0+efficientnet_lite1", weights=str(tmp_path / "w.pt"))


def test_ensemble_members_splits_the_name():
    assert ensemble_members("efficientnet_lite0+efficientnet_lite1+efficientnet_lite2") == tuple(LITE_PACKAGES)


def test_localizer_runs_on_an_ensemble():
    torch.manual_seed(0)
    loc = Localizer(LocalizerConfig(model="efficientnet_lite0+efficientnet_lite1", weights=None, device="cpu"))
    assert loc.classifier.last_conv == "concat" and loc.classifier.fc == "fc"
    image = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    (result,) = loc.localize([image])
    assert len(result.classes) == 5
    assert len({c.class_id for c in result.classes}) == 5
    for c in result.classes:
        x0, y0, x1, y1 = c.box
        assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 48


def test_package_weights_ensemble_is_the_mean_of_the_two_models():
    for name in NAMES:
        pytest.importorskip(LITE_PACKAGES[name][0], reason=f"{name}'s weight package is not installed")
    clf = load_classifier("efficientnet_lite0+efficientnet_lite1")  # DEFAULT weights
    assert clf.input_size == (224, 224) and clf.num_classes == 1000
    members = [load_classifier(n, input_size=(224, 224)) for n in NAMES]
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = clf(x)
        each = [m(x) for m in members]
    assert not torch.allclose(each[0], each[1], atol=1e-2)
    torch.testing.assert_close(got, (each[0] + each[1]) / 2, atol=1e-4, rtol=1e-5)


def test_the_refine_layer_of_an_ensemble_is_its_first_members(parts):
    """``saliency.refine_layer="_blocks.10"`` names Lite0's block; in an ensemble the first member's."""
    from wsloc.saliency.refine import feature_layer, layer_features

    members, ensemble, _, x = parts
    assert feature_layer(ensemble, "_blocks.10") == "members.0._blocks.10"
    assert feature_layer(members[1], "_blocks.10") == "_blocks.10"  # a plain Lite keeps the name
    assert feature_layer(ensemble, "concat") == "concat"  # the ensemble's own module wins
    assert feature_layer(ensemble, "nope") == "nope"  # left for layer_features to name
    got = layer_features(ensemble, x, feature_layer(ensemble, "_blocks.10"))
    assert torch.equal(got, layer_features(members[0], x, "_blocks.10"))


def test_an_ensemble_localizer_refines_on_its_first_members_features(parts, monkeypatch):
    import wsloc.saliency.refine as refine
    from wsloc.saliency.multiscale import scaled_input

    members, _, clf, _ = parts
    seen = []
    real = refine.layer_features

    def spy(model, x, layer):
        seen.append(layer)
        return real(model, x, layer)

    monkeypatch.setattr(refine, "layer_features", spy)
    image = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    plain = Localizer(classifier=clf, preset="gradcam_graphcut", device="cpu", top_k=2)
    refined = Localizer(classifier=clf, preset="gradcam_graphcut", device="cpu", top_k=2,
                        **{"saliency.refine": "features", "saliency.refine_power": 0.15})
    x = plain.preprocess.batch([image])
    a, b = plain.network(x), refined.network(x)
    assert seen == ["members.0._blocks.10"]  # the default layer name, resolved to the first member's
    np.testing.assert_array_equal(a.classes, b.classes)
    feats = real(members[0], scaled_input(x, 2.0), "_blocks.10")
    np.testing.assert_allclose(b.maps, refine.refine_maps(feats, a.maps, map_power=0.15), rtol=1e-4, atol=1e-5)
