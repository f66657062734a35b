"""wsloc.saliency.refine: the map carried into feature space, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsloc.errors import MethodError
from wsloc.saliency.refine import feature_map, layer_features


def scene(noise: float = 0.05, seed: int = 0):
    """8 x 8 positions: an object (rows / columns 2..5) whose features point along channel 0, a
    background along channel 1, and a map that is high only on the object's central 2 x 2 cells,
    middling on the rest of the object (never a seed) and 0 on the background."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((8, 8), bool)
    obj[2:6, 2:6] = True
    f = np.zeros((2, 8, 8), np.float32)
    f[0][obj], f[1][~obj] = 1.0, 1.0
    f += noise * rng.standard_normal(f.shape).astype(np.float32)
    m = np.where(obj, 0.3, 0.0).astype(np.float32)
    m[3:5, 3:5] = 1.0
    return f, m, obj


def test_the_feature_map_covers_the_object_the_map_reached_only_in_part():
    f, m, obj = scene()
    p = feature_map(f, m)
    assert p.shape == (8, 8) and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    # The 12 object cells outside the map's peak were neither seed set; their features decide.
    assert (p[obj] > 0.5).all() and (p[~obj] < 0.5).all()
    # The map alone at its foreground level keeps only the 4 peak cells.
    assert int((m >= 0.5).sum()) == 4


def test_map_power_multiplies_by_the_maps_fraction():
    f, m, obj = scene()
    p0 = feature_map(f, m)
    p1 = feature_map(f, m, map_power=0.5)
    np.testing.assert_allclose(p1, p0 * m ** 0.5, rtol=1e-6, atol=1e-7)
    assert (p1[~obj] == 0).all()


def test_a_larger_map_is_brought_to_the_feature_grid_by_area():
    f, m, obj = scene()
    big = np.kron(m, np.ones((4, 4), np.float32)) * 7.0  # 32 x 32, another scale: the same map
    np.testing.assert_allclose(feature_map(f, big), feature_map(f, m), rtol=1e-5, atol=1e-6)


def test_torch_features_give_the_same_answer():
    f, m, _ = scene()
    np.testing.assert_allclose(feature_map(torch.from_numpy(f), m), feature_map(f, m), rtol=1e-6)


@pytest.mark.parametrize("m", [np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32),
                               -np.ones((8, 8), np.float32)], ids=["zero", "flat", "negative"])
def test_no_seeds_gives_none(m):
    f, _, _ = scene()
    assert feature_map(f, m) is None


@pytest.mark.parametrize("kw, words", [({"fg": 0.2, "bg": 0.2}, "bg < fg"), ({"fg": 1.5}, "bg < fg"),
                                       ({"map_power": -1.0}, "map_power")])
def test_bad_options_are_refused(kw, words):
    f, m, _ = scene()
    with pytest.raises(ValueError, match=words):
        feature_map(f, m, **kw)


def test_features_must_be_channels_by_grid():
    _, m, _ = scene()
    with pytest.raises(ValueError, match=r"\[C, h, w\]"):
        feature_map(np.zeros((8, 8), np.float32), m)


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 5, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3))


def test_layer_features_returns_that_modules_output_and_leaves_the_model_alone():
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(2, 3, 8, 8)
    got = layer_features(model, x, "3")
    want = model[3](model[2](model[1](model[0](x))))
    assert got.shape == (2, 5, 4, 4) and not got.requires_grad
    torch.testing.assert_close(got, want.detach())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert not model[3]._forward_hooks  # the hook is removed


def test_layer_features_stops_the_forward_pass_at_the_layer():
    model = small_model()
    later = []
    model[4].register_forward_hook(lambda mod, inputs, output: later.append(1))
    layer_features(model, torch.randn(1, 3, 8, 8), "3")
    assert later == []  # the pooling after layer 3 never ran
    model(torch.randn(1, 3, 8, 8))
    assert later == [1]


def test_layer_features_names_a_missing_or_flat_layer():
    model = small_model()
    with pytest.raises(MethodError, match="no module named 'nope'"):
        layer_features(model, torch.randn(1, 3, 8, 8), "nope")
    with pytest.raises(MethodError, match="feature map"):
        layer_features(model, torch.randn(1, 3, 8, 8), "6")


# ---- refine_maps: a batch of maps, back at their own size; the Localizer's saliency.refine ----------

from wsloc.saliency.refine import grid_map, refine_maps  # noqa: E402
from wsloc.segment.seeds import resize_map  # noqa: E402


