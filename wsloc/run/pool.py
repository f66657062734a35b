"""A supervised process pool: a worker that dies is replaced, and its job goes to the new one.

``concurrent.futures.ProcessPoolExecutor`` breaks as a whole when one of its processes is
killed (what the kernel's out-of-memory killer does), and its feeder thread can stay blocked
on the pipe of the dead process, so a run waiting on it never ends. :class:`SupervisedPool`
has the same interface for what the runner needs (``submit(fn, *args) -> Future``,
``shutdown``) but owns its processes:

* each worker has its own pipe and holds at most one job, so the pool always knows which
  job a worker had when it died;
* one supervisor thread waits on every worker's pipe *and* its process sentinel
  (:func:`multiprocessing.connection.wait`), so a death is seen at once, whether the worker
  was computing, receiving its job or sending its result (a write to a dead worker fails
  with ``EPIPE``, a read gets ``EOF``; nothing blocks);
* the dead worker is replaced by a fresh one and its job is queued again, first in line;
  after ``max_deaths`` deaths on the same job its future fails with :class:`WorkerDied`
  (the runner records that image as an error and goes on);
* if workers keep dying before they become ready (a script without the
  ``if __name__ == "__main__":`` guard that spawn-started processes need, a broken
  environment), every future fails with :class:`PoolBroken` instead of restarting forever.

Results are computed by the same function on the same arguments, whichever worker runs a
job, so a restarted job gives the same result.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from concurrent.futures import Future
from multiprocessing.connection import wait as mp_wait

from ..errors import WslocError

log = logging.getLogger("wsloc.run")


class WorkerDied(WslocError):
    """The worker process running a job died (killed, out of memory) ``max_deaths`` times on it."""


class PoolBroken(WslocError):
    """The pool's worker processes die before they are ready; no job can run."""


def _worker_main(conn, initializer, initargs, warm) -> None:
    """A worker process: run the initializer, say ready, then run jobs until told to stop."""
    if initializer is not None:
        initializer(*initargs)
    if warm is not None:
        warm()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's future
            reply = ("error", exc)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result or the exception cannot be pickled
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        del message, fn, args, reply


class _Worker:
    def __init__(self, ctx, initializer, initargs, warm):
        parent, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, initializer, initargs, warm),
                                   name="wsloc-segment", daemon=True)
        self.process.start()
        child.close()  # only the worker holds its end: its death closes the pipe
        self.conn = parent
        self.ready = False
        self.job = None  # (future, fn, args, deaths) in flight

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, ValueError, AttributeError):
            pass
        try:
            self.conn.close()
        except OSError:
            pass


