"""The package is installable as a wheel: the demo set is package data found with importlib.resources.

The real check (build the wheel, install it into a fresh virtual environment, run ``wsloc localize`` from an
empty folder) is ``.ci/run``; here: what that relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

import wsloc
from wsloc import paths

ROOT = Path(__file__).resolve().parents[1]
DEMO_FILES = ["annotations.json", "README.md"] + [f"images/{n}.jpg" for n in
                                                   ("astronaut", "camera", "chelsea", "coffee", "motorcycle",
                                                    "rocket")]


def test_demo_set_is_inside_the_package_and_found_by_importlib_resources():
    pkg = resources.files("wsloc")
    for name in DEMO_FILES:
        assert pkg.joinpath("data", "demo", name).is_file(), name
    # wsloc.paths points there, not at a source checkout's data/ folder.
    assert Path(paths.demo_dir()) == Path(wsloc.__file__).parent / "data" / "demo"
    ann = json.loads(Path(paths.demo_annotations()).read_text())
    assert len(ann["images"]) == 6
    for img in ann["images"]:
        assert os.path.isfile(os.path.join(paths.demo_images_dir(), img["file_name"]))
    assert os.path.isfile(paths.demo_image("coffee"))


def test_no_argument_defaults_use_the_packaged_demo_set(monkeypatch, tmp_path):
    """From an empty folder: the defaults of localize / classify / sanity resolve to existing package files."""
    monkeypatch.chdir(tmp_path)
    from wsloc.commands import classify
    from wsloc.commands.localize import _open
    from wsloc.cli import build_parser

    args = build_parser().parse_args(["localize"])
    ds, _ = _open(args)
    samples = list(ds)
    assert len(samples) == 6 and all(os.path.isfile(s.path) for s in samples)
    assert all(Path(s.path).parent == Path(paths.demo_images_dir()) for s in samples)
    assert len(classify._expand([paths.demo_images_dir()])) == 6


def test_built_wheel_contains_the_demo_set(tmp_path):
    """``pip wheel`` of a copy of the source (so the checkout gets no build/ folder) lists every demo file."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "wsloc", src / "wsloc", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = dist.glob("wsloc-*.whl")
    assert wheel.name.startswith(f"wsloc-{wsloc.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in DEMO_FILES:
        assert f"wsloc/data/demo/{name}" in names, name
    assert "wsloc/py.typed" in names and "wsloc/paths.py" in names
    assert not any(n.startswith(("tests/", "scripts/", "data/")) for n in names)
