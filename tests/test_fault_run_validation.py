"""Issue 15, the run pipeline: memory estimate and scale bounds, dataset identity on resume and merge,
durable completion, exit codes, one-line errors for bad options and folders, umask, default folders,
repeated lines, another split on resume. Tiny model and tiny images; in-process where it can be."""

import errno
import json
import os
import shutil
import stat

import pytest

from test_run_helpers import TINY, make_coco, tiny_classifier
from wsloc.errors import WslocError
from wsloc.io import open_dataset
from wsloc.localizer import Localizer, LocalizerConfig, SaliencyConfig
from wsloc.run import RunOptions, merge, outputs, run_dataset
from wsloc.run.runner import describe_dataset

COMMON = ["--model", TINY, "--device", "cpu", "--batch-size", "4", "--top-k", "3", "--quiet",
          "--workers", "0", "--segment-workers", "0"]


@pytest.fixture(scope="module")
def loc():
    return Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)


@pytest.fixture()
def coco(tmp_path):
    return make_coco(tmp_path / "data", 8, bad=())


def _run(loc, path, out, **kw):
    ds = open_dataset(str(path))
    kw.setdefault("workers", 0)
    kw.setdefault("segment_workers", 0)
    return run_dataset(loc, ds, RunOptions(out_dir=str(out), progress=False, **kw), describe_dataset(ds, str(path)))


def _cli(capsys, *argv):
    from wsloc.cli import main

    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --------------------------------------------------------------------------- memory (High)

def test_activation_bytes_of_the_tiny_net_by_hand():
    from wsloc.run.memory import activation_bytes

    # leaf modules on a 32x32 input: conv1 8x32x32, conv2 16x16x16, pool 16, fc 10 (float32)
    assert activation_bytes(tiny_classifier()) == 4 * (8 * 32 * 32 + 16 * 16 * 16 + 16 + 10)


def test_memory_estimate_grows_with_the_square_of_the_largest_scale_and_refuses_with_advice():
    from wsloc.run import memory

    cfg = LocalizerConfig(device="cpu", saliency=SaliencyConfig("gradient", scales=[1, 4]), top_k=5, batch_size=8)
    est = memory.estimate(cfg, activations=75 * 2**20, input_size=(224, 224), image_pixels=0, segment_workers=1,
                          batches_in_flight=3)
    assert est.network == int(8 * 75 * 2**20 * 0.8 * 16)
    assert est.maps == 8 * 5 * 224 * 224 * 4 * 3 * 16
    memory.check(est, available=est.total)  # fits exactly: no error
    with pytest.raises(WslocError, match=r"lower --scales \(largest 4; at most .* fits at --batch-size 8") as info:
        memory.check(est, available=est.total // 4)
    assert "\n" not in str(info.value)
    small = memory.estimate(cfg.with_(**{"saliency.method": "grad_cam"}),
                            75 * 2**20, (224, 224), 0, 1, 3)
    assert small.network < est.network / 7  # Grad-CAM's graph starts at the last convolution


def test_a_configuration_beyond_the_machine_is_refused_before_the_first_batch(loc, coco, tmp_path, monkeypatch):
    from wsloc.run import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 10 * 2**20)  # a machine with 10 MB free
    big = Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=64, **{"saliency.scales": [1, 16]})
    with pytest.raises(WslocError, match="lower --scales"):
        _run(big, coco, tmp_path / "big")
    assert not (tmp_path / "big" / "images.jsonl").exists() or not (tmp_path / "big" / "images.jsonl").read_text()
    _run(loc, coco, tmp_path / "small")  # the default configuration fits in 10 MB of the tiny net


@pytest.mark.parametrize("scales", ["100", "inf", "nan", "1,-inf", ",".join(["1"] * 17)])
def test_scales_out_of_bounds_are_one_line(capsys, scales):
    with pytest.raises(SystemExit) as info:
        _cli(capsys, "localize", "--scales", scales)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--scales" in err[-1] and "Traceback" not in "\n".join(err)


# --------------------------------------------------------------------------- dataset identity (Medium)

