"""The batch runner's stages, each on its own: decode, network, segmentation, sink, memory, policy."""

from __future__ import annotations

import json
import os
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wsloc.errors import WslocError
from wsloc.io import open_dataset
from wsloc.localizer import Localizer
from wsloc.run import outputs, policy
from wsloc.run.decode import DecodeBatches, error_record
from wsloc.run.memory_watch import MemoryWatch
from wsloc.run.network import NetworkStage
from wsloc.run.options import RunOptions
from wsloc.run.saved_maps import load_image_maps, map_path
from wsloc.run.segment_stage import SegmentStage
from wsloc.run.segment_worker import SegmentJob, segment_job
from wsloc.run.sink import RunSink
from wsloc.run.summary import new_stages
from wsloc.segment import PreparedMaps, SegmentConfig, prepare_maps
from wsloc.segment.seeds import working_image

from test_run_helpers import make_coco, scene, tiny_classifier


@pytest.fixture(scope="module")
def loc():
    return Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)


# --------------------------------------------------------------------------- decode

def test_decode_records_a_broken_image_and_keeps_only_the_working_copy(tmp_path):
    ds = open_dataset(str(make_coco(tmp_path / "data", 3, bad=("corrupt",))))  # img000, corrupt.jpg, img001, img002
    full = [None, None, scene(1)]
    decode = DecodeBatches(ds, [[0, 1, 2]], tiny_classifier().preprocess, 50_000_000, 8, max_side=16, whole={0})
    batch = decode[0]
    whole, broken, small = batch.items
    assert broken["stage"] == "decode" and "image" not in broken and broken["file_name"] == "corrupt.jpg"
    rec = error_record(broken)
    assert rec["status"] == "error" and rec["stage"] == "decode" and rec["image_id"] == 101 and rec["reason"]
    assert whole["size"] == (48, 64) and whole["image"].shape == (48, 64, 3)  # an overlay image stays whole
    assert small["size"] == (48, 64) and small["image"].shape == (12, 16, 3)  # 64 px -> 16: 48 -> 12
    np.testing.assert_array_equal(small["image"], working_image(full[2], 16))
    assert batch.x.shape == (2, 3, 32, 32)  # the two images that loaded, for the network
    assert set(batch.timings) == {"decode", "preprocess"}


# --------------------------------------------------------------------------- network

def test_network_stage_gives_each_loaded_image_its_maps_and_a_lean_job(tmp_path, loc):
    ds = open_dataset(str(make_coco(tmp_path / "data", 2, bad=("empty",))))  # img000, empty.jpg, img001
    decoded = DecodeBatches(ds, [[0, 1, 2]], loc.preprocess, 50_000_000, 8, max_side=20)[0]
    network = NetworkStage(loc)
    out = list(network.run(decoded))
    assert [o is None for _, o in out] == [False, True, False]
    maps, classes, logits, probs = out[2][1]
    assert maps.shape == (3, 32, 32) and classes.shape == logits.shape == probs.shape == (3,)
    assert network.seconds > 0
    job = network.job(out[2][0], out[2][1])
    assert job.size == (48, 64) and job.image.shape == (15, 20, 3) and job.names == loc.names_of(classes)
    # the maps go on the working grid of the segmentation options (prepared here; the runner decodes with
    # the same max_side, 80, under which this 48 x 64 image is its own grid), unless an overlay shows them whole
    assert isinstance(job.maps, PreparedMaps) and job.maps.size == (48, 64) and job.maps.maps.shape == (3, 48, 64)
    np.testing.assert_array_equal(job.maps.maps, prepare_maps(maps, (48, 64), loc.segment_config).maps)
    assert network.job(out[2][0], out[2][1], overlay_path="x.png").maps is maps


def test_a_working_copy_and_the_size_give_the_record_of_the_whole_image():
    # what makes the lean traffic safe: the segmentation process's record is the same byte for byte
    image = scene(3, 240, 320)
    rng = np.random.default_rng(0)
    maps = rng.random((2, 32, 32)).astype(np.float32)
    config = SegmentConfig()
    whole = SegmentJob(index=0, image_id=5, file_name="a.png", path=None, image=image, maps=maps,
                       classes=np.array([1, 2]), logits=np.array([2.0, 1.0], np.float32),
                       probs=np.array([0.6, 0.3], np.float32), names=None, config=config)
    lean = SegmentJob(**{**whole.__dict__, "image": working_image(image, config.max_side), "size": (240, 320)})
    assert lean.image.shape == (60, 80, 3)
    assert json.dumps(segment_job(lean)[0]) == json.dumps(segment_job(whole)[0])
    # what goes through the pipe: the maps and the 80 px copy, not the 230 kB image
    assert len(pickle.dumps(lean)) < maps.nbytes + lean.image.nbytes + 4096 < image.nbytes


