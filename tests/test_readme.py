"""The README is true: its Python blocks run as written, its ``wsloc`` command lines parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of README.md in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def command_lines() -> list[str]:
    """Every ``wsloc ...`` command of the README's bash blocks (``cmd && wsloc ...`` and ``torchrun ... -m wsloc``
    included), comments dropped."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            parts: list[list[str]] = [[]]
            for word in shlex.split(line, comments=True):  # split at && and ; (outside quotes and comments)
                if word in ("&&", ";"):
                    parts.append([])
                elif word.endswith(";"):
                    parts[-1].append(word[:-1])
                    parts.append([])
                else:
                    parts[-1].append(word)
            for words in parts:
                if "-m" in words and words[0] == "torchrun" and words[words.index("-m") + 1] == "wsloc":
                    words = ["wsloc"] + words[words.index("-m") + 2:]
                if words and words[0] == "wsloc":
                    out.append(shlex.join(words))
    return out


def test_readme_has_the_blocks_this_test_checks():
    assert len(blocks("python")) >= 1
    assert "wsloc localize" in command_lines()


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    """Executed in order in one namespace, from an empty folder (the README's snippet loads a demo photo
    with ``wsloc.paths.demo_image``, so it needs no file of the reader's)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, code in enumerate(blocks("python")):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    # What the snippet's comments promise.
    import torch

    image, result, x, maps = namespace["image"], namespace["result"], namespace["x"], namespace["maps"]
    assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3
    assert len(result.classes) == 5 and result.classes[0].mask.shape == image.shape[:2]
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 3, 224, 224)
    assert maps.dtype == torch.float32 and tuple(maps.shape) == (1, 5, 224, 224)


@pytest.mark.parametrize("line", command_lines())
def test_readme_command_lines_parse(line):
    """Every option the README shows exists (argparse exits on an unknown one)."""
    from wsloc.cli import build_parser

    words = shlex.split(line)[1:]
    try:
        args = build_parser().parse_args(words)
    except SystemExit as exc:  # argparse printed why; --help and --version exit 0
        if exc.code != 0:
            pytest.fail(f"README command does not parse: {line} (exit {exc.code})")
        return
    assert getattr(args, "run", None) is not None


def test_first_screen_demo_claims():
    """``wsloc localize`` with no argument localizes the packaged demo set into runs/demo-<date-time>/."""
    import argparse
    import os

    from wsloc.commands.localize import _default_out
    from wsloc.io import open_dataset
    from wsloc.paths import demo_annotations

    out = _default_out(argparse.Namespace(dataset=None, shard=None))
    assert re.fullmatch(r"demo-\d{8}-\d{6}", os.path.basename(out)) and os.path.dirname(out) == "runs"
    assert len(open_dataset(demo_annotations())) == 6