def test_resume_refuses_a_dataset_edited_in_place(loc, coco, tmp_path):
    out = tmp_path / "run"
    _run(loc, coco, out, limit=4)
    data = json.loads(coco.read_text())
    data["images"][0]["file_name"], data["images"][5]["file_name"] = (data["images"][5]["file_name"],
                                                                      data["images"][0]["file_name"])
    coco.write_text(json.dumps(data))  # same path, same image count, other content
    with pytest.raises(WslocError, match="the dataset changed since the run started"):
        _run(loc, coco, out, limit=4, resume=True)


def test_merge_refuses_shards_of_two_versions_of_a_dataset(loc, coco, tmp_path):
    _run(loc, coco, tmp_path, shard=(0, 2))
    data = json.loads(coco.read_text())
    data["annotations"][0]["bbox"] = [1, 1, 5, 5]
    coco.write_text(json.dumps(data))
    _run(loc, coco, tmp_path, shard=(1, 2))
    with pytest.raises(WslocError, match="annotations_sha256"):
        merge(str(tmp_path))


def test_wsloc_merge_does_not_score_against_a_dataset_edited_since(loc, coco, tmp_path, capsys):
    for i in range(2):
        _run(loc, coco, tmp_path / "run", shard=(i, 2))
    status, out, err = _cli(capsys, "merge", str(tmp_path / "run"))
    assert status == 0 and "8 images, 0 errors" in out
    data = json.loads(coco.read_text())
    data["annotations"][0]["category_id"] = 9
    coco.write_text(json.dumps(data))
    status, _, err = _cli(capsys, "merge", str(tmp_path / "run"))
    assert status == 1 and "the dataset changed since the shards were run (annotations_sha256 differ)" in err


# --------------------------------------------------------------------------- durable completion (Medium)

