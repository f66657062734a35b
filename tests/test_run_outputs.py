"""Run-folder machinery without a model: atomic files, JSONL repair, shards, resume checks, merge checks."""

import json
import os
import sys

import pytest

from wsloc.errors import WslocError
from wsloc.run import outputs, resume
from wsloc.run import shard as sharding
from wsloc.run.merge import merge


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a.json"
    outputs.write_json(str(path), {"v": 1})
    assert json.loads(path.read_text()) == {"v": 1}

    def failing():
        yield '{"v": '
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        outputs.atomic_write(str(path), failing())
    assert json.loads(path.read_text()) == {"v": 1}  # the old file survived intact
    assert os.listdir(tmp_path) == ["a.json"]  # no temporary file left behind


def test_json_list_streams_valid_json(tmp_path):
    p = tmp_path / "l.json"
    assert outputs.write_json_list(str(p), iter([])) == 0
    assert json.loads(p.read_text()) == []
    items = [{"a": i, "b": [i, 0.5]} for i in range(3)]
    assert outputs.write_json_list(str(p), iter(items)) == 3
    assert json.loads(p.read_text()) == items


def test_jsonl_torn_last_line_is_dropped_and_repaired(tmp_path):
    p = tmp_path / "images.jsonl"
    with outputs.JsonlWriter(str(p)) as w:
        w.write([{"index": 0}, {"index": 1}])
    with open(p, "ab") as f:
        f.write(b'{"index": 2, "stat')  # a crash in the middle of a line
    assert outputs.read_jsonl(str(p)) == [{"index": 0}, {"index": 1}]
    assert p.read_bytes().endswith(b"stat")  # reading alone changes nothing
    outputs.read_jsonl(str(p), repair=True)
    assert p.read_bytes() == b'{"index":0}\n{"index":1}\n'
    with outputs.JsonlWriter(str(p)) as w:
        w.write([{"index": 2}])
    assert [r["index"] for r in outputs.iter_jsonl(str(p))] == [0, 1, 2]


def test_jsonl_damage_before_the_last_line_is_an_error(tmp_path):
    p = tmp_path / "images.jsonl"
    p.write_bytes(b'{"index":0}\nnot json\n{"index":2}\n')
    with pytest.raises(ValueError, match="line 2"):
        outputs.read_jsonl(str(p))


def test_record_text_is_deterministic():
    rec = {"index": 3, "score": 0.1 + 0.2, "name": "café", "bbox": [1.0, 2.5]}
    assert outputs.dumps(rec) == outputs.dumps(json.loads(outputs.dumps(rec)))
    assert outputs.dumps(rec) == '{"index":3,"score":0.30000000000000004,"name":"café","bbox":[1.0,2.5]}'
    with pytest.raises(ValueError):
        outputs.dumps({"x": float("nan")})


def test_coco_results_and_errors_from_records(tmp_path):
    seg = {"size": [2, 2], "counts": "04"}
    records = [
        {"index": 0, "image_id": 10, "status": "ok", "results": [
            {"rank": 1, "category_id": 5, "name": "a", "score": 0.9, "logit": 3.0, "bbox": [0, 0, 1, 1],
             "boxes": [], "flag": None, "segmentation": seg},
            {"rank": 2, "category_id": 6, "name": "b", "score": 0.1, "logit": 1.0, "bbox": [0, 0, 2, 2],
             "boxes": [], "flag": None, "segmentation": seg}]},
        {"index": 1, "image_id": 11, "file_name": "x.jpg", "path": "/x.jpg", "status": "error",
         "stage": "decode", "reason": "file not found"},
    ]
    counts = outputs.finalize(str(tmp_path), lambda: iter(records))
    assert counts == {"images": 2, "ok": 1, "errors": 1, "results": 2}
    results = json.loads((tmp_path / "results.json").read_text())
    assert [list(r) for r in results] == [["image_id", "category_id", "bbox", "score", "rank", "segmentation"]] * 2
    assert [(r["image_id"], r["rank"], r["category_id"]) for r in results] == [(10, 1, 5), (10, 2, 6)]
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert errors == [{"index": 1, "image_id": 11, "file_name": "x.jpg", "path": "/x.jpg", "stage": "decode",
                       "reason": "file not found"}]


@pytest.mark.parametrize("n,bs", [(0, 4), (1, 4), (10, 3), (17, 4)])
def test_shards_partition_the_batches_and_keep_batch_composition(n, bs):
    batches = sharding.make_batches(n, bs)
    assert [i for b in batches for i in b] == list(range(n))
    assert all(len(b) == bs for b in batches[:-1])
    for count in (1, 2, 3, 5):
        parts = [sharding.shard_batches(batches, i, count) for i in range(count)]
        flat = sorted(tuple(b) for p in parts for b in p)
        assert flat == sorted(tuple(b) for b in batches)  # every batch exactly once, unchanged


def test_parse_shard_and_torchrun_env():
    assert sharding.parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "1", "a/b", "0/0"):
        with pytest.raises(WslocError, match="--shard"):
            sharding.parse_shard(bad)
    assert sharding.DistEnv.from_env({}) is None
    assert sharding.DistEnv.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    env = sharding.DistEnv.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert env == sharding.DistEnv(1, 2, 1, 2)
    assert env.combine((0, 1)) == (1, 2)
    assert env.combine((3, 4)) == (7, 8)  # job array of torchrun jobs: distinct shards of 8
    assert sharding.device_for_rank("cpu", env) == "cpu"
    assert sharding.device_for_rank("cuda", env) == "cuda:1"
    assert sharding.shard_dir("/o", 0, 1) == "/o"
    assert sharding.shard_dir("/o", 1, 2) == os.path.join("/o", "shards", "00001-of-00002")


