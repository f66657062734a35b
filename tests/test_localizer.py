"""wsloc.Localizer: configuration, presets, the network half and the per-image results."""

import dataclasses

import numpy as np
import pytest
import torch

from test_run_helpers import NUM_CLASSES, scene, tiny_classifier
from wsloc.boxes import largest_component_box, rle_to_mask
from wsloc.errors import MethodError
from wsloc.localizer import ImageLocalization, Localizer, LocalizerConfig, SaliencyConfig
from wsloc.presets import DEFAULT_PRESET, PRESETS


@pytest.fixture(scope="module")
def loc():
    return Localizer(classifier=tiny_classifier(), preset="simonyan2014", device="cpu", top_k=3, batch_size=2)


def test_config_defaults_come_from_the_default_preset():
    cfg = LocalizerConfig()
    p = PRESETS[DEFAULT_PRESET]
    assert (cfg.saliency, cfg.segment, cfg.top_k) == (p.saliency, p.segment, p.top_k)
    assert cfg == LocalizerConfig.from_preset(DEFAULT_PRESET)


def test_simonyan2014_preset_is_the_papers_pipeline():
    cfg = LocalizerConfig.from_preset("simonyan2014")
    seg = cfg.segment
    assert cfg.saliency.method == "gradient" and cfg.top_k == 5
    assert (seg.q_fg, seg.q_bg, seg.n_components, seg.covariance_type) == (95.0, 30.0, 5, "full")
    assert seg.box_rule == "largest" and seg.iterations == 1


def test_config_overrides_and_validation():
    cfg = LocalizerConfig.from_preset("simonyan2014", top_k=2, segment={"q_fg": 90.0})
    assert cfg.top_k == 2 and cfg.segment.q_fg == 90.0 and cfg.segment.q_bg == 30.0
    assert LocalizerConfig.from_dict(cfg.to_dict()) == cfg  # round trip through config.json
    with pytest.raises(MethodError, match="unknown preset"):
        LocalizerConfig.from_preset("nope")
    with pytest.raises(MethodError, match="q_fg"):
        LocalizerConfig().with_(segment={"q_fg": 150.0})
    with pytest.raises(MethodError, match="no_such_option"):
        LocalizerConfig().with_(segment={"no_such_option": 1})
    with pytest.raises(MethodError, match="top_k"):
        LocalizerConfig(top_k=0)


def test_network_classes_probabilities_and_maps_match_direct_computation(loc):
    from wsloc.saliency import attribute

    images = [scene(i) for i in range(3)]
    x = loc.preprocess.batch(images)
    out = loc.network(x)
    assert out.maps.shape == (3, 3, 32, 32) and out.maps.dtype == np.float32
    plain = tiny_classifier()  # not channels-last, one image at a time
    with torch.no_grad():
        logits = plain.model(x)
    top = logits.topk(3, dim=1)
    np.testing.assert_array_equal(out.classes, top.indices.numpy())
    np.testing.assert_allclose(out.logits, top.values.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.probs, torch.softmax(logits, 1).gather(1, top.indices).numpy(), rtol=1e-5)
    assert np.all(np.diff(out.logits, axis=1) <= 0)
    for i in range(3):
        one = attribute(plain, x[i:i + 1], targets=top.indices[i:i + 1], method="gradient", top_k=3)
        np.testing.assert_allclose(out.maps[i], one.maps[0].numpy(), rtol=1e-4, atol=1e-7)


def test_localize_single_image_gives_consistent_masks_and_boxes(loc):
    img = scene(5, 40, 56)
    res = loc.localize(img)
    assert isinstance(res, ImageLocalization) and (res.height, res.width) == (40, 56)
    assert [c.rank for c in res.classes] == [1, 2, 3]
    assert len({c.class_id for c in res.classes}) == 3
    assert all(0 <= c.class_id < NUM_CLASSES and c.name == f"class{c.class_id}" for c in res.classes)
    scores = [c.score for c in res.classes]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    for c in res.classes:
        assert c.mask.shape == (40, 56) and c.mask.dtype == bool and c.mask.any()
        if c.flag is None:  # the paper's rule: the box of the largest component of the mask
            np.testing.assert_array_equal(c.box, largest_component_box(c.mask))
        assert 0 <= c.box[0] < c.box[2] <= 56 and 0 <= c.box[1] < c.box[3] <= 40
    assert res.maps.shape == (3, 32, 32)
    for entry, c in zip(res.to_coco(image_id=7), res.classes):
        assert entry["image_id"] == 7 and entry["category_id"] == c.class_id and entry["rank"] == c.rank
        x, y, w, h = entry["bbox"]
        np.testing.assert_allclose([x, y, x + w, y + h], c.box)
        np.testing.assert_array_equal(rle_to_mask(entry["segmentation"]), c.mask)
        assert isinstance(entry["segmentation"]["counts"], str)