def test_a_failed_last_write_leaves_the_run_incomplete_and_the_next_resume_completes_it(loc, coco, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "run"
    real = outputs.JsonlWriter.write
    calls = []

    def write(self, records):
        records = list(records)
        calls.append(len(records))
        if len(calls) == 2:  # the last write of the run (2 batches of 4)
            raise OSError(errno.ENOSPC, "No space left on device", self.path)
        return real(self, records)

    monkeypatch.setattr(outputs.JsonlWriter, "write", write)
    with pytest.raises(OSError):
        _run(loc, coco, out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and not (out / "results.json").exists()
    monkeypatch.setattr(outputs.JsonlWriter, "write", real)
    assert _run(loc, coco, out, resume=True)["complete"]


def test_merge_refuses_a_shard_with_lines_missing_or_repeated_despite_its_summary(loc, coco, tmp_path):
    for i in range(2):
        _run(loc, coco, tmp_path, shard=(i, 2))
    images = tmp_path / "shards" / "00001-of-00002" / "images.jsonl"
    lines = images.read_bytes().splitlines(keepends=True)
    images.write_bytes(b"".join(lines[:-1]))  # the last line lost; summary.json still says complete
    with pytest.raises(WslocError, match="incomplete shard: 3 of 4 images"):
        merge(str(tmp_path))
    images.write_bytes(b"".join(lines + lines[-1:]))  # one line twice
    with pytest.raises(WslocError, match="appears twice"):
        merge(str(tmp_path))


def test_resume_refuses_repeated_lines(loc, coco, tmp_path):
    out = tmp_path / "run"
    _run(loc, coco, out)
    images = out / "images.jsonl"
    lines = images.read_bytes().splitlines(keepends=True)
    images.write_bytes(b"".join(lines[:3] + lines[2:3]))
    with pytest.raises(WslocError, match="lines 3 and 4 are both for image index 2"):
        _run(loc, coco, out, resume=True)


# --------------------------------------------------------------------------- exit codes (Medium)

def test_a_run_where_every_image_fails_exits_non_zero_with_one_line(tmp_path, capsys):
    coco = make_coco(tmp_path / "data", 0, bad=("corrupt", "empty", "missing"))
    status, out, err = _cli(capsys, "localize", str(coco), "--out", str(tmp_path / "o"), *COMMON)
    assert status == 1 and "wsloc localize: error: no image was localized: all 3 failed" in err
    assert "3 images, 3 errors" in out


def test_a_complete_run_with_some_errors_exits_zero(tmp_path, capsys):
    coco = make_coco(tmp_path / "data", 2, bad=("corrupt",))
    status, out, err = _cli(capsys, "localize", str(coco), "--out", str(tmp_path / "o"), *COMMON)
    assert status == 0 and "3 images, 1 errors" in out and "error:" not in err


# --------------------------------------------------------------------------- one-line errors (Low)

@pytest.mark.parametrize("args,match", [
    (["--workers", "-1"], "--workers -1: must be 0 or a positive integer"),
    (["--segment-workers", "-2"], "--segment-workers -2: must be 0 or a positive integer"),
    (["--threads", "0"], "--threads 0: must be a positive integer"),
    (["--max-pixels", "-1"], "--max-pixels -1: must be a positive integer"),
    (["--limit", "-1"], "--limit -1: must be a positive integer"),
    (["--overlays", "-3"], "--overlays -3: must be 0 or a positive integer"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["--top-k", "2000"], "--top-k 2000: the classifier has only 10 classes"),
])
def test_invalid_values_are_refused_with_one_line(tmp_path, capsys, coco, args, match):
    extra = [a for a in COMMON if a not in ("--workers", "--segment-workers", "0")]
    status, _, err = _cli(capsys, "localize", str(coco), "--out", str(tmp_path / "o"), *extra, *args)
    assert status == 1 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o" / "images.jsonl").exists()


def test_out_on_a_file_and_a_full_disk_are_one_line(tmp_path, capsys, coco, monkeypatch):
    (tmp_path / "f").write_text("x")
    status, _, err = _cli(capsys, "localize", str(coco), "--out", str(tmp_path / "f"), *COMMON)
    assert status == 1 and "cannot write there (exists and is not a folder)" in err
    assert len(err.strip().splitlines()) == 1

    def full(self, records):
        raise OSError(errno.ENOSPC, "No space left on device", self.path)

    monkeypatch.setattr(outputs.JsonlWriter, "write", full)
    status, _, err = _cli(capsys, "localize", str(coco), "--out", str(tmp_path / "full"), *COMMON)
    assert status == 1 and err.strip() == (f"wsloc localize: error: {tmp_path / 'full' / 'images.jsonl'}: "
                                           "No space left on device")


def test_read_only_out_folder_is_one_line(tmp_path, capsys, coco):
    from wsloc.run.lock import folder_error

    e = folder_error(str(tmp_path), OSError(errno.EROFS, "Read-only file system"))
    assert str(e) == f"--out {tmp_path}: cannot write there (read-only file system)"
    if os.geteuid() != 0:  # root writes through permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        status, _, err = _cli(capsys, "localize", str(coco), "--out", str(ro / "o"), *COMMON)
        assert status == 1 and "cannot write there (permission denied)" in err


# --------------------------------------------------------------------------- files, folders, splits (Low)

def test_result_files_honour_the_umask(loc, coco, tmp_path):
    old = os.umask(0o022)
    try:
        _run(loc, coco, tmp_path / "run")
    finally:
        os.umask(old)
    for name in ("images.jsonl", "results.json", "errors.json", "config.json", "summary.json"):
        assert stat.S_IMODE(os.stat(tmp_path / "run" / name).st_mode) == 0o644, name


def test_default_folders_of_runs_started_in_the_same_second_differ(tmp_path):
    from wsloc.commands.localize import claim_folder

    base = str(tmp_path / "runs" / "demo-20260101-000000")
    assert [claim_folder(base) for _ in range(3)] == [base, base + "-2", base + "-3"]


def test_resume_with_another_split_is_refused_before_any_work(loc, coco, tmp_path, capsys):
    for i in range(2):
        _run(loc, coco, tmp_path, shard=(i, 2))
    status, _, err = _cli(capsys, "localize", str(coco), "--out", str(tmp_path), *COMMON, "--shard", "0/3",
                          "--resume")
    assert status == 1 and "holds the shards of a 2-way split" in err
    assert not (tmp_path / "shards" / "00000-of-00003").exists()
    single = tmp_path / "single"
    _run(loc, coco, single)
    status, _, err = _cli(capsys, "localize", str(coco), "--out", str(single), *COMMON, "--shard", "1/2",
                          "--resume")
    assert status == 1 and "holds a single-process run" in err
