"""Engines and devices of the network stage (issue 17): mixed precision, the engine benchmark's maps,
and the benchmark's clear refusal of a missing GPU."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from wsloc.errors import MethodError
from wsloc.localizer import Localizer, LocalizerConfig

from test_cam_shortcut import _gap_classifier  # SmallCNN: conv-ReLU-conv-ReLU, GAP, linear (Classifier.fc set)
from test_run_helpers import REPO, scene, tiny_classifier


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_amp_option_is_checked():
    with pytest.raises(MethodError, match="amp"):
        LocalizerConfig(amp="fp8")
    assert LocalizerConfig(amp="bf16").amp == "bf16" and LocalizerConfig().amp is None


def test_bf16_autocast_gives_float32_maps_close_to_float32():
    clf = tiny_classifier()
    images = [scene(i) for i in range(4)]
    full = Localizer(classifier=clf, device="cpu", top_k=3, batch_size=4)
    half = Localizer(classifier=clf, device="cpu", top_k=3, batch_size=4, amp="bf16")
    x = full.preprocess.batch(images)
    a, b = full.network(x), half.network(x)
    assert b.maps.dtype == np.float32 and b.maps.shape == a.maps.shape
    assert not np.array_equal(a.maps, b.maps)  # autocast did run in bf16
    same = a.classes == b.classes
    assert same.mean() >= 0.5
    # bf16 keeps 8 bits of mantissa: maps (in [0, 1] after fusion) agree to a few per cent where the classes agree
    assert np.abs(a.maps - b.maps)[same].max() < 0.1


def test_engine_benchmark_builds_the_same_maps_as_the_localizer():
    bench = _script("bench_engine")
    loc = Localizer(device="cpu", weights=None, batch_size=2)  # random Lite0: same code path, any weights
    rng = np.random.default_rng(0)
    x = loc.preprocess.batch([rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(2)])
    fc = loc.classifier.model.get_submodule(loc.classifier.fc)
    eager = bench.FeaturesLogits(loc.classifier.model).eval()
    maps = bench.fused_maps(eager, x, loc.config.saliency.scales, loc.top_k, fc)
    ref = torch.from_numpy(loc.network(x).maps)
    # the script's features come from model.features + mean (not the hooked AdaptiveAvgPool2d): float rounding only
    assert float((maps - ref).abs().max()) < 1e-4


def test_benchmark_refuses_cuda_without_a_gpu_in_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    bench = _script("benchmark")
    assert bench.main(["--device", "cuda", "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmark.py: error: --device cuda: no CUDA device")


def test_onnx_engine_gives_the_eager_maps_up_to_rounding():
    pytest.importorskip("onnxruntime")
    clf = _gap_classifier()
    assert clf.fc is not None
    images = [scene(i) for i in range(5)]
    eager = Localizer(classifier=clf, device="cpu", top_k=3, batch_size=4)
    onnx = Localizer(classifier=clf, device="cpu", top_k=3, batch_size=4, engine="onnx")
    assert onnx._net.model is not clf.model and eager.folded == 0  # (SmallCNN has no BN to fold)
    x = eager.preprocess.batch(images)
    a, b = eager.network(x), onnx.network(x)
    assert np.array_equal(a.classes, b.classes)
    assert np.abs(a.maps - b.maps).max() <= 1e-4  # fused maps lie in [0, 1]: 1e-4 of the scale
    assert np.allclose(a.logits, b.logits, rtol=1e-4, atol=1e-5)
    out = onnx.localize(images[:2])  # the whole localizer runs on it, batch of 2 then the same graph for 3
    assert len(out) == 2 and out[0].classes[0].mask.shape == images[0].shape[:2]


def test_onnx_engine_refuses_what_it_cannot_do():
    with pytest.raises(MethodError, match="engine"):
        LocalizerConfig(engine="tensorrt")
    pytest.importorskip("onnxruntime")
    with pytest.raises(MethodError, match="forward-only"):
        Localizer(classifier=_gap_classifier(), device="cpu", engine="onnx", **{"saliency.method": "gradient"})
    with pytest.raises(MethodError, match="forward-only"):
        Localizer(classifier=_gap_classifier(), device="cpu", engine="onnx",
                  **{"saliency.options": {"shortcut": False}})
    with pytest.raises(MethodError, match="global average pooling"):  # TinyNet: ReLU after its last module
        Localizer(classifier=tiny_classifier(), device="cpu", engine="onnx")


def test_onnx_replica_shares_the_graphs_and_has_its_own_feature_hook():
    pytest.importorskip("onnxruntime")
    from wsloc.run.network import NetworkStage

    loc = Localizer(classifier=_gap_classifier(), device="cpu", top_k=3, batch_size=4, engine="onnx")
    twin = loc.replica()
    assert twin._net.model is not loc._net.model
    assert twin._net.model.onnx_features is not loc._net.model.onnx_features
    x = loc.preprocess.batch([scene(i) for i in range(4)])
    a = loc.network(x)
    assert twin._net.model._graphs is loc._net.model._graphs  # exported once, shared
    stage = NetworkStage(loc, 2)
    try:
        parts = stage.forward(x)
    finally:
        stage.close()
    assert len(parts) == 2
    np.testing.assert_array_equal(np.concatenate([p.maps for p in parts]), a.maps)
    np.testing.assert_array_equal(np.concatenate([p.classes for p in parts]), a.classes)
