"""Weight files cannot run code, published hashes are checked, and --weights is honoured for Lite0."""

import hashlib
import pathlib
import sys
import urllib.error

import pytest
import torch

from wsloc.errors import ModelError
from wsloc.models import load_classifier
from wsloc.models.efficientnet_lite import LITE0_BLOCKS, LITE_SHA256, EfficientNetLite, lite_weights_path
from wsloc.models.weights import hash_in_name, hub_cache_path, hub_state_dict, load_state_dict


class _Touch:
    """Unpickling this object creates ``marker`` (what a malicious .pth could do instead)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _crafted(path, marker):
    torch.save({"state_dict": _Touch(marker)}, path)
    return path


def test_crafted_pth_in_the_torch_hub_cache_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "pwned"
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    cache = pathlib.Path(hub_cache_path(url))
    assert str(cache).startswith(str(tmp_path))  # the test really uses its own cache
    cache.parent.mkdir(parents=True)
    _crafted(cache, marker)
    with pytest.raises(ModelError, match=r"resnet18-f37072fd\.pth: refused: the .*SHA-256"):
        load_classifier("resnet18", weights="DEFAULT")
    assert not marker.exists()


def test_hub_file_whose_name_has_no_hash_is_still_loaded_without_running_code(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "pwned"
    url = "https://example.invalid/models/evil.pth"
    path = pathlib.Path(hub_cache_path(url))
    path.parent.mkdir(parents=True)
    _crafted(path, marker)
    with pytest.raises(ModelError, match=r"evil\.pth: refused: not a plain weights file .*weights_only=True"):
        hub_state_dict(url)
    assert not marker.exists()


def test_hub_file_checked_against_the_hash_prefix_in_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    staging = tmp_path / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    good = pathlib.Path(hub_cache_path(f"https://example.invalid/tiny-{digest[:10]}.pth"))
    good.parent.mkdir(parents=True)
    good.write_bytes(staging.read_bytes())
    loaded = hub_state_dict(f"https://example.invalid/tiny-{digest[:10]}.pth")
    torch.testing.assert_close(loaded["w"], state["w"])
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
    bad = pathlib.Path(hub_cache_path(f"https://example.invalid/tiny-{wrong}.pth"))
    bad.write_bytes(staging.read_bytes())
    with pytest.raises(ModelError, match=f"SHA-256 is {digest[:16]}"):
        hub_state_dict(f"https://example.invalid/tiny-{wrong}.pth")
    assert hash_in_name("resnet18-f37072fd.pth") == "f37072fd" and hash_in_name("model.pth") is None


def test_torchvision_build_leaves_no_patch_behind_and_offline_error_says_where(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ModelError, match=r"could not be downloaded.*Put the file at .*resnet18-f37072fd\.pth"):
        load_classifier("resnet18", weights="DEFAULT")
    assert "get_state_dict" not in torchvision.models.ResNet18_Weights.__dict__


def test_crafted_weights_file_passed_by_path_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = _crafted(tmp_path / "evil.pth", marker)
    for model in ("resnet18", "efficientnet_lite0"):
        with pytest.raises(ModelError, match="refused: not a plain weights file"):
            load_classifier(model, weights=str(path))
    assert not marker.exists()


def test_lite0_package_file_hash_is_pinned_and_checked(tmp_path, monkeypatch):
    real = lite_weights_path("efficientnet_lite0")
    assert hashlib.sha256(pathlib.Path(real).read_bytes()).hexdigest() == LITE_SHA256["efficientnet_lite0"]
    changed = tmp_path / "efficientnet-lite0-57934424.pth"
    sd = load_state_dict(real)
    sd["_fc.bias"] = sd["_fc.bias"] + 1.0  # a tampered copy: same layout, other numbers
    torch.save(sd, changed)
    module = sys.modules["wsloc.models.efficientnet_lite"]  # the package exports a function of that name
    monkeypatch.setattr(module, "lite_weights_path", lambda name: str(changed))
    with pytest.raises(ModelError, match=r"refused: the efficientnet_lite0 file's SHA-256"):
        load_classifier("efficientnet_lite0")


def test_weights_file_for_lite0_is_loaded(tmp_path):
    torch.manual_seed(0)
    ref = EfficientNetLite(LITE0_BLOCKS).eval()
    path = tmp_path / "mine.pth"
    torch.save(ref.state_dict(), path)
    clf = load_classifier("efficientnet_lite0", weights=str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), ref(x))
    packaged = load_state_dict(lite_weights_path("efficientnet_lite0"))
    assert not torch.allclose(packaged["_fc.weight"], clf.model.state_dict()["_fc.weight"])


def test_weights_for_lite0_of_another_architecture_or_name_are_refused(tmp_path):
    other = load_classifier("resnet18", weights=None).model
    path = tmp_path / "r18.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ModelError, match="not an EfficientNet-Lite state dict"):
        load_classifier("efficientnet_lite0", weights=str(path))
    small = EfficientNetLite(LITE0_BLOCKS[:2] + LITE0_BLOCKS[3:])  # one block fewer in stage 2
    torch.save(small.state_dict(), tmp_path / "short.pth")
    with pytest.raises(ModelError, match="not an efficientnet_lite0 state dict"):
        load_classifier("efficientnet_lite0", weights=str(tmp_path / "short.pth"))
    with pytest.raises(ModelError, match="is not a file"):
        load_classifier("efficientnet_lite0", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ModelError, match="is not a file"):
        load_classifier("efficientnet_lite0", weights="IMAGENET1K_V1")


def test_localize_cli_weights_file_for_lite0_changes_the_model(tmp_path):
    """--weights FILE with the default Lite0 reaches the classifier (it was silently ignored)."""
    from wsloc.localizer import Localizer, LocalizerConfig

    torch.manual_seed(1)
    ref = EfficientNetLite(LITE0_BLOCKS).eval()
    path = tmp_path / "mine.pth"
    torch.save(ref.state_dict(), path)
    loc = Localizer(LocalizerConfig(device="cpu", weights=str(path)))
    got = loc.classifier.model.state_dict()["_fc.weight"]
    torch.testing.assert_close(got, ref.state_dict()["_fc.weight"])


def test_every_torch_load_in_the_package_and_scripts_is_weights_only():
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    calls = []
    for folder in ("wsloc", "scripts"):
        for f in (root / folder).rglob("*.py"):
            text = f.read_text(encoding="utf-8")
            for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
                calls.append((f.name, m.group(1)))
            assert "load_state_dict_from_url(" not in text, f  # torch hub's loader unpickles anything
    assert calls, "expected at least the one torch.load in wsloc/models/weights.py"
    for name, args in calls:
        assert "weights_only=True" in args, (name, args)
