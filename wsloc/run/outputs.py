"""The files of a localization run, and how they are written so that nothing is lost.

A run's folder (one per shard; ``wsloc merge`` joins shard folders into the same layout):

============== ====================================================================
images.jsonl   one JSON line per image, in dataset order, appended and fsync'ed as
               images finish (the run's record of truth; ``--resume`` reads it)
results.json   COCO results list (``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
               ``score``, ``rank``, ``segmentation`` RLE), dataset order then rank;
               written when the run completes
errors.json    list of the images that failed: index, image_id, file_name, path,
               stage ("decode", "segment"), reason
config.json    the localizer configuration, the dataset, the shard, library versions
summary.json   counts, images/s, stage times, memory
metrics.json   the evaluation of results.json (when the dataset has ground truth)
overlays/      PNG pictures (``--overlays N``)
.wsloc.lock    the lock a live run holds on the folder (:mod:`wsloc.run.lock`)
============== ====================================================================

Every file but ``images.jsonl`` is written whole to a temporary file in the same folder,
fsync'ed, then renamed over the target (``os.replace`` is atomic), so a crash leaves either
the old or the new file, never a torn one. ``images.jsonl`` is appended line by line and
fsync'ed after every group of lines; a torn last line (a crash mid-write) is cut off when
the file is read back (:func:`read_jsonl`). The text of every record is a pure function of
the record (fixed key order, fixed separators), so a resumed run writes the same bytes as an
uninterrupted one. Files are created with the permissions the umask gives (0644 under the usual
022), the temporary ones too.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator

IMAGES = "images.jsonl"
RESULTS = "results.json"
ERRORS = "errors.json"
CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.json"
OVERLAYS = "overlays"


def overlay_path(out_dir: str, item: dict) -> str:
    """``out_dir/overlays/IIIIIII_<file stem>.png`` of the image ``item`` (``index``, ``file_name``:
    a record of ``images.jsonl`` or the runner's item); the stem keeps letters, digits and
    ``-_.`` (others become ``_``), at most 80 characters."""
    stem = os.path.splitext(os.path.basename(item["file_name"] or str(item["index"])))[0]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80]
    return os.path.join(out_dir, OVERLAYS, f"{item['index']:07d}_{safe}.png")


def dumps(obj) -> str:
    """Compact, deterministic JSON text of one record (no NaN allowed)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _create_temp(folder: str, name: str) -> tuple[int, str]:
    """A new file ``folder/.name.XXXX.tmp`` created with mode 0666 less the umask (as ``open``
    does; ``tempfile.mkstemp`` would make it 0600, unlike ``images.jsonl`` beside it)."""
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def atomic_write(path: str, chunks: Iterable[str | bytes]) -> str:
    """Write ``chunks`` to ``path`` atomically: temp file in the same folder, fsync, os.replace."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _create_temp(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)
    return path


def write_json(path: str, obj, indent: int | None = 1) -> str:
    """Atomically write one JSON document (sorted keys are not imposed: dicts keep their order)."""
    return atomic_write(path, [json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False), "\n"])


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json_list(path: str, items: Iterable) -> int:
    """Atomically write a JSON list, one item per line (streams: memory does not grow). Returns the count."""
    count = 0

    def chunks() -> Iterator[str]:
        nonlocal count
        yield "["
        for item in items:
            yield ("\n" if count == 0 else ",\n") + dumps(item)
            count += 1
        yield "\n]\n"

    atomic_write(path, chunks())
    return count


def read_jsonl(path: str, repair: bool = False) -> list[dict]:
    """All complete records of a JSONL file; a torn last line is ignored (and cut off if ``repair``).

    Raises:
        ValueError: a line other than the last is not valid JSON (the file is damaged
            beyond a crash mid-write).
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    good_end = data.rfind(b"\n") + 1  # everything after the last newline is a torn line
    records = []
    lines = data[:good_end].split(b"\n")[:-1]
    for n, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {n + 1} is not valid JSON ({exc})") from None
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return records


def iter_jsonl(path: str) -> Iterator[dict]:
    """Stream the complete records of a JSONL file (a torn last line is skipped)."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return
            yield json.loads(line)


class JsonlWriter:
    """Append records to a JSONL file; :meth:`write` flushes and fsyncs before returning."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._f = open(path, "ab")

    def write(self, records: Iterable[dict]) -> int:
        data = b"".join((dumps(r) + "\n").encode("utf-8") for r in records)
        if data:
            self._f.write(data)
            self._f.flush()
            os.fsync(self._f.fileno())
        return len(data)

    def close(self) -> None:
        """Flush, fsync and close (raises the ``OSError`` of a write that did not reach the disk)."""
        if not self._f.closed:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            finally:
                self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def coco_results(records: Iterable[dict]) -> Iterator[dict]:
    """COCO results entries of per-image records (successful ones), in record order then rank."""
    keys = ("image_id", "category_id", "bbox", "score", "rank", "segmentation")
    for rec in records:
        if rec.get("status") != "ok":
            continue
        for r in rec["results"]:
            yield {k: (rec["image_id"] if k == "image_id" else r[k]) for k in keys}


def error_entries(records: Iterable[dict]) -> Iterator[dict]:
    for rec in records:
        if rec.get("status") == "error":
            yield {k: rec.get(k) for k in ("index", "image_id", "file_name", "path", "stage", "reason")}


def finalize(out_dir: str, records_factory) -> dict:
    """Write ``results.json`` and ``errors.json`` of ``out_dir`` from per-image records.

    Args:
        records_factory: called with no argument, returns an iterator over all per-image
            records in dataset order (called twice: results, then errors; streamed).

    Returns:
        ``{"images": n, "ok": n_ok, "errors": n_err, "results": n_entries}``.
    """
    counts = {"images": 0, "ok": 0, "errors": 0}

    def counted():
        for rec in records_factory():
            counts["images"] += 1
            counts["ok" if rec.get("status") == "ok" else "errors"] += 1
            yield rec

    n_results = write_json_list(os.path.join(out_dir, RESULTS), coco_results(counted()))
    write_json_list(os.path.join(out_dir, ERRORS), error_entries(records_factory()))
    counts["results"] = n_results
    return counts
