"""Scale fusion (mean / geometric, weights) and scales resized from the photo (``resize_from="photo"``)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from wsloc.config import ConfigError, SaliencyConfig
from wsloc.errors import MethodError
from wsloc.saliency.multiscale import check_fusion, fuse_maps, multiscale, scaled_input


def _maps(*rows):
    return torch.tensor([[rows]], dtype=torch.float32)  # [1, 1, 1, W]


def test_geometric_fusion_known_answer():
    a, b = _maps(1.0, 0.5), _maps(0.25, 1.0)  # already peak-normalised
    out = fuse_maps([(a, 0), (b, 1)], (1, 2), "geometric", check_fusion("geometric", (1, 1), 2))
    assert torch.allclose(out, _maps(0.5, 0.5 ** 0.5))
    out = fuse_maps([(a, 0), (b, 1)], (1, 2), "geometric", check_fusion("geometric", (3, 1), 2))
    assert torch.allclose(out, _maps(0.25 ** 0.25, 0.5 ** 0.75))


def test_weighted_mean_and_plain_mean():
    a, b = _maps(1.0, 0.0), _maps(0.0, 1.0)
    assert torch.allclose(fuse_maps([(a, 0), (b, 1)], (1, 2), "mean", (0.75, 0.25)), _maps(0.75, 0.25))
    assert torch.equal(fuse_maps([(a, 0), (b, 1)], (1, 2)), (a + b) / 2)
    # a mirrored run shares its scale's weight: scale 0 (two runs) 0.5, scale 1 0.5
    out = fuse_maps([(a, 0), (a, 0), (b, 1)], (1, 2), "mean", (0.5, 0.5))
    assert torch.allclose(out, _maps(0.5, 0.5))


def test_maps_are_peak_normalised_before_fusing():
    a, b = _maps(4.0, 2.0), _maps(-1.0, 10.0)  # peaks 4 and 10, negatives clipped
    out = fuse_maps([(a, 0), (b, 1)], (1, 2), "geometric")
    assert torch.allclose(out, _maps(0.0, 0.5 ** 0.5))


def test_geometric_fusion_cuts_a_coarse_blob_down_to_the_fine_peak():
    """A coarse map: a wide blob over a 9 x 9 object and its surroundings; a fine map: a sharp
    peak on the object plus a weaker false peak far away. The geometric mean's half-maximum region
    lies inside the object; the plain mean's spreads over the blob."""
    yy, xx = np.mgrid[0:32, 0:32]
    coarse = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 12.0 ** 2))
    fine = (np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 3.0 ** 2))
            + 0.6 * np.exp(-((yy - 2) ** 2 + (xx - 29) ** 2) / (2 * 2.0 ** 2)))
    obj = (abs(yy - 16) <= 4) & (abs(xx - 16) <= 4)
    runs = [(torch.tensor(coarse, dtype=torch.float32)[None, None], 0),
            (torch.tensor(fine, dtype=torch.float32)[None, None], 1)]
    geo = fuse_maps(runs, (32, 32), "geometric")[0, 0].numpy() >= 0.5
    mean = fuse_maps(runs, (32, 32), "mean")[0, 0].numpy() >= 0.5
    assert geo.any() and not (geo & ~obj).any()
    assert (mean & ~obj).sum() > 0 and geo.sum() < mean.sum()
    assert not geo[0:6, 25:32].any()  # the fine map's false peak does not survive the coarse map


def test_check_fusion_rejects_bad_options():
    with pytest.raises(MethodError, match="fusion"):
        check_fusion("median", None, 2)
    with pytest.raises(MethodError, match="2 positive"):
        check_fusion("mean", (1.0,), 2)
    with pytest.raises(MethodError, match="2 positive"):
        check_fusion("mean", (1.0, 0.0), 2)
    assert check_fusion("mean", (3, 1), 2) == (0.75, 0.25)


def test_config_checks_weights_against_scales():
    cfg = SaliencyConfig(method="grad_cam", scales=(1.0, 2.0), fusion="geometric", weights=(3, 1))
    assert cfg.weights == (3.0, 1.0)
    with pytest.raises(ConfigError, match="one weight per scale"):
        SaliencyConfig(scales=(1.0, 2.0), weights=(1.0,))
    with pytest.raises(ConfigError, match="weights"):
        SaliencyConfig(scales=(1.0, 2.0), weights=(1.0, -1.0))
    with pytest.raises(ConfigError, match="resize_from"):
        SaliencyConfig(resize_from="crop")