def test_localize_list_is_batched_and_in_order(loc):
    images = [scene(i) for i in range(5)]  # batch_size 2: batches of 2, 2, 1
    many = loc.localize(images, keep_maps=False)
    assert len(many) == 5 and all(r.maps is None for r in many)
    for img, r in zip(images, many):
        single = loc.localize(img)
        assert [c.class_id for c in r.classes] == [c.class_id for c in single.classes]
        np.testing.assert_allclose([c.score for c in r.classes], [c.score for c in single.classes], rtol=1e-5)


def test_localize_rejects_non_images(loc):
    with pytest.raises(MethodError, match="uint8 RGB"):
        loc.localize(np.zeros((10, 10), np.uint8))


def test_model_factory_path_and_replace():
    loc = Localizer(model="test_run_helpers:tiny_classifier", device="cpu", top_k=20)
    assert loc.top_k == NUM_CLASSES  # capped at the number of classes
    cfg = dataclasses.replace(loc.config, top_k=1)
    assert cfg.top_k == 1
    from wsloc.errors import ModelError

    with pytest.raises(ModelError, match="cannot import"):
        Localizer(model="no_such_module_xyz:factory", device="cpu")


class _ConvBn(torch.nn.Module):
    def __init__(self, reuse: bool):
        super().__init__()
        self.reuse = reuse
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(6)
        self.conv2 = torch.nn.Conv2d(6, 4, 3, stride=2, bias=True)
        self.bn2 = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)
        gen = torch.Generator().manual_seed(1)
        for bn in (self.bn, self.bn2):  # non-trivial statistics, as after training
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.randn(bn.num_features, generator=gen))
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=gen))

    def forward(self, x):
        y = self.conv(x)
        z = torch.relu(self.bn(y)) + (y if self.reuse else 0)  # reuse: the conv output is needed unfolded
        return self.fc(torch.relu(self.bn2(self.conv2(z))).mean((2, 3)))


def test_fold_batchnorm_keeps_the_function_and_its_input_gradients():
    from wsloc.models.inference import fold_batchnorm

    model = _ConvBn(reuse=False).eval()
    folded, n = fold_batchnorm(model, (12, 12))
    assert n == 2 and isinstance(folded.bn, torch.nn.Identity) and isinstance(model.bn, torch.nn.BatchNorm2d)
    x = torch.randn(3, 3, 12, 12, requires_grad=True)
    g1, = torch.autograd.grad(model(x)[:, 2].sum(), x)
    g2, = torch.autograd.grad(folded(x)[:, 2].sum(), x)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-6)


def test_fold_batchnorm_leaves_a_network_it_cannot_fold_exactly():
    from wsloc.models.inference import fold_batchnorm

    model = _ConvBn(reuse=True).eval()  # folding bn into conv would change the skip branch
    folded, n = fold_batchnorm(model, (12, 12))
    assert folded is model and n == 0
    train = _ConvBn(reuse=False).train()
    assert fold_batchnorm(train, (12, 12)) == (train, 0)


def test_scales_and_flip_fuse_the_maps_like_multiscale():
    from wsloc.saliency import multiscale

    clf = tiny_classifier()
    loc = Localizer(classifier=clf, device="cpu", top_k=2, batch_size=2, channels_last=False,
                    saliency=SaliencyConfig(method="grad_cam", scales=[1.0, 1.5], flip=True))
    assert loc.config.saliency.scales == (1.0, 1.5) and loc.config.saliency.flip is True
    x = loc.preprocess.batch([scene(i) for i in range(2)])
    out = loc.network(x)
    direct = multiscale(tiny_classifier(), x, method="grad_cam", top_k=2, scales=[1.0, 1.5], flip=True)
    np.testing.assert_array_equal(out.classes, direct.targets.numpy())
    np.testing.assert_allclose(out.maps, direct.maps.numpy(), atol=1e-6)
    assert out.maps.min() >= 0 and out.maps.max() <= 1 + 1e-6
    assert LocalizerConfig.from_dict(loc.config.to_dict()) == loc.config


def test_presets_without_scales_get_one_scale_and_bad_scales_are_refused():
    cfg = LocalizerConfig.from_preset("simonyan2014")
    assert cfg.saliency.scales == (1.0,) and cfg.saliency.flip is False  # the paper's raw maps
    with pytest.raises(MethodError, match="scales"):
        SaliencyConfig(scales=[0.0])
    with pytest.raises(MethodError, match="flip"):
        cfg.with_(**{"saliency.flip": "yes"})