def _config(**changes):
    cfg = {"localizer": {"method": "gradient", "top_k": 5, "batch_size": 1}, "dataset": {"path": "/d", "images": 5},
           "shard": [0, 1], "inputs": {"max_pixels": 10}, "versions": {"torch": "x"}}
    cfg.update(changes)
    return cfg


def test_resume_prepare_refuses_ambiguous_or_changed_runs(tmp_path):
    d = str(tmp_path)
    assert resume.prepare(d, _config(), resume=False, overwrite=False).done == set()  # empty folder
    outputs.write_json(os.path.join(d, outputs.CONFIG), _config())
    with outputs.JsonlWriter(os.path.join(d, outputs.IMAGES)) as w:
        w.write([{"index": 0, "status": "ok"}, {"index": 2, "status": "error"}])
    with pytest.raises(WslocError, match="--resume"):
        resume.prepare(d, _config(), resume=False, overwrite=False)
    with pytest.raises(WslocError, match="localizer.top_k"):
        resume.prepare(d, _config(localizer={"method": "gradient", "top_k": 3, "batch_size": 1}), resume=True,
                       overwrite=False)
    state = resume.prepare(d, _config(versions={"torch": "y"}), resume=True, overwrite=False)  # versions may differ
    assert (state.done, state.n_ok, state.n_errors) == ({0, 2}, 1, 1)
    assert resume.prepare(d, _config(), resume=False, overwrite=True).done == set()
    assert not os.path.exists(os.path.join(d, outputs.IMAGES))


def _fake_shard(out, i, n, indices, complete=True, n_images=5, **cfg):
    """Shard i of n of a run over ``n_images`` images in batches of 1 (shard i: i, i + n, ...)."""
    d = sharding.shard_dir(str(out), i, n)
    os.makedirs(d)
    cfg.setdefault("dataset", {"path": "/d", "images": n_images})
    outputs.write_json(os.path.join(d, outputs.CONFIG), _config(shard=[i, n], **cfg))
    with outputs.JsonlWriter(os.path.join(d, outputs.IMAGES)) as w:
        w.write([{"index": k, "image_id": k, "status": "ok", "results": []} for k in indices])
    outputs.write_json(os.path.join(d, outputs.SUMMARY), {"complete": complete, "wall_seconds": 1.0,
                                                          "stage_seconds": {"network": 1.0}})


def test_merge_joins_shards_in_dataset_order(tmp_path):
    _fake_shard(tmp_path, 0, 2, [0, 2, 4])
    _fake_shard(tmp_path, 1, 2, [1, 3])
    summary = merge(str(tmp_path))
    assert summary["images"] == 5 and summary["stage_seconds"] == {"network": 2.0}
    assert [r["index"] for r in outputs.iter_jsonl(str(tmp_path / "images.jsonl"))] == [0, 1, 2, 3, 4]
    assert json.loads((tmp_path / "config.json").read_text())["shard"] == [0, 1]


@pytest.mark.parametrize("problem", ["missing", "unfinished", "different"])
def test_merge_refuses_incomplete_or_mixed_shards(tmp_path, problem):
    _fake_shard(tmp_path, 0, 3, [0], n_images=3)
    _fake_shard(tmp_path, 1, 3, [1], complete=problem != "unfinished", n_images=3,
                **({"inputs": {"max_pixels": 99}} if problem == "different" else {}))
    if problem != "missing":
        _fake_shard(tmp_path, 2, 3, [2], n_images=3)
    match = {"missing": r"shards \[2\] of 3 missing", "unfinished": "not finished",
             "different": "other options"}[problem]
    with pytest.raises(WslocError, match=match):
        merge(str(tmp_path))


def test_worker_counts_follow_the_machine_without_oversubscribing_it():
    from wsloc.run import auto_workers

    assert auto_workers(2) == (1, 0, 2)  # without a measurement (wsloc.run.policy; tests/test_policy.py)
    for cpus in (1, 2, 3, 4, 8, 16, 64):
        decode, segment, threads = auto_workers(cpus)
        assert decode >= (1 if cpus > 1 else 0) and segment >= (1 if cpus > 2 else 0) and threads >= 1
        assert segment + threads <= max(2, cpus)  # network threads + segmentation processes fit the cores
        assert decode <= max(1, cpus // 4)
    assert auto_workers(16, cuda=True)[2] == 1  # on CUDA one thread drives the GPU, the pool gets the rest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc")
def test_memory_releaser_gives_fragmented_heap_memory_back():
    from wsloc.run.segment_worker import MemoryReleaser, rss_bytes

    idle = MemoryReleaser(slack=2**40)
    assert idle() is True and idle.floor > 0  # the first call sets the floor
    assert idle() is False  # within the slack: nothing to do
    blocks = [b"x" * 100_000 for _ in range(2000)]  # 200 MB of heap chunks (below the mmap threshold)
    del blocks[::2]  # 100 MB freed inside the heap: free() alone cannot give it back
    fragmented = rss_bytes("self")
    release = MemoryReleaser(slack=0)
    release.floor = 0
    assert release() is True
    assert fragmented - rss_bytes("self") > 50 * 2**20
    del blocks
