"""Vision transformers: Grad-CAM on the patch tokens, the fixed input size respected.

A tiny torchvision ``VisionTransformer`` (32 px, 8 px patches: a 4 x 4 grid plus the class token) stands in for
``vit_b_16`` (the same class, 224 px, 16 px patches), so the tests run in seconds.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torchvision

from wsloc import Preprocess, load_classifier
from wsloc.errors import MethodError, ModelError
from wsloc.localizer import Localizer
from wsloc.saliency import attribute
from wsloc.saliency.cam import token_map
from wsloc.saliency.multiscale import multiscale


def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=10)
    torch.nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision starts the head at zero
    return vit


@pytest.fixture(scope="module")
def vit_clf():
    return load_classifier(tiny_vit(), preprocess=Preprocess((32, 32)))


def test_layer_is_the_input_of_the_last_attention_and_tokens_are_the_patch_grid(vit_clf):
    # After the last attention only the class token reaches the head: the last layer whose patch tokens count
    # is the last block's ln_1. The patch embedding (a 4-D map) is not used.
    assert vit_clf.last_conv == "encoder.layers.encoder_layer_1.ln_1"
    assert vit_clf.tokens == (1, 4, 4) and vit_clf.fc is None


def test_token_map_lays_the_patches_out_row_by_row():
    t = torch.arange(2 * (1 + 6) * 3, dtype=torch.float32).reshape(2, 7, 3)  # [N, 1 + 2*3 tokens, C]
    m = token_map(t, (1, 2, 3))
    assert m.shape == (2, 3, 2, 3)
    # patch token 1 + r*3 + c, channel k  ->  m[:, k, r, c]
    for r in range(2):
        for c in range(3):
            torch.testing.assert_close(m[:, :, r, c], t[:, 1 + r * 3 + c, :])
    four_d = torch.randn(1, 2, 3, 3)
    assert token_map(four_d, (1, 3, 3)) is four_d


def test_grad_cam_on_tokens_equals_a_hand_computation(vit_clf):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    sal = attribute(vit_clf, x, method="grad_cam", top_k=2)
    assert sal.maps.shape == (3, 2, 32, 32)
    # By hand: tokens A [N, 17, C] at the last ln_1; alpha_c = mean over the 16 patch tokens of dlogit/dA;
    # map = ReLU(sum_c alpha_c A[:, 1:, c]) on the 4 x 4 grid, upsampled bilinearly.
    net = vit_clf.model
    seen = {}
    handle = net.get_submodule("encoder.layers.encoder_layer_1.ln_1").register_forward_hook(
        lambda m, i, o: seen.__setitem__("a", o))
    with torch.enable_grad():
        xi = x.clone().requires_grad_(True)
        out = net(xi)
    handle.remove()
    a = seen["a"]
    for j in range(2):
        cls = sal.targets[:, j]
        (g,) = torch.autograd.grad(out.gather(1, cls[:, None]).sum(), a, retain_graph=True)
        alpha = g[:, 1:].mean(dim=1)  # [N, C]
        cam = torch.relu((a[:, 1:] * alpha[:, None]).sum(-1)).reshape(3, 1, 4, 4)
        ref = torch.nn.functional.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(sal.maps[:, j], ref.detach(), rtol=1e-4, atol=1e-6)
    assert float(sal.maps.amax()) > 0
    # The final LayerNorm's patch tokens do not reach the logits: Grad-CAM there is all zero (why it is not used).
    late = attribute(vit_clf, x, method="grad_cam", top_k=1, layer="encoder.ln")
    assert float(late.maps.abs().amax()) == 0.0


def test_the_plain_module_is_described_the_same_way():
    vit = tiny_vit().eval()
    sal = attribute(vit, torch.randn(1, 3, 32, 32), method="grad_cam", top_k=1)
    assert sal.maps.shape == (1, 1, 32, 32) and float(sal.maps.amax()) > 0


def test_fixed_input_size_other_scales_refused_clearly(vit_clf):
    assert not vit_clf.accepts_size((64, 64)) and vit_clf.accepts_size((32, 32))
    with pytest.raises(MethodError, match=r"does not run on the input resized by 2 to 64x64.*fixed 32x32 input"):
        multiscale(vit_clf, torch.randn(1, 3, 32, 32), method="grad_cam", scales=(1, 2))
    with pytest.raises(ModelError, match=r"does not run on a 48x48 input .*Wrong image height"):
        load_classifier(tiny_vit(), preprocess=Preprocess((32, 32)), input_size=(48, 48))


def test_localizer_with_the_default_preset_keeps_scale_one_and_says_so(vit_clf, caplog):
    with caplog.at_level(logging.WARNING, logger="wsloc"):
        loc = Localizer(classifier=vit_clf, device="cpu", top_k=2)
    assert loc.config.saliency.scales == (1.0,)  # the default preset fuses 1 and 2; the ViT takes 32 px only
    assert "takes a fixed 32x32 input" in caplog.text and "not 2" in caplog.text
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    result = loc.localize(image)
    assert len(result.classes) == 2 and result.classes[0].mask.shape == (40, 50)


def test_a_cnn_keeps_the_presets_scales(caplog):
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 5))
    clf = load_classifier(cnn, preprocess=Preprocess((32, 32)))
    assert clf.tokens is None and clf.accepts_size((64, 64))
    with caplog.at_level(logging.WARNING, logger="wsloc"):
        loc = Localizer(classifier=clf, device="cpu", top_k=2)
    assert loc.config.saliency.scales == (1.0, 2.0) and "fixed" not in caplog.text


def tiny_vit_classifier():
    """Factory for ``wsloc localize --model test_models_vit:tiny_vit_classifier``."""
    return load_classifier(tiny_vit(), preprocess=Preprocess((32, 32)))


def test_wsloc_localize_with_a_vit_and_the_default_preset(tmp_path, capsys, caplog):
    """The reported failure: the default preset's 2x scale crashed every batch of a ViT with an assertion."""
    import json

    from wsloc.cli import main

    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="wsloc"):  # the CLI logs to stderr; pytest captures the record
        rc = main(["localize", "--model", "test_models_vit:tiny_vit_classifier", "--device", "cpu", "--limit", "2",
                   "--out", str(out), "--no-eval", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "takes a fixed 32x32 input: fusing the maps of scales 1 only, not 2" in caplog.text
    records = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" and r["results"] for r in records)
    assert json.loads((out / "config.json").read_text())["localizer"]["saliency"]["scales"] == [1.0]


def test_scales_from_the_photo_on_a_fixed_size_model_fall_back_to_its_own_input(vit_clf, caplog):
    """The fine scale the ViT cannot run is dropped with its weight; the network input is then the
    classifier's own 32 px preprocess (nothing larger to shrink from)."""
    changes = {"saliency.scales": (1.0, 2.0), "saliency.resize_from": "photo", "saliency.fusion": "geometric",
               "saliency.weights": (3.0, 1.0)}
    with caplog.at_level(logging.WARNING, logger="wsloc"):
        loc = Localizer(classifier=vit_clf, device="cpu", top_k=2, **changes)
    assert loc.config.saliency.scales == (1.0,) and loc.config.saliency.weights is None
    assert loc.preprocess.size == (32, 32)
    image = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    assert len(loc.localize(image).classes) == 2