class SupervisedPool:
    """Processes that run ``fn(*args)`` jobs; a dead one is replaced and its job run again.

    Args:
        workers: number of processes (>= 1).
        initializer, initargs: run at the start of each process (module-level, picklable).
        warm: called after the initializer, before the process says it is ready (imports).
        max_deaths: deaths of a worker on the same job after which that job fails with
            :class:`WorkerDied` (>= 1).
        max_start_failures: consecutive workers that die before becoming ready after which
            the pool fails with :class:`PoolBroken` when no worker was ever ready (times
            ``3 * workers`` when some were: then they are being killed from outside).
        mp_context: a multiprocessing context (default: "spawn": no fork of a process that
            runs torch threads).

    Attributes:
        deaths: workers that died while the pool ran (each was replaced).
    """

    def __init__(self, workers: int, initializer=None, initargs=(), warm=None, max_deaths: int = 3,
                 max_start_failures: int = 3, mp_context=None):
        import multiprocessing as mp

        if workers < 1:
            raise ValueError(f"workers={workers}: need at least one")
        if max_deaths < 1:
            raise ValueError(f"max_deaths={max_deaths}: need at least one")
        self._ctx = mp_context or mp.get_context("spawn")
        self._init = (initializer, tuple(initargs), warm)
        self.max_deaths = max_deaths
        self.max_start_failures = max_start_failures
        self.deaths = 0
        self._start_failures = 0
        self._ever_ready = False
        self._n = workers
        self._broken: PoolBroken | None = None
        self._lock = threading.Lock()
        self._queue: deque = deque()  # (future, fn, args, deaths) waiting for a worker
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        self._workers = [self._spawn() for _ in range(workers)]
        self._thread = threading.Thread(target=self._supervise, name="wsloc-pool-supervisor", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public

    def submit(self, fn, *args) -> Future:
        """Queue ``fn(*args)``; returns a :class:`concurrent.futures.Future` of its result."""
        future: Future = Future()
        with self._lock:
            if self._broken is not None:
                future.set_exception(self._broken)
                return future
            if self._closing:
                raise RuntimeError("cannot submit to a pool that is shutting down")
            self._queue.append((future, fn, args, 0))
        self._wake()
        return future

    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._lock:
            return [w.process.pid for w in self._workers]

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the pool. ``wait``: let the jobs in flight (and, unless ``cancel_futures``,
        the queued ones) finish first; else the workers are killed at once."""
        with self._lock:
            if cancel_futures or not wait:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._closing = True
            if not wait:
                for w in self._workers:
                    if w.job is not None:
                        _fail(w.job[0], RuntimeError("the pool was shut down"))
                        w.job = None
                    w.kill()
        self._wake()
        if wait:
            self._thread.join()
        else:
            self._thread.join(timeout=5)
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.kill()
                w.process.join(timeout=2)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> SupervisedPool:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=exc[0] is None, cancel_futures=exc[0] is not None)

    # ------------------------------------------------------------------ supervisor

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, *self._init)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _supervise(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug here must not hang the caller
            log.exception("segmentation pool supervisor failed")
            self._break(PoolBroken(f"the segmentation pool failed ({type(exc).__name__}: {exc})"))

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closing and not any(w.job for w in self._workers) and (
                        not self._queue or self._broken is not None):
                    for w in self._workers:
                        if w.ready and w.process.is_alive():
                            try:
                                w.conn.send(None)
                            except OSError:
                                pass
                    return
                self._dispatch()
                watch = {}
                for w in self._workers:
                    if not w.conn.closed:
                        watch[w.conn] = w
                    watch[w.process.sentinel] = w
            ready = mp_wait([self._wake_r, *watch], timeout=1.0)
            for obj in ready:
                if obj == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                    continue
                w = watch[obj]
                with self._lock:
                    if w not in self._workers:
                        continue
                    if obj is w.conn:
                        self._receive(w)
                    elif not w.process.is_alive():
                        self._died(w)

    def _dispatch(self) -> None:
        """Give queued jobs to idle ready workers (lock held)."""
        for w in list(self._workers):
            while self._queue and w.ready and w.job is None and w in self._workers:
                future, fn, args, deaths = self._queue.popleft()
                if not future.running() and not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued (a job queued again is running already)
                w.job = (future, fn, args, deaths)
                try:
                    w.conn.send((fn, args))
                except (OSError, EOFError):
                    self._died(w)  # it died before or while receiving the job
                except Exception as exc:  # the job cannot be pickled: its own fault
                    w.job = None
                    _fail(future, exc)

    def _receive(self, w: _Worker) -> None:
        try:
            message = w.conn.recv()
        except (EOFError, OSError):
            self._died(w)
            return
        except Exception as exc:  # a result that cannot be unpickled here
            message = ("error", RuntimeError(f"result could not be read: {type(exc).__name__}: {exc}"))
        kind, value = message
        if kind == "ready":
            w.ready = self._ever_ready = True
            self._start_failures = 0
            return
        job, w.job = w.job, None
        if job is None:  # pragma: no cover - a reply nobody asked for
            return
        if kind == "ok":
            _succeed(job[0], value)
        else:
            _fail(job[0], value)

    def _died(self, w: _Worker) -> None:
        """Replace a dead worker; queue its job again or fail it (lock held)."""
        if w not in self._workers:
            return
        w.kill()
        w.process.join(timeout=1)
        code = w.process.exitcode
        self._workers.remove(w)
        if self._closing and not self._queue and w.job is None:
            return
        self.deaths += 1
        if not w.ready:
            self._start_failures += 1
        log.warning("a segmentation process (pid %s) died (exit code %s); starting another", w.process.pid, code)
        if w.job is not None:
            future, fn, args, deaths = w.job
            w.job = None
            deaths += 1
            if deaths >= self.max_deaths:
                _fail(future, WorkerDied(f"the segmentation process died {deaths} times on this job "
                                         f"(last exit code {code}; out of memory?)"))
            else:
                self._queue.appendleft((future, fn, args, deaths))
        # never ready: the processes cannot start at all (stop at once); ready before: they are
        # being killed from outside (go on longer, but not forever)
        limit = self.max_start_failures * (3 * self._n if self._ever_ready else 1)
        if self._start_failures >= limit:
            self._break(PoolBroken(
                f"the segmentation processes die before they start ({self._start_failures} in a row, last exit "
                f"code {code}); run with --segment-workers 0 to see why (a script using wsloc.run needs the "
                f"`if __name__ == \"__main__\":` guard of multiprocessing)"), locked=True)
            return
        self._workers.append(self._spawn())

    def _break(self, error: PoolBroken, locked: bool = False) -> None:
        def fail_all():
            self._broken = error
            while self._queue:
                _fail(self._queue.popleft()[0], error)
            for w in self._workers:
                if w.job is not None:
                    _fail(w.job[0], error)
                    w.job = None
            self._closing = True

        if locked:
            fail_all()
        else:
            with self._lock:
                fail_all()


def _succeed(future: Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)

