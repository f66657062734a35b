"""Network lanes (issue 17): parts of each batch in threads of one torch thread, each on its own
network copy; the same maps as one lane; the policy picks them when they measure faster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsloc.errors import WslocError
from wsloc.io import open_dataset
from wsloc.localizer import Localizer
from wsloc.run import RunOptions, run_dataset
from wsloc.run.decode import DecodeBatches
from wsloc.run.network import NetworkStage, split_batch
from wsloc.run.policy import StageCosts, choose, predict, worker_plan

from test_inference_copy import BnNet
from test_run_helpers import make_coco, make_folder, tiny_classifier
from wsloc.models import Preprocess, load_classifier


@pytest.mark.parametrize("n, lanes, align, parts", [
    (8, 2, 4, [(0, 4), (4, 8)]),            # the default batch: two chunks of four 224 px images
    (5, 2, 4, [(0, 4), (4, 5)]),            # the last, short batch: cut at the chunk, not in the middle
    (3, 2, 4, [(0, 3)]),                    # shorter than one chunk: one lane
    (7, 3, 1, [(0, 3), (3, 6), (6, 7)]),
    (1, 4, 1, [(0, 1)]),
    (8, 1, 4, [(0, 8)]),
])
def test_split_batch_known_answers(n, lanes, align, parts):
    assert split_batch(n, lanes, align) == parts


@pytest.fixture(scope="module")
def bn_localizer():
    clf = load_classifier(BnNet(seed=5), preprocess=Preprocess((24, 20), (0.5,) * 3, (0.25,) * 3))
    loc = Localizer(classifier=clf, device="cpu", top_k=2, batch_size=6, **{"saliency.scales": (1.0, 2.0)})
    assert loc.folded == 2 and loc.max_pixels is not None
    loc.max_pixels = 2 * 24 * 20  # two images per network call at 24 x 20, one at 48 x 40: lanes cut at 2
    return loc


def test_replica_has_its_own_network_and_the_same_everything_else(bn_localizer):
    twin = bn_localizer.replica()
    assert twin.config is bn_localizer.config and twin.classifier is bn_localizer.classifier
    assert twin._net.model is not bn_localizer._net.model
    mine, theirs = dict(bn_localizer._net.model.named_parameters()), dict(twin._net.model.named_parameters())
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert all(mine[k].data_ptr() != theirs[k].data_ptr() for k in mine)


def test_two_lanes_give_the_maps_of_one_lane_also_with_batches_in_flight(bn_localizer):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(6, 3, 24, 20, generator=gen) for _ in range(3)]
    one = NetworkStage(bn_localizer, 1)
    two = NetworkStage(bn_localizer, 2)
    try:
        started = [two._start(x, None) for x in batches]  # three batches queued on the lanes at once
        got = [two._outputs(s) for s in started]
        for x, parts in zip(batches, got):
            (ref,) = one.forward(x)
            assert [p.classes.shape[0] for p in parts] == [4, 2]  # ceil(6 / 2) = 3, up to the call of 2
            np.testing.assert_array_equal(np.concatenate([p.maps for p in parts]), ref.maps)
            np.testing.assert_array_equal(np.concatenate([p.classes for p in parts]), ref.classes)
            np.testing.assert_array_equal(np.concatenate([p.logits for p in parts]), ref.logits)
        wanted = [[0], [1, 2], [3], [0, 1], [2], [3, 0]]  # given classes are cut with the batch
        parts = two.forward(batches[0], wanted)
        (ref,) = one.forward(batches[0], wanted)
        assert np.concatenate([p.counts for p in parts]).tolist() == ref.counts.tolist() == [1, 2, 1, 2, 1, 2]
        assert [p.classes.shape[0] for p in parts] == [4, 2]
        assert [c for p in parts for i in range(p.classes.shape[0]) for c in p.image(i)[1].tolist()] == \
            [c for i in range(6) for c in ref.image(i)[1].tolist()]
        assert two.seconds > 0
    finally:
        two.close()


def test_network_stage_run_with_lanes_yields_every_item_in_order(tmp_path):
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)
    ds = open_dataset(str(make_coco(tmp_path / "data", 3, bad=("empty",))))  # img000, empty.jpg, img001, img002
    decoded = DecodeBatches(ds, [[0, 1, 2, 3]], loc.preprocess, 50_000_000, 8, max_side=20)[0]
    stage = NetworkStage(loc, 2)
    try:
        out = list(stage.run(decoded))
    finally:
        stage.close()
    plain = list(NetworkStage(loc, 1).run(decoded))
    assert [item["file_name"] for item, _ in out] == [item["file_name"] for item, _ in plain]
    assert [o is None for _, o in out] == [False, True, False, False]
    for (_, a), (_, b) in zip(out, plain):
        if a is not None:
            # the same classes; the maps up to float rounding: a lane runs a smaller batch, and on some CPUs
            # the convolution kernels chosen for another batch size sum in another order
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-6 * float(np.abs(b[0]).max()))


def test_a_run_with_lanes_writes_the_results_of_one_lane(tmp_path):
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=2, batch_size=3)
    ds = open_dataset(str(make_folder(tmp_path / "images", 7)))
    runs = {}
    for lanes in (1, 2):
        out = tmp_path / f"run{lanes}"
        summary = run_dataset(loc, ds, RunOptions(out_dir=str(out), progress=False, workers=0, segment_workers=1,
                                                  threads=1, lanes=lanes), {"path": "test"})
        assert summary["complete"] and summary["workers"]["lanes"] == lanes
        runs[lanes] = (out / "results.json").read_bytes()
    assert runs[1] == runs[2] and len(json.loads(runs[1])) == 7 * 2


LANES = StageCosts(network={1: 0.12, 2: 0.075}, segment=0.05, decode=0.003, lanes={2: 0.06})


def test_policy_picks_measured_lanes_beside_a_segmentation_process():
    plan = choose(LANES, cpus=2)
    assert (plan.lanes, plan.threads, plan.segment) == (2, 1, 1)
    # by hand: main 1 / (0.06 + 0.003) = 15.9, segmentation 1 / 0.05 = 20, all CPUs 2 / (2*0.06 + 0.05 + 0.003)
    assert plan.images_per_second == pytest.approx(2 / (2 * 0.06 + 0.05 + 0.003))
    # the best plan without lanes: 2 threads, segmentation between batches: 1 / (0.075 + 0.05) = 8.0
    assert predict(LANES, 2, threads=2, segment=0, decode=1) == pytest.approx(8.0)
    assert "2 lanes" in plan.why
    assert predict(LANES, 2, threads=2, segment=1, decode=0, lanes=2) == 0.0  # lanes run one thread each
    assert predict(LANES, 2, threads=1, segment=1, decode=0, lanes=3) == 0.0  # three lanes: not measured


def test_policy_keeps_threads_when_lanes_measure_slow():
    slow = StageCosts(network={1: 0.12, 2: 0.075}, segment=0.05, decode=0.003, lanes={2: 0.2})
    plan = choose(slow, cpus=2)
    assert plan.lanes == 1


class _Opts:
    cpus, calibrate, workers, segment_workers = 2, False, None, None

    def __init__(self, threads=None, lanes=None):
        self.threads, self.lanes = threads, lanes


def test_given_threads_or_lanes_win_over_each_other():
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=2)
    plan = worker_plan(loc, _Opts(lanes=2), 10, None)
    assert (plan.lanes, plan.threads) == (2, 1)  # default counts give 2 threads: a lane runs one
    plan = worker_plan(loc, _Opts(threads=2, lanes=None), 10, None)
    assert (plan.lanes, plan.threads) == (1, 2)


def test_run_options_check_lanes():
    with pytest.raises(WslocError, match="--lanes 0"):
        RunOptions(out_dir="x", lanes=0).validate()
    with pytest.raises(WslocError, match="--threads 2.*one torch thread"):
        RunOptions(out_dir="x", lanes=2, threads=2).validate()
    RunOptions(out_dir="x", lanes=2, threads=1).validate()
