"""What the command line tells its user: --version, help texts with every choice and default, a line while the
model loads, progress bars on the long commands, one clear line for an unknown segment option."""

from __future__ import annotations

import re

import argparse

import pytest

import wsloc
from wsloc.cli import build_parser, main
from wsloc.saliency.methods import METHODS
from wsloc.segment.config import option_names


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"wsloc {wsloc.__version__}"


def _silent(action: argparse.Action) -> bool:
    """Flags and options whose default means "not given" need not state it."""
    return (isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                                argparse._VersionAction, argparse.BooleanOptionalAction))
            or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings)


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_option_states_its_default_and_choices(command):
    parser = subparsers()[command]
    text = parser.format_help()
    missing = []
    for action in parser._actions:
        help_text = action.help or ""
        if not _silent(action) and "default" not in help_text:
            missing.append(f"{action.option_strings[0]} (default {action.default!r})")
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            for choice in action.choices:
                if str(choice) not in text:
                    missing.append(f"{action.option_strings[0]} choice {choice!r}")
    assert not missing, f"wsloc {command} --help does not show: {', '.join(missing)}"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_method_and_segment_option_help_list_every_choice():
    localize = _flat(subparsers()["localize"].format_help())
    for name in METHODS:
        assert name in localize
    for key in option_names():
        assert key in localize
    sanity = _flat(subparsers()["sanity"].format_help())
    for name in METHODS:
        assert name in sanity


def test_unknown_segment_key_is_one_line_listing_the_known_ones(tmp_path, capsys):
    rc = main(["localize", "--segment-option", "q_fgg=3", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and "Traceback" not in err and "TypeError" not in err
    assert err.startswith("wsloc localize: error: unknown configuration key 'segment.q_fgg' "
                          "(did you mean segment.q_fg?)")
    assert err.endswith("known: " + ", ".join(f"segment.{k}" for k in option_names()))
    assert not (tmp_path / "run").exists()  # refused before any folder


def test_loading_line_and_sanity_progress_bar(tmp_path, capsys):
    """A random ResNet-18 (no download), 2 demo images, one method, the fc block: a bar ending at 2/2 steps."""
    rc = main(["sanity", "--model", "resnet18", "--weights", "none", "--device", "cpu", "--limit", "2",
               "--method", "gradient", "--blocks", "fc", "--keep-maps", "1", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.err.startswith("wsloc sanity: loading resnet18 (weights none) on cpu ...\n")
    assert "sanity: 100%" in captured.err and "2/2" in captured.err
    assert "gradient: cascading step 1 (fc) done" in captured.err
    assert "loading resnet18" not in captured.out and "2/2" not in captured.out  # results on stdout, feedback on stderr
    rc = main(["sanity", "--model", "resnet18", "--weights", "none", "--device", "cpu", "--limit", "2",
               "--method", "gradient", "--blocks", "fc", "--keep-maps", "1", "--out", str(tmp_path), "--quiet"])
    assert rc == 0 and capsys.readouterr().err == ""


def test_visualize_class_progress_bar(tmp_path, capsys, monkeypatch):
    # tqdm redraws at most every 0.1 s by default: three fast steps may end before "3/3" is drawn on a busy
    # machine; TQDM_MININTERVAL (tqdm's own environment override) makes every step draw.
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    out = tmp_path / "c.png"
    rc = main(["visualize-class", "3", "--model", "resnet18", "--weights", "none", "--device", "cpu",
               "--steps", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and out.is_file()
    assert err.startswith("wsloc visualize-class: loading resnet18")
    # the bar counts steps of the total with a rate (which step is drawn last depends on the machine's load:
    # the bar is cleared when it ends, and tqdm may skip a redraw)
    assert "visualize-class:" in err and re.search(r"[1-3]/3 \[", err) and ("step/s" in err or "s/step" in err)
    rc = main(["visualize-class", "3", "--model", "resnet18", "--weights", "none", "--device", "cpu",
               "--steps", "3", "--out", str(out), "--quiet"])
    assert rc == 0 and capsys.readouterr().err == ""
