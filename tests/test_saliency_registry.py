"""The saliency method protocol (wsloc.saliency.methods): one hook per method, one registry.

A tiny method defined in this file, ``input_mean`` (the map is ``scale`` times the input's
channel mean, for every target class), is registered and then used everywhere a built-in
method is: ``attribute``, its public function, as the base of SmoothGrad / VarGrad / Guided
Grad-CAM, ``Localizer`` / ``LocalizerConfig`` and ``wsloc localize --method``. Its maps are
known by hand, so each route is checked against them.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
import torch
from test_run_helpers import TINY, make_folder, scene, tiny_classifier
from wsloc.cli import main as cli_main
from wsloc.errors import MethodError
from wsloc.localizer import Localizer, LocalizerConfig
from wsloc.saliency import (METHODS, Method, SaliencyMaps, attribute, forward_logits, get_method, grad_cam,
                            guided_grad_cam, reduce_channels, register, resolve_targets, smoothgrad, unregister,
                            vargrad)

NAME = "input_mean"
CALLS: list[dict] = []  # the options of every call of the hook


def input_mean(net, x, targets, top_k, need_attr, max_batch, *, scale=1.0):
    """Map ``scale * mean_c x`` for every target: float32 ``[N, K, H, W]``; attributions ``scale * x``."""
    CALLS.append({"scale": scale, "n": x.shape[0]})
    logits = forward_logits(net, x, max_batch)
    t = resolve_targets(targets, logits, top_k)
    attr = (scale * x).unsqueeze(1).expand(-1, t.shape[1], -1, -1, -1)
    return SaliencyMaps(maps=reduce_channels(attr, "mean"), targets=t, scores=logits.gather(1, t).float(),
                        logits=logits, attributions=attr.float() if need_attr else None, method=NAME)


@pytest.fixture(scope="module")
def method():
    m = register(NAME)(input_mean)  # what ``@register("input_mean")`` above the def does
    yield m
    unregister(NAME)
    assert NAME not in METHODS


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


def _x(n=3, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _expected(x, k, scale=1.0):
    return (scale * x).mean(1, keepdim=True).expand(-1, k, -1, -1)


# -- the registry ---------------------------------------------------------------------------------

def test_every_public_method_is_its_registry_entry():
    import wsloc.saliency as S

    assert set(METHODS) >= {"gradient", "gradient_x_input", "guided_backprop", "deconvnet", "integrated_gradients",
                            "smoothgrad", "vargrad", "cam", "grad_cam", "guided_grad_cam", "occlusion"}
    head = ["model", "x", "targets", "top_k", "return_attributions", "max_batch"]
    for name, m in METHODS.items():
        if name == NAME:
            continue
        assert isinstance(m, Method) and m.name == name and getattr(S, name) is m
        params = inspect.signature(m).parameters
        hook = inspect.signature(m.compute).parameters
        assert list(params)[:6] == head and params["targets"].default is None and params["top_k"].default == 5
        assert list(params)[6:] == list(hook)[6:]  # the options are the hook's keyword-only parameters
        assert m.__doc__ and m.__doc__ == m.compute.__doc__
    assert {n for n, m in METHODS.items() if m.expands} == {"integrated_gradients", "occlusion"}


def test_register_refuses_a_taken_name_a_bad_name_and_a_bad_hook():
    with pytest.raises(MethodError, match="'gradient' exists already"):
        register("gradient")(input_mean)
    with pytest.raises(MethodError, match="identifier"):
        register("two words")
    with pytest.raises(MethodError, match="the hook must be"):
        register("bad_hook")(lambda model, x: None)
    assert "bad_hook" not in METHODS
    with pytest.raises(MethodError, match="unknown saliency method 'nope'; known: gradient"):
        get_method("nope")


# -- a new method through every route -----------------------------------------------------------

def test_new_method_through_attribute_and_its_public_function(method, model):
    x = _x()
    a = attribute(model, x, method=NAME, top_k=3, scale=2.0, return_attributions=True)
    assert a.method == NAME and a.maps.dtype == torch.float32 and a.maps.shape == (3, 3, 32, 32)
    assert torch.allclose(a.maps, _expected(x, 3, 2.0), atol=1e-6)
    assert torch.equal(a.targets, model.predict(x, 3)[1])
    assert torch.equal(a.attributions, (2.0 * x).unsqueeze(1).expand(-1, 3, -1, -1, -1))
    b = method(model, x, [1, 2, 3], scale=2.0)  # the public function, with given targets
    assert b.targets.tolist() == [[1], [2], [3]] and torch.allclose(b.maps, _expected(x, 1, 2.0), atol=1e-6)
    assert str(inspect.signature(method)).endswith("max_batch=None, scale=1.0) -> wsloc.saliency.core.SaliencyMaps")
    with pytest.raises(MethodError, match="input_mean: unknown option 'sigma'; options: scale"):
        attribute(model, x, method=NAME, sigma=0.1)
    with pytest.raises(MethodError, match="unknown option 'sigma'"):
        method(model, x, sigma=0.1)


def test_noise_tunnels_take_the_new_method_as_their_base(method, model):
    x = _x(2)
    noise = torch.randn(4, 1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    e = noise[:, 0].mean(1)  # [S, H, W]: each sample's channel mean
    s = smoothgrad(model, x, top_k=2, base=NAME, noise=noise, scale=3.0)
    assert torch.allclose(s.maps, _expected(x, 2, 3.0) + 3.0 * e.mean(0), atol=1e-5)
    assert torch.equal(s.targets, model.predict(x, 2)[1])
    by_object = smoothgrad(model, x, top_k=2, base=method, noise=noise, scale=3.0)
    assert torch.equal(by_object.maps, s.maps)
    v = vargrad(model, x, top_k=2, base=NAME, noise=noise)
    assert torch.allclose(v.maps, e.var(0, unbiased=False).expand(2, 2, -1, -1), atol=1e-5)
    with pytest.raises(MethodError, match="smoothgrad: base must be one of .*input_mean.*; got 'vargrad'"):
        smoothgrad(model, x, base="vargrad")
    with pytest.raises(MethodError, match=r"smoothgrad \(base input_mean\): unknown option 'steps'"):
        smoothgrad(model, x, base=NAME, steps=3)


def test_guided_grad_cam_is_the_product_of_its_two_methods(method, model):
    x = _x(2)
    g = guided_grad_cam(model, x, top_k=2, base=NAME, return_attributions=True)
    cam = grad_cam(model, x, g.targets).maps
    expected = x.unsqueeze(1) * cam.unsqueeze(2)
    assert torch.allclose(g.attributions, expected, atol=1e-6)
    assert torch.allclose(g.maps, expected.abs().amax(2), atol=1e-6)
    assert torch.equal(guided_grad_cam(model, x, top_k=2).maps,
                       guided_grad_cam(model, x, top_k=2, base="guided_backprop", cam=METHODS["grad_cam"]).maps)
    with pytest.raises(MethodError, match="base 'grad_cam' gives no attributions"):
        guided_grad_cam(model, x, base="grad_cam")


def test_localizer_and_its_config_run_the_new_method(method, model):
    changes = {"device": "cpu", "saliency.method": NAME, "saliency.options": {"scale": 2.0},
               "saliency.scales": [1.0], "saliency.flip": False, "top_k": 2}
    loc = Localizer(classifier=model, preset="simonyan2014", **changes)
    assert loc.config.saliency.method == NAME
    x = loc.preprocess.batch([scene(0), scene(1)])
    out = loc.network(x)
    assert out.maps.shape == (2, 2, 32, 32)
    assert torch.allclose(torch.from_numpy(out.maps), _expected(x, 2, 2.0), atol=1e-6)
    result = loc.localize(scene(2))
    assert [c.class_id for c in result.classes] == model.predict(loc.preprocess.batch([scene(2)]), 2)[1][0].tolist()
    cfg = LocalizerConfig.from_preset("simonyan2014", **changes)
    assert cfg.to_dict()["saliency"]["method"] == NAME


def test_wsloc_localize_method_picks_up_the_registered_name(method, tmp_path, capsys):
    folder = make_folder(tmp_path / "images", 2)
    out = tmp_path / "run"
    CALLS.clear()
    args = ["localize", str(folder), "--out", str(out), "--model", TINY, "--device", "cpu", "--workers", "0",
            "--segment-workers", "0", "--quiet", "--no-eval", "--preset", "simonyan2014", "--top-k", "2"]
    assert cli_main(args + ["--method", NAME, "--method-option", "scale=2.5"]) == 0
    assert CALLS and all(c["scale"] == 2.5 for c in CALLS) and sum(c["n"] for c in CALLS) == 2
    cfg = json.loads((out / "config.json").read_text())["localizer"]["saliency"]
    assert cfg["method"] == NAME and cfg["options"] == {"scale": 2.5}
    assert len(json.loads((out / "results.json").read_text())) == 4  # 2 images x top-2
    unregister(NAME)
    try:
        with pytest.raises(SystemExit):
            cli_main(args + ["--method", NAME, "--overwrite"])
        assert "invalid choice: 'input_mean'" in capsys.readouterr().err
    finally:
        METHODS[NAME] = method


# -- no import cycle in the saliency package, counting imports inside functions too ---------------

SALIENCY = Path(__file__).resolve().parents[1] / "wsloc" / "saliency"


def _imports(path: Path) -> set[str]:
    """Saliency modules a saliency module imports anywhere in its file (relative imports)."""
    names = {p.stem for p in SALIENCY.glob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names if a.name in names)
    return out & names - {path.stem}


def test_no_import_cycle_in_the_saliency_package():
    graph = {p.stem: _imports(p) for p in SALIENCY.glob("*.py") if p.stem != "__init__"}
    assert graph["smooth"] <= {"core", "methods"} and "cam" not in graph["multiscale"]
    assert graph["methods"] == {"core"}  # the registry knows no method

    def reach(start):
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen
    cyclic = sorted(m for m in graph if m in reach(m))
    assert not cyclic, f"saliency modules on an import cycle: {cyclic} ({graph})"


def test_the_package_docstring_example_adds_a_method(model):
    import textwrap

    import wsloc.saliency as S

    lines = S.__doc__.split("Adding a method takes one file")[1].split("::\n\n", 1)[1].split("\n")
    end = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("    "))
    code = textwrap.dedent("\n".join(lines[:end]))  # the indented example block
    assert '@register("constant")' in code
    try:
        exec(compile(code, "wsloc.saliency docstring", "exec"), {})
        x = _x(2)
        r = attribute(model, x, method="constant", top_k=3, value=2.0)
        assert torch.equal(r.maps, torch.full((2, 3, 32, 32), 2.0)) and torch.equal(r.targets, model.predict(x, 3)[1])
        assert torch.equal(METHODS["constant"](model, x, 4).targets, torch.full((2, 1), 4))
    finally:
        unregister("constant")