def test_refine_maps_is_feature_map_per_map_at_the_maps_size():
    f, m, obj = scene()
    g, m2, _ = scene(seed=1)
    big = np.kron(m, np.ones((2, 2), np.float32))  # 16 x 16 maps on an 8 x 8 feature grid
    zero = np.zeros((16, 16), np.float32)
    maps = np.stack([np.stack([big, zero]), np.stack([3.0 * big, np.kron(m2, np.ones((2, 2), np.float32))])])
    out = refine_maps(np.stack([f, g]), maps, map_power=0.0)
    assert out.shape == (2, 2, 16, 16) and out.dtype == np.float32
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_allclose(out[0, 0], resize_map(feature_map(f, m), (16, 16)), rtol=1e-5, atol=1e-6)
    assert (out[0, 1] == 0).all()  # no seeds: the map over its maximum, here zero
    np.testing.assert_allclose(out[1, 0], resize_map(feature_map(g, m), (16, 16)), rtol=1e-5, atol=1e-6)
    # the whole object (pixels 4..11) is now at least half, up to the blur of its border, and the
    # background far below (feature_map gives about 0.55 on the object, 0.04 off it)
    assert (out[0, 0][5:11, 5:11] > 0.5).all() and out[0, 0][:3].max() < 0.1 and out[0, 0][:, 13:].max() < 0.1


def test_refine_maps_keeps_a_flat_map_as_its_fraction_of_the_maximum():
    f, _, _ = scene()
    flat = np.full((1, 1, 8, 8), 4.0, np.float32)
    np.testing.assert_array_equal(refine_maps(f[None], flat)[0, 0], grid_map(flat[0, 0], (8, 8)))
    np.testing.assert_array_equal(refine_maps(f[None], flat)[0, 0], np.ones((8, 8), np.float32))


def test_refine_maps_needs_one_feature_map_per_image():
    f, m, _ = scene()
    with pytest.raises(ValueError, match="same N"):
        refine_maps(np.stack([f, f]), m[None, None])


def tiny_localizer(**changes):
    from test_run_helpers import tiny_classifier
    from wsloc.localizer import Localizer

    return Localizer(classifier=tiny_classifier(), preset="gradcam_graphcut", device="cpu", top_k=2, **changes)


def test_the_localizer_refines_its_maps_with_the_named_layers_features():
    from test_run_helpers import scene as photo
    from wsloc.saliency.multiscale import scaled_input

    plain = tiny_localizer()
    refined = tiny_localizer(**{"saliency.refine": "features", "saliency.refine_layer": "conv1",
                                "saliency.refine_power": 0.5})
    x = plain.preprocess.batch([photo(0), photo(1)])
    a, b = plain.network(x), refined.network(x)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert b.maps.shape == a.maps.shape and ((b.maps >= 0) & (b.maps <= 1)).all()
    feats = layer_features(plain.classifier.model, scaled_input(x, 2.0), "conv1")  # the largest scale's input
    np.testing.assert_allclose(b.maps, refine_maps(feats, a.maps, map_power=0.5), rtol=1e-4, atol=1e-5)
    assert not np.allclose(b.maps, a.maps / a.maps.max(axis=(2, 3), keepdims=True), atol=0.05)
    # given targets (targets="gt") take the same path
    c = refined.network(x, [[3], [4, 5]])
    assert c.maps.shape[:2] == (2, 2) and ((c.maps >= 0) & (c.maps <= 1)).all()


def test_a_refine_layer_the_model_lacks_is_named():
    from test_run_helpers import scene as photo

    loc = tiny_localizer(**{"saliency.refine": "features"})  # Lite0's _blocks.10: not in the tiny net
    with pytest.raises(MethodError, match="no module named '_blocks.10'"):
        loc.network(loc.preprocess.batch([photo(0)]))


def test_a_replica_refines_on_its_own_copy_of_the_model_with_the_same_maps():
    """Lanes run the network in threads; the feature layer's hook must not see another lane's pass."""
    from test_run_helpers import scene as photo

    loc = tiny_localizer(**{"saliency.refine": "features", "saliency.refine_layer": "conv1"})
    twin = loc.replica()
    assert twin._features_model is not loc._features_model
    assert twin._features_model.get_submodule("conv1") is not loc.classifier.model.get_submodule("conv1")
    x = loc.preprocess.batch([photo(2)])
    np.testing.assert_allclose(twin.network(x).maps, loc.network(x).maps, rtol=1e-5, atol=1e-6)
