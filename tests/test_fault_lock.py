"""The run folder's lock: a second run on a folder in use is refused at once, with the holder named
(issue 15, High: two --resume runs on one folder used to write 120 lines for 60 images)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from test_run_helpers import PYTHON, TINY, cli_env, make_coco
from wsloc.errors import WslocError
from wsloc.run.lock import LOCK_NAME, RunFolderBusy, RunLock

HOLD = ("import sys, time; from wsloc.run.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(600)")


def _holder(folder):
    proc = subprocess.Popen([PYTHON, "-c", HOLD, str(folder)], env=cli_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_is_exclusive_between_processes_names_its_holder_and_dies_with_it(tmp_path):
    holder = _holder(tmp_path)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunFolderBusy, match=rf"in use by another wsloc run \(pid {holder.pid} on "):
            RunLock(str(tmp_path)).acquire()
        assert time.monotonic() - t0 < 1.0  # refused at once, not after a wait
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == holder.pid and info["host"] and info["started"]
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel releases the lock
        holder.wait()
    with RunLock(str(tmp_path)):  # free again, without anyone removing a stale file
        with RunLock(str(tmp_path)):  # re-entrant within a process
            pass
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: no holder named


def test_an_out_folder_that_cannot_be_written_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WslocError, match="exists and is not a folder"):
        RunLock(str(tmp_path / "file")).acquire()
    with pytest.raises(WslocError, match="a part of the path is a file"):
        RunLock(str(tmp_path / "file" / "sub")).acquire()


COMMON = ["--model", TINY, "--device", "cpu", "--batch-size", "2", "--top-k", "3", "--quiet", "--no-eval",
          "--workers", "0", "--segment-workers", "0"]


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_a_second_run_on_a_live_folder_is_refused_within_a_second(tmp_path, capsys, flag):
    """Run A (a separate process) holds the folder; run B on it, with --resume or --overwrite, is
    refused before it opens the dataset or loads a model; A's results are untouched."""
    from wsloc.cli import main

    dataset = make_coco(tmp_path / "data", 10, bad=())
    out = tmp_path / "out"
    a = subprocess.Popen([PYTHON, "-m", "wsloc", "localize", str(dataset), "--out", str(out), *COMMON],
                         env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and a.poll() is None:  # A holds the lock
            if (out / LOCK_NAME).exists() and (out / LOCK_NAME).read_text().strip():
                break
            time.sleep(0.01)
        assert a.poll() is None, "run A ended before the test could overlap it"
        t0 = time.monotonic()
        status = main(["localize", str(dataset), "--out", str(out), *COMMON, flag])
        seconds = time.monotonic() - t0
        err = capsys.readouterr().err
        assert status == 1 and seconds < 1.0, (status, seconds)
        assert f"is in use by another wsloc run (pid {a.pid} on " in err and len(err.strip().splitlines()) == 1
    finally:
        stdout, stderr = a.communicate(timeout=180)
    assert a.returncode == 0, stderr
    lines = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in lines) == list(range(10))  # one line per image, none twice
    assert json.loads((out / "summary.json").read_text())["complete"]
