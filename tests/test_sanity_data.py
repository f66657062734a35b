"""The data-randomization test's parts: the synthetic shapes, seeded training, pointing."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from wsloc.sanity import data_randomization as dr


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("shape,area", [("square", 4.0), ("circle", np.pi), ("triangle", 2.0),
                                        ("cross", 20 / 9)])
def test_shape_areas_and_boxes(shape, area):
    r, cx, cy = 9.0, 20.25, 18.5
    cover = dr.coverage(shape, cx, cy, r, 40, supersample=8)
    assert cover.sum() == pytest.approx(area * r * r, rel=0.02)  # area in units of r^2
    ys, xs = np.nonzero(cover)  # every covered pixel lies in the box [cx - r, cx + r] x [cy - r, cy + r]
    assert xs.min() == int(cx - r) and xs.max() == int(np.ceil(cx + r)) - 1
    assert ys.min() == int(cy - r) and ys.max() == int(np.ceil(cy + r)) - 1
    with pytest.raises(ValueError, match="unknown shape"):
        dr.coverage("star", cx, cy, r, 40)


def test_make_shapes_is_seeded_balanced_and_boxed():
    a = dr.make_shapes(40, 32, seed=1)
    b = dr.make_shapes(40, 32, seed=1)
    c = dr.make_shapes(40, 32, seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    images, labels, boxes = a
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 32).all() and (boxes[:, 2:] - boxes[:, :2] > 4).all()


def test_training_is_seeded_and_learns():
    images, labels, _ = dr.make_shapes(64, 32, seed=0)
    a = dr.train(images, labels, seed=0, steps=20, batch_size=32)
    b = dr.train(images, labels, seed=0, steps=20, batch_size=32)
    c = dr.train(images, labels, seed=1, steps=20, batch_size=32)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.steps == 20 and len(a.losses) == 20 and np.mean(a.losses[-5:]) < np.mean(a.losses[:5])
    assert not a.model.training and not any(p.requires_grad for p in a.model.parameters())


def test_pointing_hand_example():
    maps = np.zeros((2, 10, 10))
    maps[0, 3, 7] = 5.0  # row 3, column 7
    maps[1, 9, 0] = -5.0  # |map| counts
    boxes = np.array([[6, 2, 8, 4], [6, 2, 8, 4]], float)
    assert dr.pointing(maps, boxes).tolist() == [True, False]


def _fake_attribute(model, x, targets=None, method="gradient", top_k=5, **options):
    """Stand-in for wsloc.saliency.attribute: the plain input gradient, computed here."""
    net = model.model
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xg).gather(1, targets[:, None]).sum(), xg)
    return types.SimpleNamespace(maps=grad.abs().amax(1)[:, None], attributions=grad[:, None],
                                 targets=targets[:, None])


def test_data_randomization_test_structure(monkeypatch):
    monkeypatch.setitem(sys.modules, "wsloc.saliency", types.SimpleNamespace(attribute=_fake_attribute))
    out = dr.data_randomization_test(("gradient",), n_train=64, n_test=8, steps=5, seed=0)
    assert set(out["models"]) == {"true", "true_control", "permuted"}
    assert all(m["steps"] == 5 for m in out["models"].values())
    assert [r["compared"] for r in out["rows"]] == ["true vs true_control", "true vs permuted"]
    for r in out["rows"]:
        assert -1 <= r["spearman_abs"] < 1 and -1 <= r["ssim"] <= 1 and 0 <= r["pointing_true"] <= 1
    from wsloc.sanity.report import data_randomization_markdown

    md = data_randomization_markdown(out)
    assert "| gradient | true vs permuted |" in md and "| permuted |" in md
