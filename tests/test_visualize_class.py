"""Class model visualisation: the analytic optimum of a linear model; Lite0's class score rises."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from wsloc.errors import MethodError
from wsloc.visualize_class import gaussian_blur, to_picture, visualize_class


def test_linear_model_reaches_the_analytic_optimum():
    # S_c(I) = w_c . I + b_c; argmax of S_c - lambda ||I||^2 is I* = w_c / (2 lambda).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 3)).eval()
    lam = 0.5
    (r,) = visualize_class(model, [2], steps=300, step_size=0.1, l2=lam, normalize_grad=False, clip=False,
                           input_size=(4, 5))
    w = model[1].weight[2].detach().view(3, 4, 5)
    assert torch.allclose(r.x, w / (2 * lam), atol=1e-5)
    b = float(model[1].bias[2].detach())
    assert r.zero_score == pytest.approx(b, abs=1e-6)
    assert r.score == pytest.approx(b + float((w * w).sum()) / (2 * lam), abs=1e-4)
    assert len(r.history) == 300 and r.history[0] == pytest.approx(b, abs=1e-6)


def test_gaussian_blur_matches_opencv():
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 20, 24)).astype(np.float32)
    sigma = 1.3
    r = int(np.ceil(3 * sigma))
    got = gaussian_blur(torch.from_numpy(x), sigma)[0].numpy()
    for c in range(3):
        ref = cv2.GaussianBlur(x[0, c], (2 * r + 1, 2 * r + 1), sigma, borderType=cv2.BORDER_REFLECT_101)
        assert np.abs(got[c] - ref).max() < 1e-5
    assert gaussian_blur(torch.from_numpy(x), 0.0) is not None


def test_to_picture_zero_image_is_mid_gray():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert (to_picture(torch.zeros(3, 4, 4), mean, std) == 128).all()
    x = torch.zeros(3, 4, 4)
    x[0, 0, 0] = 1.0
    pic = to_picture(x, mean, std, stretch=False)
    assert pic[0, 0, 0] == round((0.5 + 0.25) * 255) and pic[1, 1, 1] == 128


def test_bad_arguments():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(MethodError, match="input_size"):
        visualize_class(model, 0)
    with pytest.raises(MethodError, match="step_size"):
        visualize_class(model, 0, step_size=0, input_size=(2, 2))


@pytest.fixture(scope="module")
def lite0():
    from wsloc.errors import ModelError
    from wsloc.models import load_classifier

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return load_classifier("efficientnet_lite0", input_size=(96, 96))
    except ModelError as exc:
        pytest.skip(f"Lite0 weights unavailable: {exc}")
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    # a shared 2-core machine: one intra-op thread is many times faster than two contending ones
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_lite0_class_score_rises_well_above_the_zero_image(lite0, one_thread):
    classes = [1, 954]  # goldfish, banana
    results = visualize_class(lite0, classes, steps=12, step_size=0.05, seed=0)
    with torch.no_grad():
        logits = lite0(torch.stack([r.x for r in results]))
        zero = lite0(torch.zeros(1, 3, 96, 96))[0]
    for i, r in enumerate(results):
        assert r.zero_score == pytest.approx(float(zero[r.class_index]), abs=1e-4)
        assert r.score == pytest.approx(float(logits[i, r.class_index]), abs=1e-3)
        assert r.score > r.zero_score + 10.0, (r.class_index, r.zero_score, r.score)
        # class-specific: the class rises far more than the average logit, into the top 10
        assert r.score - r.zero_score > float((logits[i] - zero).mean()) + 10.0
        assert int((logits[i] > logits[i, r.class_index]).sum()) < 10
        assert r.image.shape == (96, 96, 3) and r.image.dtype == np.uint8
        assert 0 < r.history.index(max(r.history))  # the score climbed during the ascent
    a = visualize_class(lite0, classes[:1], steps=3, step_size=0.1, jitter=4, blur_sigma=0.5, blur_every=1, seed=7)
    b = visualize_class(lite0, classes[:1], steps=3, step_size=0.1, jitter=4, blur_sigma=0.5, blur_every=1, seed=7)
    assert torch.equal(a[0].x, b[0].x)  # seeded jitter: identical reruns


def test_resolve_class_names():
    from wsloc.commands.visualize_class import resolve_class
    from wsloc import imagenet

    names = imagenet.names()
    assert resolve_class("1", names, 1000) == 1
    assert resolve_class("goldfish", names, 1000) == 1
    assert resolve_class("n01443537", names, 1000) == 1
    assert resolve_class("Carassius auratus", names, 1000) == 1  # a synonym from the full name
    with pytest.raises(MethodError, match="out of range"):
        resolve_class("1000", names, 1000)
    with pytest.raises(MethodError, match="not a class"):
        resolve_class("no such thing", names, 1000)
    dup = [n for n in set(names) if names.count(n) > 1][0]
    with pytest.raises(MethodError, match="ambiguous"):
        resolve_class(dup, names, 1000)


@pytest.mark.slow
def test_cli_visualize_class(tmp_path, capsys, one_thread):
    import cv2

    from wsloc.cli import main

    out = tmp_path / "v.png"
    assert main(["visualize-class", "goldfish", "130", "--out", str(out), "--steps", "2", "--weights", "none",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "goldfish" in text and "flamingo" in text and str(out) in text
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > 2 * 224  # a grid of the two classes
    assert main(["visualize-class", "not-a-class", "--out", str(out), "--steps", "1", "--weights", "none",
                 "--device", "cpu"]) == 1
    assert "not a class" in capsys.readouterr().err
