"""Continuing a killed run (``--resume``) without recomputing finished images.

What is finished is what ``images.jsonl`` holds: one complete line per image, written in
dataset order and fsync'ed. On resume the torn last line of a crash is cut off, the stored
configuration is compared with the new one (a run cannot be continued with other options),
and the batches that still hold an unfinished image are run again *whole*, so every image is
computed in the same batch as in an uninterrupted run; only the lines not yet written are
appended.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from ..config import differences
from ..errors import WslocError
from .outputs import CONFIG, IMAGES, read_json, read_jsonl

# Entries of config.json that must be equal for a run to be continued or shards merged.
IDENTITY_KEYS = ("localizer", "dataset", "shard", "inputs")


@dataclass
class ResumeState:
    """What a run folder already holds.

    Attributes:
        done: dataset indices with a line in ``images.jsonl``.
        n_ok, n_errors: how many of them succeeded / failed.
    """

    done: set[int] = field(default_factory=set)
    n_ok: int = 0
    n_errors: int = 0


def config_differences(old: dict, new: dict, keys=IDENTITY_KEYS) -> list[str]:
    """``"path: old -> new"`` for every dotted key path where two run configurations differ, among the
    entries that decide results (``localizer`` is :meth:`wsloc.localizer.LocalizerConfig.result_fields`,
    nested: ``localizer.segment.q_fg: 40.0 -> 50.0``)."""
    return [d for k in keys for d in differences(old.get(k), new.get(k), k)]


def image_list(dataset) -> list[tuple]:
    """``(image_id, file_name, width, height)`` of every sample of ``dataset``, in order."""
    out = []
    for i in range(len(dataset)):
        sample = dataset[i]
        out.append((sample.image_id, sample.file_name, int(getattr(sample, "width", -1) or -1),
                    int(getattr(sample, "height", -1) or -1)))
    return out


def _hash_file(h, path: str) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def dataset_identity(dataset, path: str, images: list[tuple] | None = None) -> dict:
    """What identifies a dataset's content, for ``config.json``: ``annotations_sha256`` (the
    annotation file's bytes; for a VOC folder, every XML file's name and bytes; None for a
    plain image folder) and ``images_sha256`` (the ids and file names of the image list, in
    order). A run is resumed, and shards are merged, only when both are equal, so a dataset
    edited in place (same path, same count) is noticed."""
    ann = None
    p = os.path.abspath(path)
    if os.path.isfile(p):
        h = hashlib.sha256()
        _hash_file(h, p)
        ann = h.hexdigest()
    elif getattr(dataset, "ann_dir", None) and os.path.isdir(dataset.ann_dir):
        h = hashlib.sha256()
        for name in sorted(f for f in os.listdir(dataset.ann_dir) if f.lower().endswith(".xml")):
            h.update(name.encode("utf-8") + b"\0")
            _hash_file(h, os.path.join(dataset.ann_dir, name))
            h.update(b"\0")
        ann = h.hexdigest()
    h = hashlib.sha256()
    for image_id, file_name, *_ in (image_list(dataset) if images is None else images):
        h.update(f"{image_id!r}\t{file_name}\n".encode("utf-8"))
    return {"annotations_sha256": ann, "images_sha256": h.hexdigest()}


def check_records(path: str, records: list[dict], expected: set[int] | None = None) -> None:
    """Refuse (:class:`WslocError`) an ``images.jsonl`` with two lines for one image, or lines
    for images that are not this run's (``expected``): written by two runs at once, or by
    another split of the dataset."""
    seen: dict[int, int] = {}
    for n, rec in enumerate(records):
        try:
            index = int(rec["index"])
        except (KeyError, TypeError, ValueError):
            raise WslocError(f"{path}: line {n + 1} has no image index; use --overwrite") from None
        if index in seen:
            raise WslocError(f"{path}: lines {seen[index] + 1} and {n + 1} are both for image index {index} "
                             "(two runs wrote this folder at once?); use --overwrite")
        seen[index] = n
        if expected is not None and index not in expected:
            raise WslocError(f"{path}: line {n + 1} is for image index {index}, which is not part of this run "
                             "(another --shard or --limit?); use --overwrite or another --out")


def check_split(out_dir: str, count: int) -> None:
    """Refuse to run a ``count``-way split into ``out_dir`` when it holds shards of another
    split (another torchrun process count or ``--shard I/N``): they could not be merged, and
    this run would recompute everything first."""
    import glob

    from .shard import SHARDS_DIR

    others = sorted({int(os.path.basename(d).rsplit("-of-", 1)[1])
                     for d in glob.glob(os.path.join(out_dir, SHARDS_DIR, "*-of-*"))
                     if os.path.isdir(d) and os.path.basename(d).rsplit("-of-", 1)[1].isdigit()})
    others = [n for n in others if n != count]
    cfg_path = os.path.join(out_dir, CONFIG)
    if count > 1 and not others and os.path.exists(cfg_path):
        try:
            cfg = read_json(cfg_path)
        except (OSError, ValueError):
            cfg = {}
        if "merged_from" not in cfg and list(cfg.get("shard", [0, 1])) == [0, 1]:
            raise WslocError(f"{out_dir} holds a single-process run; this run is split {count} ways: resume it "
                             "with a single process, or use another --out")
    if others:
        held = " and ".join(f"{n}-way" for n in others)
        how = f"{count} processes/shards" if count > 1 else "a single process"
        raise WslocError(f"{out_dir} holds the shards of a {held} split; this run is {how}: resume it with the "
                         f"same split (torchrun --nproc_per_node / --shard I/N), or use another --out")


def holds_run(run_dir: str) -> bool:
    """Whether ``run_dir`` already holds (part of) a run."""
    return os.path.exists(os.path.join(run_dir, IMAGES)) or os.path.exists(os.path.join(run_dir, CONFIG))


def refuse_existing(run_dir: str, resume: bool, overwrite: bool) -> None:
    """Raise :class:`WslocError` when ``run_dir`` holds a run and neither flag says what to do with it."""
    if holds_run(run_dir) and not (resume or overwrite):
        raise WslocError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it")


def prepare(run_dir: str, config: dict, resume: bool, overwrite: bool,
            expected: set[int] | None = None) -> ResumeState:
    """Check ``run_dir`` for a previous run and return what is already done.

    * nothing there: a fresh run;
    * a previous run and ``resume``: its configuration must match ``config`` (else
      :class:`WslocError` listing the differences); its finished images are returned;
    * a previous run and ``overwrite``: its files are removed;
    * a previous run and neither: :class:`WslocError` telling the user to choose;
    * ``resume`` and ``overwrite`` together: :class:`WslocError`.

    ``expected``: the dataset indices of this run; lines for others, and repeated lines, are refused.
    """
    if resume and overwrite:
        raise WslocError("--resume and --overwrite exclude each other: choose one")
    images = os.path.join(run_dir, IMAGES)
    cfg_path = os.path.join(run_dir, CONFIG)
    if not holds_run(run_dir):
        return ResumeState()
    if overwrite:
        from .outputs import ERRORS, METRICS, RESULTS, SUMMARY

        for name in (IMAGES, RESULTS, ERRORS, CONFIG, SUMMARY, METRICS):
            try:
                os.unlink(os.path.join(run_dir, name))
            except FileNotFoundError:
                pass
        import shutil

        from .saved_maps import MAPS

        shutil.rmtree(os.path.join(run_dir, MAPS), ignore_errors=True)  # --save-maps files of the old run
        return ResumeState()
    refuse_existing(run_dir, resume, overwrite)
    if os.path.exists(cfg_path):
        diffs = config_differences(read_json(cfg_path), config)
        changed = [d for d in diffs if d.startswith(("dataset.annotations_sha256", "dataset.images_sha256"))]
        if changed:
            what = " and ".join("its annotations" if "annotations" in d else "its image list" for d in changed)
            raise WslocError(f"{run_dir}: cannot resume: the dataset changed since the run started ({what}: "
                             "another content at the same path); use another --out or --overwrite")
        if diffs:
            raise WslocError(f"{run_dir}: cannot resume with different options ({'; '.join(diffs)}); "
                             "use another --out or --overwrite")
    try:
        records = read_jsonl(images, repair=True)
    except ValueError as exc:
        raise WslocError(f"cannot resume: {exc}") from None
    check_records(images, records, expected)
    state = ResumeState()
    for rec in records:
        state.done.add(int(rec["index"]))
        if rec.get("status") == "ok":
            state.n_ok += 1
        else:
            state.n_errors += 1
    return state