def test_scaled_input_from_the_photo():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    assert scaled_input(x, 2.0, (2, 2), "photo") is x  # the input already has the scale's size
    small = scaled_input(x, 1.0, (2, 2), "photo")  # area averaging: the 2 x 2 blocks' means
    assert torch.equal(small, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert scaled_input(x, 1.0) is x  # "input": scale 1 is the input itself
    assert scaled_input(x, 0.5).shape[-2:] == (2, 2)


class _Sum(nn.Module):
    """Two classes: the input's sum and its negation; a 1 x 1 conv as the last layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]).view(2, 3, 1, 1))

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_multiscale_from_the_photo_classifies_the_shrunk_input_and_fuses_on_the_base_grid():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    out = multiscale(_Sum(), x, None, "gradient", 1, scales=(1.0, 2.0), base_size=(8, 8), fusion="geometric",
                     weights=(3, 1))
    assert out.maps.shape == (2, 1, 8, 8)
    small = scaled_input(x, 1.0, (8, 8), "photo")
    assert torch.allclose(out.logits, _Sum()(small))
    assert float(out.maps.min()) >= 0 and float(out.maps.max()) <= 1


def test_localizer_with_scales_from_the_photo():
    from wsloc.localizer import Localizer

    loc = Localizer(weights=None, **{"saliency.scales": (1.0, 2.0), "saliency.resize_from": "photo",
                                     "saliency.fusion": "geometric", "saliency.weights": (3, 1)})
    assert loc.preprocess.size == (448, 448)
    assert loc.classifier.preprocess.size == (224, 224)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    x = loc.preprocess.batch([image])
    net = loc.network(x)
    assert net.maps.shape == (1, 5, 224, 224)
    with torch.no_grad():
        logits = loc.classifier.model(scaled_input(x, 1.0, (224, 224), "photo")).float()
    assert net.classes[0].tolist() == logits[0].topk(5).indices.tolist()
    assert np.allclose(net.logits[0], logits[0, net.classes[0]].numpy(), atol=1e-3)
    # with a class map / given classes the logits come from the same shrunk input
    chosen = loc.network(x, [[int(net.classes[0][2])]])
    assert np.allclose(chosen.logits[0][0], net.logits[0][2], atol=1e-3)
    assert Localizer(weights=None).preprocess.size == (224, 224)  # "input": the classifier's own


def test_bench_native_maps_reads_fusion_variants():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import bench_native_maps as bn

    assert bn.split_variant("sq224:3*s640") == (("sq224", "s640"), None)
    assert bn.variant_fusion("sq224:3*s640") == ("geometric", (3.0, 1.0))
    assert bn.variant_fusion("sq224+n640:2") == ("mean", (1.0, 2.0))
    assert bn.split_variant("today@p99") == (("sq224", "sq448"), 99.0)
    assert bn.variant_fusion("today") == ("mean", None)
    a, b = np.array([[1.0, 0.5]], np.float32), np.array([[0.25, 1.0]], np.float32)
    passes = {"x": (a, (1, 2), None), "y": (b, (1, 2), None)}
    assert np.allclose(bn.fuse(passes, ("x", "y"), None, "geometric", (1.0, 1.0)), [[0.5, 0.5 ** 0.5]])
    assert np.allclose(bn.fuse(passes, ("x", "y")), [[0.625, 0.75]])


def test_fuse_classes_known_answer():
    from wsloc.saliency.multiscale import fuse_classes

    maps = torch.tensor([[[[2.0, 0.0]], [[0.0, 4.0]]]])  # [1, 2, 1, 2]: peaks 2 and 4
    out = fuse_classes(maps, torch.tensor([[0.6, 0.2]]))  # weights 3/4, 1/4
    assert torch.allclose(out, torch.tensor([[[[0.75, 0.25]], [[0.75, 0.25]]]]))
    zero = fuse_classes(maps, torch.zeros(1, 2))  # no probability: equal weights
    assert torch.allclose(zero[0, 0], torch.tensor([[0.5, 0.5]]))
    with pytest.raises(MethodError, match="probs"):
        fuse_classes(maps, torch.ones(1, 3))


def test_localizer_class_fusion_gives_every_top_class_the_weighted_map():
    from wsloc.localizer import Localizer
    from wsloc.normalize import normalize_maps

    rng = np.random.default_rng(1)
    x_images = [rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)]
    own = Localizer(weights=None, device="cpu")
    fused = Localizer(own.config.with_(**{"saliency.class_fusion": "probability"}), classifier=own.classifier)
    x = own.preprocess.batch(x_images)
    a, b = own.network(x), fused.network(x)
    assert (a.classes == b.classes).all()
    w = a.probs[0] / a.probs[0].sum()
    expect = (normalize_maps(a.maps[0], "peak") * w[:, None, None]).sum(0)
    for k in range(5):
        assert np.allclose(b.maps[0, k], expect, atol=1e-5)
    # given targets (the GT-known protocol) keep their own maps
    given = fused.network(x, [[int(a.classes[0][1])]])
    assert np.allclose(given.maps[0, 0], a.maps[0, 1], atol=1e-5)
    with pytest.raises(ConfigError, match="class_fusion"):
        SaliencyConfig(class_fusion="sum")
