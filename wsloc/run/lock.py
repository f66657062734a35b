"""An exclusive lock on a run folder, so that two runs never write one folder at once.

The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the file ``.wsloc.lock`` in the folder,
held for the run's life: the kernel releases it when the process exits, however it exits
(a crash, SIGKILL, the out-of-memory killer), so a stale lock cannot block a later
``--resume``. The holder writes its pid, host, start time and command into the file, so a
refused run can say who holds the folder. The file itself stays (deleting it would let a
third process lock a new file while the second still holds the old one); only the lock
matters, never the file's existence.

Within one process the lock is re-entrant (``wsloc localize`` takes it before loading the
model, so a second run is refused at once, and :func:`wsloc.run.run_dataset` takes it again).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time

from ..errors import WslocError

LOCK_NAME = ".wsloc.lock"

_held: dict[str, list] = {}  # real path of the lock file -> [fd, count]
_guard = threading.Lock()


class RunFolderBusy(WslocError):
    """Another process holds the run folder's lock."""


def folder_error(folder: str, exc: OSError) -> WslocError:
    """A one-line :class:`WslocError` for an output folder that cannot be created or written."""
    what = {errno.EEXIST: "exists and is not a folder", errno.ENOTDIR: "a part of the path is a file",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
            errno.EDQUOT: "disk quota exceeded"}.get(exc.errno, exc.strerror or str(exc))
    return WslocError(f"--out {folder}: cannot write there ({what})")


class RunLock:
    """The lock of ``folder`` (created if needed); use as a context manager or acquire/release.

    Raises (from :meth:`acquire`):
        RunFolderBusy: another process holds it (the message names the holder).
        WslocError: the folder cannot be created or written (a file, no permission, read-only).
    """

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._key: str | None = None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            os.makedirs(self.folder, exist_ok=True)
            key = os.path.realpath(self.path)
        except OSError as exc:
            raise folder_error(self.folder, exc) from None
        with _guard:
            if key in _held:
                _held[key][1] += 1
                self._key = key
                return self
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise folder_error(self.folder, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunFolderBusy(f"{self.folder} is in use by another wsloc run ({holder}); wait for it "
                                        "to finish or use another --out") from None
                raise folder_error(self.folder, exc) from None
            try:
                info = {"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": sys.argv}
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
            except OSError as exc:
                os.close(fd)
                raise folder_error(self.folder, exc) from None
            _held[key] = [fd, 1]
            self._key = key
        return self

    def release(self) -> None:
        """Give the lock back (the outermost release of this process unlocks the file)."""
        if self._key is None:
            return
        with _guard:
            entry = _held.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _held[self._key]
                    try:
                        os.ftruncate(entry[0], 0)
                    except OSError:
                        pass
                    os.close(entry[0])  # closing the descriptor releases the flock
        self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
