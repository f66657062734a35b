"""The supervised segmentation pool: a worker killed with SIGKILL is replaced, its job runs again,
and a job that keeps killing its worker fails alone; a run whose worker is SIGKILLed mid-run
completes with the same bytes as an undisturbed one (issue 15, High: the run used to hang forever)."""

import multiprocessing
import os
import signal
import threading
import time

import pytest

from test_run_helpers import tiny_classifier
from wsloc.run.pool import PoolBroken, SupervisedPool, WorkerDied

# The pool's own logic does not depend on how its processes start: fork keeps these tests fast
# (a spawn-started process imports torch again); the whole-run tests below use the runner's spawn.
FORK = multiprocessing.get_context("fork")


def _square_slowly(x, seconds=0.0):
    time.sleep(seconds)
    return x * x


def _die_once(x, marker):
    """SIGKILL its own process the first time it sees ``marker`` missing (then creates it)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


def _always_die(x):
    os.kill(os.getpid(), signal.SIGKILL)


def _fail(x):
    raise ValueError(f"bad {x}")


def _exit_at_start():
    os._exit(3)


def test_pool_runs_jobs_and_reports_their_exceptions():
    with SupervisedPool(2, mp_context=FORK) as pool:
        futures = [pool.submit(_square_slowly, i) for i in range(6)]
        bad = pool.submit(_fail, 7)
        assert [f.result(timeout=60) for f in futures] == [0, 1, 4, 9, 16, 25]
        with pytest.raises(ValueError, match="bad 7"):
            bad.result(timeout=60)
        assert pool.deaths == 0


def test_a_job_whose_worker_dies_once_runs_again_on_a_fresh_worker(tmp_path):
    with SupervisedPool(1, mp_context=FORK) as pool:
        first = pool.pids()
        f = pool.submit(_die_once, 41, str(tmp_path / "died"))
        after = [pool.submit(_square_slowly, i) for i in range(3)]
        assert f.result(timeout=60) == 42
        assert [g.result(timeout=60) for g in after] == [0, 1, 4]
        assert pool.deaths == 1 and pool.pids() != first


def test_a_job_that_always_kills_its_worker_fails_alone_after_a_bounded_number_of_deaths():
    t0 = time.monotonic()
    with SupervisedPool(1, max_deaths=3, mp_context=FORK) as pool:
        doomed = pool.submit(_always_die, 0)
        fine = pool.submit(_square_slowly, 5)
        with pytest.raises(WorkerDied, match="died 3 times"):
            doomed.result(timeout=60)
        assert fine.result(timeout=60) == 25
        assert pool.deaths == 3
    assert time.monotonic() - t0 < 60


def test_an_external_sigkill_mid_job_is_survived():
    with SupervisedPool(2, mp_context=FORK) as pool:
        futures = [pool.submit(_square_slowly, i, 1.0) for i in range(4)]
        time.sleep(0.5)  # the workers are started and busy with their first job
        for pid in pool.pids():
            os.kill(pid, signal.SIGKILL)
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(4)]
        assert pool.deaths >= 2


def test_workers_that_cannot_start_break_the_pool_instead_of_restarting_forever():
    pool = SupervisedPool(1, initializer=_exit_at_start, max_start_failures=3, mp_context=FORK)
    try:
        f = pool.submit(_square_slowly, 2)
        with pytest.raises(PoolBroken, match="--segment-workers 0"):
            f.result(timeout=60)
        with pytest.raises(PoolBroken):
            pool.submit(_square_slowly, 3).result(timeout=5)
    finally:
        pool.shutdown(wait=False)


# --------------------------------------------------------------------------- a whole run, SIGKILLed worker

FINAL = ("results.json", "errors.json", "images.jsonl")


@pytest.fixture(scope="module")
def demo():
    from wsloc.io import open_dataset
    from wsloc.paths import demo_annotations

    return open_dataset(demo_annotations())


@pytest.fixture(scope="module")
def loc():
    from wsloc.localizer import Localizer

    return Localizer(classifier=tiny_classifier(), device="cpu", top_k=3, batch_size=2)


def _run(loc, dataset, out, **kw):
    from wsloc.run import RunOptions, run_dataset

    return run_dataset(loc, dataset, RunOptions(out_dir=str(out), progress=False, workers=0, **kw), {"path": "demo"})


@pytest.fixture(scope="module")
def undisturbed(loc, demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("undisturbed")
    _run(loc, demo, out, segment_workers=0)
    return out


def _segment_children():
    """This process's multiprocessing children: with ``workers=0`` (no DataLoader processes),
    the segmentation workers."""
    return [p.pid for p in multiprocessing.active_children()]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_the_segmentation_workers_mid_run_changes_nothing(loc, demo, undisturbed, tmp_path, workers):
    """Every segmentation process is SIGKILLed once the first line is written (the next jobs
    are then queued or in flight), and their replacements again as soon as they appear (the
    out-of-memory killer strikes twice; the code before the supervised pool gave up when a
    fresh pool died before finishing an image); the run completes, with the same bytes as
    without workers."""
    out = tmp_path / "run"
    killed: list[int] = []
    done = threading.Event()

    def killer():
        images = out / "images.jsonl"
        while not done.is_set():
            if images.exists() and images.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.005)
        first = _segment_children()
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        killed.extend(first)
        while not done.is_set():  # the second strike: the replacements, still starting
            fresh = [p for p in _segment_children() if p not in killed]
            if len(fresh) >= len(first):
                for pid in fresh:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(fresh)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result: dict = {}

    def run():
        try:
            result.update(_run(loc, demo, out, segment_workers=workers))
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            result["raised"] = f"{type(exc).__name__}: {exc}"

    runner = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    runner.start()
    runner.join(timeout=180)
    done.set()
    assert not runner.is_alive(), "the run hung after its segmentation processes were killed"
    assert len(killed) == 2 * workers, f"expected twice {workers} segmentation processes, killed {killed}"
    assert "raised" not in result, result["raised"]
    assert result["complete"] and result["errors"] == 0 and result["images"] == 6
    assert result["workers"]["segment_deaths"] == 2 * workers
    for name in FINAL:
        assert (out / name).read_bytes() == (undisturbed / name).read_bytes(), name
    print(f"{workers} worker(s) killed twice, run finished in {time.monotonic() - t0:.1f} s")
