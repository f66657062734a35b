"""``wsloc localize`` as users run it: SIGKILL then --resume, torchrun on CPU, --shard + ``wsloc merge``.

Every run uses the tiny test classifier (``--model test_run_helpers:tiny_classifier``) on a
COCO set of 21 small scenes plus a corrupt, an empty and a missing image (24 images, 6 batches).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from test_run_helpers import PYTHON, TINY, cli_env, make_coco

pytestmark = pytest.mark.slow

FINAL = ("results.json", "errors.json", "images.jsonl")
N_GOOD, N = 21, 24
COMMON = ["--model", TINY, "--device", "cpu", "--batch-size", "4", "--top-k", "3", "--quiet"]


def _localize(dataset, out, *extra, check=True, **kw):
    cmd = [PYTHON, "-m", "wsloc", "localize", str(dataset), "--out", str(out), *COMMON, *extra]
    return subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300, check=check, **kw)


def _bytes(out):
    return {n: (out / n).read_bytes() for n in FINAL}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return make_coco(root, N_GOOD, bad=("corrupt", "empty", "missing"))


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference")
    proc = _localize(dataset, out)
    return out, proc


def test_run_completes_with_three_recorded_errors(reference):
    out, proc = reference
    errors = json.loads((out / "errors.json").read_text())
    assert sorted(e["file_name"] for e in errors) == ["corrupt.jpg", "empty.jpg", "missing.jpg"]
    assert len(json.loads((out / "results.json").read_text())) == N_GOOD * 3
    assert f"{N} images, 3 errors" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["errors"] == 3


def _children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(p))
    return out


def _alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_then_resume_gives_byte_identical_results(dataset, reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [PYTHON, "-m", "wsloc", "localize", str(dataset), "--out", str(out), *COMMON]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    images = out / "images.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if images.exists() and images.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.02)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = images.read_bytes().count(b"\n")
    assert 4 <= written < N, f"the run was not killed partway ({written} lines)"
    assert not (out / "results.json").exists()
    deadline = time.time() + 20  # worker processes notice their parent's death and leave
    while time.time() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not any(_alive(c) for c in children), "worker processes outlived the killed run"

    again = _localize(dataset, out, check=False)
    assert again.returncode != 0 and "--resume" in again.stderr  # no silent restart over a run
    _localize(dataset, out, "--resume")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done_before"] == written and summary["processed"] == N - written
    assert _bytes(out) == _bytes(reference[0])


def test_torchrun_two_cpu_processes_merge_to_the_single_process_results(dataset, reference, tmp_path):
    out = tmp_path / "dist"
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "wsloc", "localize", str(dataset), "--out", str(out), *COMMON]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out / "shards")) == ["00000-of-00002", "00001-of-00002"]
    for shard in ("00000-of-00002", "00001-of-00002"):
        cfg = json.loads((out / "shards" / shard / "config.json").read_text())
        assert 0 < cfg["shard_images"] < N
    assert _bytes(out) == _bytes(reference[0])
    assert proc.stdout.count(f"{N} images, 3 errors") == 1  # rank 0 alone reports


def test_shard_job_array_then_wsloc_merge(dataset, reference, tmp_path):
    proc = _localize(dataset, tmp_path, "--shard", "1/2", "--segment-workers", "0", "--workers", "0")
    assert "wsloc merge" in proc.stdout and not (tmp_path / "results.json").exists()
    # the other job of the array, in-process (the same options as the command line's)
    from wsloc.io import open_dataset
    from wsloc.localizer import Localizer
    from wsloc.run import RunOptions, run_dataset
    from wsloc.run.runner import describe_dataset

    loc = Localizer(model=TINY, device="cpu", batch_size=4, top_k=3)
    ds = open_dataset(str(dataset))
    run_dataset(loc, ds, RunOptions(str(tmp_path), shard=(0, 2), workers=0, segment_workers=0, progress=False),
                describe_dataset(ds, str(dataset)))
    proc = subprocess.run([PYTHON, "-m", "wsloc", "merge", str(tmp_path)], env=cli_env(), capture_output=True,
                          text=True, timeout=120, check=True)
    assert f"{N} images, 3 errors" in proc.stdout
    assert _bytes(tmp_path) == _bytes(reference[0])


def test_localize_scales_and_flip_flags_reach_the_config():
    import argparse

    from wsloc.cli import build_parser
    from wsloc.commands.localize import _scales

    assert _scales("1,2") == [1.0, 2.0] and _scales("1.5") == [1.5]
    for bad in ("", "1,x", "0,1", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="--scales"):
            _scales(bad)
    args = build_parser().parse_args(["localize", "--scales", "1,1.5", "--no-flip"])
    assert args.scales == [1.0, 1.5] and args.flip is False
    assert build_parser().parse_args(["localize"]).flip is None  # the preset decides
