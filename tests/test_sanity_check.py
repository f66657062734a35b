"""The randomization check end to end, with a stand-in for wsloc.saliency.attribute.

The stand-in computes two maps of our own: the plain input gradient (depends on the model)
and an edge map of the input (independent of the model), so the expected outcomes are known:
the edge map's similarity must stay exactly 1 at every step, the gradient's must fall.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from wsloc.sanity import check, report
from wsloc.sanity.data_randomization import TinyCNN, classifier, make_shapes, to_tensor
from wsloc.sanity.randomize import block_list


@dataclass
class _Maps:
    maps: torch.Tensor
    targets: torch.Tensor
    attributions: torch.Tensor | None = None


def _fake_attribute(model, x, targets=None, method="gradient", top_k=5, **options):
    net = model.model if hasattr(model, "model") else model
    if method == "edges":  # model-independent
        g = x.mean(1)
        m = (g[:, 1:, :-1] - g[:, :-1, :-1]).abs() + (g[:, :-1, 1:] - g[:, :-1, :-1]).abs()
        m = torch.nn.functional.pad(m, (0, 1, 0, 1))
        return _Maps(m[:, None], targets[:, None])
    xg = x.clone().requires_grad_(True)
    out = net(xg)
    (grad,) = torch.autograd.grad(out.gather(1, targets[:, None]).sum(), xg)
    return _Maps(grad.abs().amax(1)[:, None], targets[:, None], grad[:, None])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors on a shared 2-core machine: one intra-op thread avoids contention
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fake_saliency(monkeypatch):
    import wsloc.saliency

    monkeypatch.setattr(wsloc.saliency, "attribute", _fake_attribute)  # the sanity code looks it up per call


@pytest.fixture(scope="module")
def tiny():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyCNN()
    images, labels, boxes = make_shapes(6, 32, seed=3)
    return classifier(model), images, labels, boxes


def test_map_box_hand_example():
    m = np.zeros((20, 30), np.float32)
    m[5:10, 12:20] = 1.0  # rows 5..9, columns 12..19
    m[15, 2] = 0.5  # a smaller, separate blob
    assert np.array_equal(check.map_box(m, (20, 30), threshold=0.3, sigma_frac=0.0), [12, 5, 20, 10])
    box = check.map_box(m, (40, 60), threshold=0.3, sigma_frac=0.0)  # resized to the image: scaled box
    assert np.allclose(box, [24, 10, 40, 20], atol=1.01)
    assert check.map_box(np.zeros((5, 5)), (5, 5)) is None


def test_model_independent_map_passes_through_unchanged(fake_saliency, tiny):
    clf, images, labels, boxes = tiny
    res = check.sanity_check(clf, to_tensor(images), "edges", targets=labels, gt_boxes=[b[None] for b in boxes],
                             image_sizes=[im.shape[:2] for im in images], keep_maps=2)
    assert res.steps == ["original"] + [b.name for b in block_list(clf)]
    for m in ("spearman_abs", "spearman", "ssim", "hog"):
        assert res.metrics[m].shape == (len(res.steps), 6)
        assert np.allclose(res.metrics[m], 1.0), m
    assert (res.loc_correct == res.loc_correct[0]).all()
    assert res.maps.shape == (len(res.steps), 2, 32, 32)
    rows = res.rows()
    assert [r["block"] for r in rows] == res.steps and rows[0]["spearman_abs"] == pytest.approx(1.0)


def test_gradient_map_changes_under_cascading_randomization(fake_saliency, tiny, tmp_path):
    clf, images, labels, boxes = tiny
    x = to_tensor(images)
    res = check.sanity_check(clf, x, "gradient", targets=labels, gt_boxes=[b[None] for b in boxes],
                             image_sizes=[im.shape[:2] for im in images], seed=0)
    sp = res.metrics["spearman_abs"].mean(1)
    assert sp[0] == pytest.approx(1.0)
    assert sp[-1] < 0.6  # every layer re-drawn: the map no longer resembles the original
    assert res.metrics["spearman"][0] == pytest.approx(1.0)
    again = check.sanity_check(clf, x, "gradient", targets=labels, seed=0)
    assert np.array_equal(again.metrics["spearman_abs"], res.metrics["spearman_abs"])  # seeded: identical
    ind = check.sanity_check(clf, x, "gradient", targets=labels, mode="independent", blocks=["fc", "features.0"])
    assert ind.steps == ["original", "fc", "features.0"] and ind.loc_correct is None
    # report outputs
    rows = report.table_rows([res, ind])
    report.write_table(rows, tmp_path / "t.json", tmp_path / "t.csv")
    import csv
    import json

    assert len(json.load(open(tmp_path / "t.json"))) == len(rows)
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == len(rows)
    md = report.markdown_table([res], "spearman_abs")
    assert md.count("\n") == 2 and "| gradient | 1.00 |" in md
    assert (tmp_path / "c.png").exists() is False
    report.plot_curves([res], str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000
    g = report.map_grid([res], 0, image=images[0], cell=32)
    assert g.ndim == 3 and g.shape[1] > 32 * (len(res.steps) + 1)


def test_load_batch_on_demo_set():
    from wsloc.models.preprocess import Preprocess
    from wsloc.paths import demo_annotations

    clf = types.SimpleNamespace(preprocess=Preprocess((32, 32)))
    batch = check.load_batch(clf, demo_annotations(), limit=3)
    assert batch.x.shape == (3, 3, 32, 32) and len(batch.images) == 3
    assert batch.targets is not None and batch.gt_boxes is not None
    for im, b, size in zip(batch.images, batch.gt_boxes, batch.sizes):
        assert size == im.shape[:2] and b.shape[1] == 4 and len(b) >= 1


def test_bad_arguments(tiny):
    from wsloc.errors import MethodError

    clf, images, labels, _ = tiny
    with pytest.raises(MethodError, match="mode"):
        check.sanity_check(clf, to_tensor(images), "gradient", mode="sideways")
    with pytest.raises(MethodError, match="targets"):
        check.sanity_check(clf, to_tensor(images), "gradient", targets=[1, 2])


@pytest.mark.slow
def test_cli_sanity_writes_table_and_figures(fake_saliency, tmp_path, capsys):
    from wsloc.cli import main

    assert main(["sanity", "--list-blocks", "--weights", "none", "--device", "cpu"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 19 and listed[0].split()[0] == "_fc" and listed[1].split() == ["head", "_conv_head", "+", "_bn1"]
    out = tmp_path / "s"
    code = main(["sanity", "--method", "gradient,edges", "--limit", "1", "--blocks", "_fc,head", "--weights", "none",
                 "--device", "cpu", "--keep-maps", "1", "--out", str(out)])
    assert code == 0
    for name in ("sanity.json", "sanity.csv", "sanity_curves.png", "sanity_maps_0.png"):
        assert (out / name).stat().st_size > 0, name
    import json

    rows = json.load(open(out / "sanity.json"))
    assert [(r["method"], r["block"]) for r in rows] == [
        ("gradient", "original"), ("gradient", "_fc"), ("gradient", "head"),
        ("edges", "original"), ("edges", "_fc"), ("edges", "head")]
    assert all(r["spearman_abs"] == pytest.approx(1.0) for r in rows if r["method"] == "edges")
    assert "| gradient | 1.00 |" in capsys.readouterr().out


def test_with_the_real_saliency_methods(tiny):
    pytest.importorskip("wsloc.saliency")
    clf, images, labels, boxes = tiny
    x = to_tensor(images[:3])
    for method in ("gradient", "guided_backprop", "grad_cam", "integrated_gradients"):
        res = check.sanity_check(clf, x, method, targets=labels[:3], blocks=["fc", "features.8", "features.0"],
                                 options={"steps": 8} if method == "integrated_gradients" else None)
        assert res.steps == ["original", "fc", "features.8", "features.0"]
        assert res.metrics["spearman_abs"][0] == pytest.approx(1.0), method
        assert res.maps.shape == (4, 3, 32, 32)
        assert np.isfinite(res.metrics["hog"]).all() or method == "grad_cam"
