"""Model-parameter randomization: the requested blocks and only those change; seeds rerun identically."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from wsloc.errors import MethodError
from wsloc.models.efficientnet_lite import efficientnet_lite
from wsloc.sanity.randomize import (
    block_list,
    block_seed,
    cascading_randomization,
    independent_randomization,
    randomize_blocks,
    reinitialize_,
)

LITE0_BLOCKS = ["_fc", "head"] + [f"_blocks.{i}" for i in range(15, -1, -1)] + ["stem"]


def _trained_like(model: nn.Module, seed: int = 123) -> nn.Module:
    """Perturb every parameter and buffer so that no value equals what an initializer would give."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                t.add_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.fill_(7)
    return model.eval()


@pytest.fixture(scope="module")
def lite0():
    return _trained_like(efficientnet_lite("efficientnet_lite0", pretrained=False))


def _owner(key: str, blocks) -> str | None:
    for b in blocks:
        for m in b.modules:
            if key.startswith(m + "."):
                return b.name
    return None


def _changed(a: nn.Module, b: nn.Module) -> set[str]:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return {k for k in sa if not torch.equal(sa[k], sb[k])}


def test_lite0_block_list(lite0):
    blocks = block_list(lite0)
    assert [b.name for b in blocks] == LITE0_BLOCKS
    assert blocks[1].modules == ("_conv_head", "_bn1") and blocks[-1].modules == ("_conv_stem", "_bn0")
    # every state entry belongs to exactly one block
    for key in lite0.state_dict():
        assert _owner(key, blocks) is not None, key


@pytest.mark.parametrize("names", [["_blocks.3"], ["head"], ["_fc", "stem"]])
def test_only_requested_blocks_change(lite0, names):
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    rnd, fallback = randomize_blocks(lite0, names, seed=0)
    assert fallback == []
    blocks = block_list(lite0)
    changed = _changed(lite0, rnd)
    expected = {k for k in before if _owner(k, blocks) in names}
    assert changed == expected  # every tensor of the blocks changed, nothing else did
    for k, v in lite0.state_dict().items():  # the input model is untouched
        assert torch.equal(v, before[k])


def test_reinit_uses_each_layers_initializer(lite0):
    rnd, _ = randomize_blocks(lite0, ["_blocks.3", "_fc"], seed=0)
    conv = rnd._blocks[3]._expand_conv.weight
    fan_in = conv.shape[1] * conv.shape[2] * conv.shape[3]
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)): gain sqrt(1/3) * sqrt(3 / fan_in)
    assert conv.abs().max() <= bound + 1e-7 and conv.abs().max() > 0.95 * bound
    bn = rnd._blocks[3]._bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1) and bn.num_batches_tracked == 0
    fc = rnd._fc
    assert fc.weight.abs().max() <= 1 / math.sqrt(fc.in_features) + 1e-7
    assert fc.bias.abs().max() <= 1 / math.sqrt(fc.in_features) + 1e-7
    assert rnd.training is False and all(p.requires_grad == q.requires_grad
                                         for p, q in zip(rnd.parameters(), lite0.parameters()))


def test_seeds_rerun_identically_and_differ_between_seeds(lite0):
    a, _ = randomize_blocks(lite0, ["_blocks.10"], seed=5)
    b, _ = randomize_blocks(lite0, ["_blocks.10"], seed=5)
    c, _ = randomize_blocks(lite0, ["_blocks.10"], seed=6)
    assert not _changed(a, b)
    # the random (convolution) weights differ between seeds; BN resets to the same constants
    assert _changed(a, c) == {k for k in _changed(lite0, a) if "_conv." in k}


def test_global_rng_untouched(lite0):
    torch.manual_seed(42)
    expected = torch.rand(5)
    torch.manual_seed(42)
    randomize_blocks(lite0, ["_blocks.0"], seed=1)
    assert torch.equal(torch.rand(5), expected)


def test_cascading_steps_and_agreement_with_independent(lite0):
    names = ["_fc", "head", "_blocks.15"]
    blocks = block_list(lite0)
    steps = list(cascading_randomization(lite0, names, seed=3))
    assert [s.block for s in steps] == names
    for k, s in enumerate(steps):
        assert s.randomized == tuple(names[:k + 1])
        assert {_owner(key, blocks) for key in _changed(lite0, s.model)} == set(names[:k + 1])
    # a block's random weights depend only on (seed, block): the last cascading step holds each
    # independently randomized block's weights
    last = steps[-1].model.state_dict()
    for ind in independent_randomization(lite0, names[1:], seed=3):
        assert ind.randomized == (ind.block,)
        for key in _changed(lite0, ind.model):
            assert torch.equal(ind.model.state_dict()[key], last[key])
    rerun = next(iter(cascading_randomization(lite0, names, seed=3))).model
    assert not _changed(steps[0].model, rerun)


def test_block_seed_is_stable():
    assert block_seed(0, "_fc") == block_seed(0, "_fc") != block_seed(1, "_fc")
    assert block_seed(0, "_fc") == 2020196880  # crc32(b"0:_fc"), fixed across runs and platforms


def test_generic_split_resnet():
    model = torchvision.models.resnet18(weights=None)
    blocks = block_list(model)
    assert [b.name for b in blocks] == ["fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1",
                                        "layer2.0", "layer1.1", "layer1.0", "conv1"]
    assert blocks[-1].modules == ("conv1", "bn1")
    model = _trained_like(model)
    rnd, _ = randomize_blocks(model, ["layer2.0"], seed=0)
    assert _changed(model, rnd) and all(k.startswith("layer2.0.") for k in _changed(model, rnd))


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = nn.Parameter(torch.full((4,), 3.0))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc((self.conv(x) * self.scale.view(1, -1, 1, 1)).mean((2, 3)))


def test_fallback_for_parameters_without_initializer():
    model = _Scaled()
    assert [b.name for b in block_list(model)] == ["fc", "conv"]  # the bare parameter belongs to no child
    fallback = reinitialize_(model, seed=0)
    assert fallback == ["scale"]
    assert not torch.allclose(model.scale, torch.full((4,), 3.0))


def test_classifier_in_classifier_out_and_errors(lite0):
    from wsloc.models import load_classifier
    from wsloc.models.preprocess import Preprocess

    clf = load_classifier(_Scaled(), preprocess=Preprocess((8, 8)))
    rnd, _ = randomize_blocks(clf, ["fc"], seed=0)
    assert type(rnd) is type(clf) and rnd.model is not clf.model and rnd.preprocess == clf.preprocess
    x = torch.randn(2, 3, 8, 8)
    assert not torch.allclose(rnd(x), clf(x))
    with pytest.raises(MethodError, match="unknown block"):
        randomize_blocks(lite0, ["_blocks.99"])
    with pytest.raises(MethodError, match="no parameters"):
        block_list(nn.ReLU())