# --------------------------------------------------------------------------- segmentation stage

def _job(index: int, maps: np.ndarray) -> SegmentJob:
    image = scene(index)
    return SegmentJob(index=index, image_id=10 + index, file_name=f"{index}.png", path=f"/x/{index}.png",
                      image=image, maps=maps, classes=np.array([4]), logits=np.array([1.0], np.float32),
                      probs=np.array([0.5], np.float32), names=["four"], config=SegmentConfig())


def test_segment_stage_keeps_the_order_and_turns_a_failed_job_into_its_error_record():
    stages = new_stages()
    stage = SegmentStage(0, release_memory=False, stages=stages)  # in this process
    good = np.zeros((1, 48, 64), np.float32)
    good[0, 10:30, 20:40] = 1.0
    stage.submit(_job(0, good))
    stage.add(error_record({"index": 1, "image_id": 11, "file_name": "1.png", "path": None, "stage": "decode",
                            "reason": "unreadable"}))
    stage.end_batch()
    stage.submit(_job(2, np.zeros((1, 2, 3, 4), np.float32)))  # maps of the wrong shape: segment raises
    stage.submit(_job(3, good))
    stage.end_batch()
    assert stage.pending() == 2
    records = stage.collect(keep=0)
    assert [r["index"] for r in records] == [0, 1, 2, 3] and stage.pending() == 0
    assert [r["status"] for r in records] == ["ok", "error", "error", "ok"]
    assert records[2]["stage"] == "segment" and "MethodError" in records[2]["reason"]
    assert records[2]["image_id"] == 12 and records[2]["path"] == "/x/2.png"
    assert records[0]["results"][0]["name"] == "four" and stages["graph_cut"] > 0  # the jobs' timings
    assert stage.deaths == 0
    stage.close()


# --------------------------------------------------------------------------- sink

def _ok(i: int) -> dict:
    return {"index": i, "image_id": 100 + i, "file_name": f"img{i}.png", "status": "ok", "height": 4, "width": 4,
            "results": [{"rank": 1, "category_id": i, "name": None, "score": 0.5, "logit": 1.0, "bbox": [0, 0, 1, 1],
                         "boxes": [], "flag": None, "segmentation": {"size": [4, 4], "counts": "04"}}]}


def _bad(i: int) -> dict:
    return {"index": i, "image_id": 100 + i, "file_name": f"img{i}.png", "path": None, "status": "error",
            "stage": "decode", "reason": "broken"}


CONFIG = {"localizer": {"batch_size": 2}, "dataset": {"images": 6}, "shard": [0, 1], "inputs": {},
          "shard_images": 6}
BATCHES = [[0, 1], [2, 3], [4, 5]]


def test_sink_writes_resumes_and_finishes(tmp_path):
    run = str(tmp_path / "run")
    sink = RunSink.prepare(run, RunOptions(run, overlays=1), CONFIG, BATCHES, new_stages())
    assert sink.todo == BATCHES and (sink.total, sink.already) == (6, 0)
    assert outputs.read_json(os.path.join(run, outputs.CONFIG)) == CONFIG
    path, gt = sink.overlay({"index": 0, "file_name": "a b.jpg", "gt": {"boxes": []}})
    assert path == os.path.join(run, "overlays", "0000000_a_b.png") and gt == {"boxes": []}
    assert sink.overlay({"index": 1, "file_name": "c.jpg"}) == (None, None)
    sink.open(progress=False)
    sink.write([_ok(0), _bad(1), _ok(2)])
    assert sink.close() is None and (sink.written, sink.ok, sink.errors) == (3, 2, 1)

    again = RunSink.prepare(run, RunOptions(run, resume=True), CONFIG, BATCHES, new_stages())
    assert again.already == 3 and again.todo == [[2, 3], [4, 5]]  # batch [2, 3] runs again whole
    assert not again.wants({"index": 2}) and again.wants({"index": 3})
    assert (again.ok, again.errors) == (2, 1)
    again.open(progress=False)
    again.write([_ok(3), _ok(4)])
    again.close()
    counts, lost = again.finish()  # index 5 has no line: not complete, nothing finalized
    assert counts is None and isinstance(lost, WslocError) and "missing index 5" in str(lost)
    assert not os.path.exists(os.path.join(run, outputs.RESULTS))

    last = RunSink.prepare(run, RunOptions(run, resume=True), CONFIG, BATCHES, new_stages())
    assert last.todo == [[4, 5]]
    last.open(progress=False)
    last.write([_ok(5)])
    last.close()
    counts, lost = last.finish()
    assert lost is None and counts == {"images": 6, "ok": 5, "errors": 1, "results": 5}
    results = outputs.read_json(os.path.join(run, outputs.RESULTS))
    assert [r["image_id"] for r in results] == [100, 102, 103, 104, 105]
    assert outputs.read_json(os.path.join(run, outputs.ERRORS))[0]["index"] == 1
    with pytest.raises(WslocError, match="different options"):  # the resume state refuses another configuration
        RunSink.prepare(run, RunOptions(run, resume=True), {**CONFIG, "inputs": {"limit": 3}}, BATCHES, new_stages())


