"""Low-severity bad inputs give one clear error (grouped by kind): a device that is not there, JSON
nested too deeply, empty or wrongly typed image arrays in the library."""

import json

import numpy as np
import pytest
import torch

from wsloc.errors import DatasetError, MethodError, ModelError, WslocError
from wsloc.models import Preprocess, resolve_device

from test_run_helpers import tiny_classifier

# ------------------------------------------------------------------ devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_clear_line(capsys):
    with pytest.raises(ModelError, match=r"--device cuda: CUDA is not available on this machine"):
        resolve_device("cuda")
    from wsloc.cli import main

    assert main(["classify", "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wsloc classify: error: --device cuda: CUDA is not available") and err.count("\n") == 1


def test_device_index_beyond_the_gpus_and_unknown_devices():
    with pytest.raises(ModelError, match="--device 'gpu0': not a device"):
        resolve_device("gpu0")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ModelError, match="--device cuda:99:"):
        resolve_device("cuda:99")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if n else "cpu")


# ------------------------------------------------------------------ deeply nested JSON


def _nested(path, depth=100000):
    path.write_text("[" * depth + "]" * depth)
    return path


def test_deeply_nested_results_json_is_one_clear_line(tmp_path, capsys):
    from wsloc.cli import main
    from wsloc.evaluate import load_results
    from wsloc.paths import demo_annotations

    res = _nested(tmp_path / "deep.json")
    with pytest.raises(DatasetError, match=r"deep\.json: not a results JSON file \(nested too deeply"):
        load_results(str(res))
    assert main(["evaluate", str(res), demo_annotations(), "--no-coco"]) == 1
    err = capsys.readouterr().err
    assert "wsloc evaluate: error:" in err and "nested too deeply" in err and "Traceback" not in err


def test_deeply_nested_annotation_json_is_one_clear_line(tmp_path):
    from wsloc.io import CocoDataset

    with pytest.raises(DatasetError, match=r"deep\.json: not a COCO JSON file \(nested too deeply\)"):
        CocoDataset(_nested(tmp_path / "deep.json"))


# ------------------------------------------------------------------ empty / wrong image arrays

BAD_IMAGES = [
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((5, 0, 3), np.uint8), "empty"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((5, 5, 3), np.float32), "uint8 RGB"),
    (np.zeros((5, 5), np.uint8), "uint8 RGB"),
    (np.zeros((1, 5, 5, 3), np.uint8), "uint8 RGB"),
    ([[1, 2, 3]], "image array"),
]


@pytest.mark.parametrize("image,word", BAD_IMAGES)
def test_preprocess_refuses_bad_arrays_clearly(image, word):
    with pytest.raises(MethodError, match=word):
        Preprocess((32, 32))(image)


def test_preprocess_of_no_images():
    with pytest.raises(MethodError, match="no images"):
        Preprocess((32, 32)).batch([])


@pytest.mark.parametrize("image,word", BAD_IMAGES[:6])
def test_localizer_refuses_bad_arrays_clearly(image, word):
    from wsloc.localizer import Localizer, LocalizerConfig

    loc = Localizer(LocalizerConfig(device="cpu").with_(**{"saliency.scales": (1.0,)}), classifier=tiny_classifier())
    with pytest.raises(MethodError, match=word):
        loc.localize(image)
    with pytest.raises(WslocError):
        loc.localize([np.zeros((8, 8, 3), np.uint8), image])


def test_attribute_refuses_empty_images():
    from wsloc.saliency import attribute

    clf = tiny_classifier()
    with pytest.raises(MethodError, match=r"empty images \(0x0 pixels\)"):
        attribute(clf, torch.zeros(1, 3, 0, 0), method="grad_cam", top_k=2)
    with pytest.raises(MethodError, match="empty batch"):
        attribute(clf, torch.zeros(0, 3, 32, 32), method="grad_cam", top_k=2)
    maps = attribute(clf, clf.preprocess.batch([np.full((9, 7, 3), 100, np.uint8)]), method="grad_cam", top_k=2).maps
    assert maps.shape == (1, 2, 32, 32)  # a tiny but valid image still works
