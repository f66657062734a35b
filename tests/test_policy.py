"""The worker policy (wsloc.run.policy): hand-made stage costs -> the counts it must choose."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from wsloc.localizer import Localizer
from wsloc.run import RunOptions, auto_workers, run_dataset
from wsloc.run.policy import StageCosts, WorkerPlan, bound, calibrate, choose, default_counts, plan_run, predict

from test_run_helpers import make_folder, scene, tiny_classifier

ISSUE = StageCosts(network={1: 0.28, 2: 0.16}, segment=0.04, decode=0.0066)  # issue 17's 2-core measurement


def test_amdahl_fit_through_the_measured_points():
    # serial fraction f from N(2) = N(1) (f + (1 - f) / 2): 0.16 / 0.28 = f + (1 - f) / 2 -> f = 1/7
    assert ISSUE.network_at(1) == 0.28 and ISSUE.network_at(2) == 0.16
    assert ISSUE.network_at(4) == pytest.approx(0.28 * (1 / 7 + 6 / 7 / 4))  # = 0.1
    assert ISSUE.network_at(4) == pytest.approx(0.1)
    assert StageCosts(network={1: 0.3}, segment=0.0).network_at(3) == pytest.approx(0.1)  # one point: linear
    assert StageCosts(network={1: 0.002}, segment=0.0, cuda=True).network_at(8) == 0.002  # GPU: threads don't help


def test_two_cores_default_preset_chooses_two_threads_and_segmentation_between_batches():
    plan = choose(ISSUE, cpus=2)
    assert plan.counts == (1, 0, 2)  # 1 decoding process, segmentation in the main process, 2 threads
    # by hand: main process 1 / (0.16 + 0.04) = 5.0; all CPUs 2 / (2*0.16 + 0.04 + 0.0066) = 5.46
    assert plan.images_per_second == pytest.approx(5.0)
    # what the runner did before (1 thread + 1 segmentation process): 1 / 0.28 = 3.57
    assert predict(ISSUE, 2, threads=1, segment=1, decode=1) == pytest.approx(1 / 0.28)
    assert predict(ISSUE, 2, threads=2, segment=1, decode=1) == 0.0  # oversubscribed: refused
    assert plan.bound == pytest.approx(2 / (0.28 + 0.04 + 0.0066))
    assert "2 threads" in plan.why and "main process" in plan.why


def test_segmentation_heavy_preset_gets_its_own_process():
    costs = StageCosts(network={1: 0.05, 2: 0.03}, segment=0.2, decode=0.01)
    plan = choose(costs, cpus=2)
    # 1 thread + 1 segmentation process: min(1/0.05 (+ decoding 0.01 in the main process), 1/0.2) = 5.0;
    # 2 threads, segmentation in between: 1 / (0.03 + 0.2) = 4.35
    assert (plan.segment, plan.threads) == (1, 1)
    assert plan.images_per_second == pytest.approx(5.0)


def test_gpu_machines_feed_the_device_with_segmentation_processes():
    gpu = StageCosts(network={1: 0.002}, segment=0.04, decode=0.01, cuda=True)
    for cpus in (32, 64):  # the GPU (500 images/s) is the bound: the fewest processes that keep up with it
        plan = choose(gpu, cpus)
        assert plan.counts == (5, 20, 1)  # 5 / 0.01 = 500, 20 / 0.04 = 500
        assert plan.images_per_second == pytest.approx(500.0)
    plan = choose(gpu, 16)  # 15 CPUs besides the driver: 12 segmenting (300/s), 3 decoding (300/s)
    assert plan.counts == (3, 12, 1) and plan.images_per_second == pytest.approx(300.0)


def test_many_cores_without_gpu():
    plan = choose(ISSUE, 16)
    # N(15) = 0.28 (1/7 + 6/7/15) = 0.056: 1 / 0.056 = 17.9/s, one segmentation process keeps up (25/s)
    assert plan.counts == (1, 1, 15)
    assert plan.images_per_second == pytest.approx(1 / 0.056)


@pytest.mark.parametrize("seed", range(5))
def test_the_choice_is_the_best_plan_and_never_oversubscribes(seed):
    rng = np.random.default_rng(seed)
    n1 = float(rng.uniform(0.01, 0.5))
    costs = StageCosts(network={1: n1, 4: n1 * float(rng.uniform(0.25, 1.0))}, segment=float(rng.uniform(0.005, 0.3)),
                       decode=float(rng.uniform(0.0, 0.05)))
    for cpus in (1, 2, 3, 8):
        plan = choose(costs, cpus)
        assert plan.threads + plan.segment <= cpus and plan.threads >= 1
        assert plan.images_per_second <= bound(costs, cpus) * (1 + 1e-9)  # t N(t) >= N(1) under Amdahl
        best = max(predict(costs, cpus, t, s, d)
                   for t, s, d in itertools.product(range(1, cpus + 1), range(cpus + 1), range(cpus + 1)))
        assert plan.images_per_second >= 0.99 * best


def test_default_counts_and_auto_workers_are_one_policy():
    assert default_counts(1) == (0, 0, 1)
    assert default_counts(2) == (1, 0, 2)  # the measured choice on 2 cores (see the 2-core test above)
    for cpus in (1, 2, 3, 4, 8, 16, 64):
        d, s, t = default_counts(cpus)
        assert auto_workers(cpus) == (d, s, t)
        assert t >= 1 and s + t <= cpus and d <= max(1, cpus // 4)
    assert default_counts(16, cuda=True)[2] == 1


def test_calibrate_measures_and_restores_the_thread_count():
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)
    images = [scene(i) for i in range(4)]
    before = torch.get_num_threads()
    costs = calibrate(loc, loc.preprocess.batch(images), images, cpus=2)
    assert torch.get_num_threads() == before
    assert set(costs.network) == {1, 2} and all(v > 0 for v in costs.network.values())
    assert costs.segment > 0 and not costs.cuda


def test_plan_without_images_uses_the_default_counts():
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)
    plan = plan_run(loc, None, 2)
    assert isinstance(plan, WorkerPlan) and plan.counts == default_counts(2) and "default" in plan.why


def test_a_run_records_its_measured_plan_and_the_given_counts_win(tmp_path):
    loc = Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=4)
    from wsloc.io import open_dataset

    ds = open_dataset(str(make_folder(tmp_path / "images", 6)))
    summary = run_dataset(loc, ds, RunOptions(out_dir=str(tmp_path / "run"), progress=False, calibrate=True,
                                              workers=0, cpus=2), {"path": "test"})
    plan = summary["workers"]["plan"]
    assert plan["costs"]["segment"] > 0 and "measured" in plan["why"]
    assert plan["decode"] == 0 and summary["workers"]["decode"] == 0  # the given count replaces the choice
    json.dumps(summary)  # the plan is JSON-able
    quick = run_dataset(loc, ds, RunOptions(out_dir=str(tmp_path / "run2"), progress=False, workers=0,
                                            segment_workers=0), {"path": "test"})
    assert quick["workers"]["plan"]["costs"] is None  # 6 images < 64: not measured