def test_sink_saves_maps_only_when_asked(tmp_path):
    maps = np.linspace(0, 1, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    item = {"index": 7, "image_id": 42, "size": (30, 40)}
    for wanted in (False, True):
        out = str(tmp_path / str(wanted))
        stages = new_stages()
        RunSink.prepare(out, RunOptions(out, save_maps=wanted), CONFIG, BATCHES, stages).save_maps(
            item, maps, np.array([3, 9]))
        assert os.path.exists(map_path(out, 7)) == wanted and ("save_maps" in stages) == wanted
    saved = load_image_maps(map_path(out, 7))
    assert saved["size"] == (30, 40) and saved["image_id"] == 42 and saved["classes"].tolist() == [3, 9]
    np.testing.assert_allclose(saved["maps"], maps, atol=1e-3)


# --------------------------------------------------------------------------- memory

def test_memory_watch_samples_at_most_once_per_interval():
    watch = MemoryWatch(release=True, interval=3600.0)
    watch.after_batch(4)
    watch.after_batch(8)  # within the interval: no sample
    watch.sample(9, force=True)
    assert [s[0] for s in watch.samples] == [4, 9] and watch.seconds >= 0
    main, pss, rss = watch.samples[0][1:]
    assert 0 < main <= rss  # this process is part of its own tree
    summary = watch.summary()
    assert summary["peak_tree_rss"] == max(s[3] for s in watch.samples) and summary["columns"][0] == "images_done"
    assert summary["peak_main"] > 0


# --------------------------------------------------------------------------- policy

def _fake(device: str):
    return SimpleNamespace(classifier=SimpleNamespace(device=torch.device(device)))


@pytest.mark.parametrize("device, cpus, counts", [
    ("cpu", 2, (1, 0, 2)),     # the network takes both cores, segmentation between batches
    ("cpu", 32, (4, 8, 24)),   # a quarter of the cores segment; 4 decode
    ("cuda", 2, (1, 1, 1)),    # one thread drives the GPU
    ("cuda", 32, (4, 27, 1)),  # 4 decode, the other 27 segment
])
def test_policy_default_plan_for_2_and_32_cores(device, cpus, counts):
    def never():
        raise AssertionError("a short run is not measured")

    plan = policy.worker_plan(_fake(device), RunOptions("x", cpus=cpus), left=63, first_batch=never)
    assert plan.counts == counts and "default counts" in plan.why


def test_policy_measures_long_runs_and_the_given_counts_win(monkeypatch):
    gpu = policy.StageCosts(network={1: 0.002}, segment=0.04, decode=0.01, cuda=True)  # the docstring's GPU case
    seen = []

    def plan_run(localizer, decoded, cpus):
        seen.append((decoded, cpus))
        return policy.choose(gpu, cpus)

    monkeypatch.setattr(policy, "plan_run", plan_run)
    plan = policy.worker_plan(_fake("cuda"), RunOptions("x", cpus=32), left=64, first_batch=lambda: "batch0")
    assert seen == [("batch0", 32)] and plan.counts == (5, 20, 1)  # 5 / 0.01 = 20 / 0.04 = 500 images/s
    plan = policy.worker_plan(_fake("cuda"), RunOptions("x", cpus=32, segment_workers=3), 64, lambda: "batch0")
    assert plan.counts == (5, 3, 1) and plan.why.endswith("given: segment=3")
    plan = policy.worker_plan(_fake("cpu"), RunOptions("x", cpus=2, workers=0, segment_workers=1, threads=1), 999,
                              first_batch=lambda: pytest.fail("every count given: nothing to measure"))
    assert plan.counts == (0, 1, 1)


def test_policy_cpu_count_is_a_share_of_the_affinity_mask():
    mine = len(os.sched_getaffinity(0))
    assert policy.cpu_count() == mine
    assert policy.cpu_count(share=2) == max(1, mine // 2)  # a torchrun rank of two on this node
    assert policy.cpu_count(share=10**6) == 1
