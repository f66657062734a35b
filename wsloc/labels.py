"""Label spaces: a dataset's categories as sets of the classifier's (ImageNet) classes.

A :class:`ClassMap` says, for each dataset category, which classifier classes are that
category or a kind of it (COCO "dog" -> the 118 dog breeds). With one, the classifier's logits
``[N, C]`` are *folded* into one score per category (:meth:`ClassMap.fold`):

* ``"max"`` (the default): the category's logit is its best member's logit, and its
  probability that member's softmax probability. Every category then competes like one
  class, however many members it has, and the saliency map explained is exactly the map of
  the class whose score the category carries.
* ``"logsumexp"``: the category's logit is ``log sum exp`` of its members' logits, so its
  probability is the *sum* of its members' softmax probabilities (the classifier's
  probability of the set). This favours categories with many members (118 dog breeds
  against one "banana"): a category can win on many small shares.

Measured on coco2017-masks-dev (Lite0; ``scripts/bench_masks.py --folds``): the top-1
category is one annotated in the image for 72.9 % of the 140 images with a mapped category
with ``max``, 71.4 % with ``logsumexp`` (top-5: 93.6 % vs 89.3 %); hence ``max``.

In both, the map of a category is the map of its best-scoring member (the largest logit).
Categories without any member are never predicted (:attr:`ClassMap.unmapped`).

Sources: the ``imagenet_classes`` field of a COCO file's categories
(:meth:`ClassMap.from_dataset`), or a file (:meth:`ClassMap.from_file`):

* JSON: ``{"dog": [151, 152, ...], "18": [...]}`` (keys: category names or ids), or a list of
  ``{"id": 18, "name": "dog", "imagenet_classes": [151, ...]}``;
* CSV: rows ``category,indices`` (a category name or id; indices separated by spaces or
  ``;``; a category on several rows gets the union); a first row ``category,...`` is a header.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import numpy as np

from .errors import DatasetError

__all__ = ["ClassMap", "FOLDS", "fold_logits"]

#: How member logits become a category's logit.
FOLDS = ("max", "logsumexp")


@dataclass(frozen=True)
class ClassMap:
    """Dataset categories -> classifier classes.

    Attributes:
        ids: dataset category ids that have at least one member (ascending).
        names: their names.
        members: per category, its classifier class indices (ascending, unique).
        unmapped: ``(id, name)`` of the dataset's categories without a member (never predicted).
        source: where the map came from (for messages).
    """

    ids: tuple
    names: tuple
    members: tuple
    unmapped: tuple = ()
    source: str = "class map"

    # ----------------------------------------------------------------- building

    @classmethod
    def from_entries(cls, entries, source: str = "class map") -> ClassMap:
        """From ``[{"id": int, "name": str, "imagenet_classes": [int, ...]}, ...]`` (the form
        :meth:`to_entries` gives and ``LocalizerConfig.class_map`` stores).

        Raises:
            DatasetError: malformed entries, a repeated id, or no category with a member.
        """
        if not isinstance(entries, (list, tuple)):
            raise DatasetError(f"{source}: expected a list of categories, got {type(entries).__name__}")
        mapped, unmapped, seen = [], [], set()
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "id" not in e:
                raise DatasetError(f"{source}: category {i} is not an object with an 'id'")
            cid = _int(e["id"], f"{source}: category {i} id")
            if cid in seen:
                raise DatasetError(f"{source}: category id {cid} appears twice")
            seen.add(cid)
            name = str(e.get("name", cid))
            raw = e.get("imagenet_classes") or []
            if not isinstance(raw, (list, tuple)):
                raise DatasetError(f"{source}: category {name!r}: imagenet_classes must be a list of integers")
            members = tuple(sorted({_int(v, f"{source}: category {name!r} class") for v in raw}))
            if any(v < 0 for v in members):
                raise DatasetError(f"{source}: category {name!r}: negative class index {min(members)}")
            (mapped if members else unmapped).append((cid, name, members))
        if not mapped:
            raise DatasetError(f"{source}: none of the {len(entries)} categories has a classifier (ImageNet) "
                               "class, so nothing could be predicted; give a class map with --class-map FILE")
        mapped.sort()
        unmapped.sort()
        return cls(ids=tuple(c for c, _, _ in mapped), names=tuple(n for _, n, _ in mapped),
                   members=tuple(m for _, _, m in mapped), unmapped=tuple((c, n) for c, n, _ in unmapped),
                   source=source)

    @classmethod
    def from_dataset(cls, dataset) -> ClassMap | None:
        """From the ``imagenet_classes`` field of a COCO dataset's categories; None when no
        category carries the field (or the dataset is not a COCO file).

        Raises:
            DatasetError: the field is there but empty for every category.
        """
        coco = getattr(dataset, "coco", None)
        cats = coco.dataset.get("categories") if coco is not None else None
        if not cats or not any(isinstance(c, dict) and "imagenet_classes" in c for c in cats):
            return None
        source = f"{getattr(dataset, 'ann_file', 'annotations')} (categories' imagenet_classes)"
        return cls.from_entries([{"id": c["id"], "name": c.get("name", c["id"]),
                                  "imagenet_classes": c.get("imagenet_classes") or []} for c in cats], source)

    @classmethod
    def from_file(cls, path, categories: dict | None = None) -> ClassMap:
        """From a JSON or CSV file (see the module doc).

        Args:
            path: the file.
            categories: ``{id: name}`` of the dataset; its categories absent from the file are
                unmapped. Without it, integer keys are ids and other keys get ids 1, 2, ...
                in file order.

        Raises:
            DatasetError: unreadable file, a category not in ``categories``, bad indices.
        """
        path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: class map file not found")
        try:
            with open(path, "r", encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: cannot read the class map ({exc})") from None
        pairs = _json_pairs(text, path) if path.lower().endswith(".json") or text.lstrip()[:1] in "[{" \
            else _csv_pairs(text, path)
        by_name = {str(n): int(c) for c, n in (categories or {}).items()}
        chosen: dict[int, set] = {}
        names: dict[int, str] = dict((int(c), str(n)) for c, n in (categories or {}).items())
        next_id = 1
        for key, values in pairs:
            key = str(key).strip()
            if categories:
                cid = int(key) if _is_int(key) and int(key) in names else by_name.get(key)
                if cid is None:
                    raise DatasetError(f"{path}: category {key!r} is not one of the dataset's categories")
            elif _is_int(key):
                cid = int(key)
                names.setdefault(cid, key)
            else:
                while next_id in names:
                    next_id += 1
                cid = by_name.setdefault(key, next_id)
                names.setdefault(cid, key)
            chosen.setdefault(cid, set()).update(values)
        entries = [{"id": c, "name": names[c], "imagenet_classes": sorted(chosen.get(c, ()))} for c in sorted(names)]
        return cls.from_entries(entries, path)

    def to_entries(self) -> list[dict]:
        """JSON-able list of every category (mapped and unmapped), ascending by id."""
        rows = [{"id": c, "name": n, "imagenet_classes": list(m)} for c, n, m in zip(self.ids, self.names, self.members)]
        rows += [{"id": c, "name": n, "imagenet_classes": []} for c, n in self.unmapped]
        return sorted(rows, key=lambda r: r["id"])

    # ----------------------------------------------------------------- use

    def check(self, num_classes: int) -> None:
        """Raise DatasetError when a member is not a class of a ``num_classes``-way classifier."""
        top = max(max(m) for m in self.members)
        if top >= num_classes:
            bad = next(n for n, m in zip(self.names, self.members) if max(m) >= num_classes)
            raise DatasetError(f"{self.source}: category {bad!r} lists class {top}, but the classifier has only "
                               f"{num_classes} classes (0..{num_classes - 1})")

    def describe(self, fold: str = "max") -> str:
        """One line: how many categories are mapped, the fold, and the never-predicted ones."""
        n_cls = len({v for m in self.members for v in m})
        line = (f"class map ({self.source}): {len(self.ids)} of {len(self.ids) + len(self.unmapped)} categories "
                f"mapped to {n_cls} classifier classes, fold {fold}")
        if self.unmapped:
            line += f"; never predicted (no classifier class): {', '.join(n for _, n in self.unmapped)}"
        return line

    def position(self, category_id: int) -> int | None:
        """Index of ``category_id`` in :attr:`ids` (None when unmapped or unknown)."""
        try:
            return self.ids.index(int(category_id))
        except ValueError:
            return None

    def fold(self, logits, how: str = "max"):
        """See :func:`fold_logits`."""
        return fold_logits(logits, self.members, how)


def fold_logits(logits, members, how: str = "max"):
    """Fold classifier logits into category scores.

    Args:
        logits: float torch tensor ``[N, C]`` (all the classifier's classes).
        members: per category M, a non-empty sequence of class indices in ``[0, C)``.
        how: ``"max"`` or ``"logsumexp"`` (see the module doc).

    Returns:
        ``(folded, probs, best)``: float ``[N, M]`` category logits; float ``[N, M]`` category
        probabilities ``exp(folded - logsumexp(logits))`` (max: the best member's softmax
        probability; logsumexp: the sum of the members'); int64 ``[N, M]`` the best member
        (largest logit; the lowest index on ties) of each category.
    """
    import torch

    if how not in FOLDS:
        raise ValueError(f"fold {how!r}: expected one of {', '.join(FOLDS)}")
    width = max(len(m) for m in members)
    index = torch.zeros((len(members), width), dtype=torch.int64)
    valid = torch.zeros((len(members), width), dtype=torch.bool)
    for i, m in enumerate(members):
        index[i, :len(m)] = torch.as_tensor(list(m), dtype=torch.int64)
        valid[i, :len(m)] = True
    index, valid = index.to(logits.device), valid.to(logits.device)
    logits = logits.float()
    vals = logits[:, index]  # [N, M, L]
    vals = vals.masked_fill(~valid, float("-inf"))
    best_val, best_at = vals.max(dim=2)
    best = index[torch.arange(len(members), device=logits.device), best_at]  # [N, M]
    folded = best_val if how == "max" else torch.logsumexp(vals, dim=2)
    probs = torch.exp(folded - torch.logsumexp(logits, dim=1, keepdim=True))
    return folded, probs, best


def _int(v, what: str) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and _is_int(v))
                                   or (isinstance(v, float) and v.is_integer())):
        raise DatasetError(f"{what}: {v!r} is not an integer")
    return int(v)


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _json_pairs(text: str, path: str) -> list[tuple[str, list[int]]]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = []
        for i, e in enumerate(data):
            if not isinstance(e, dict) or ("id" not in e and "name" not in e):
                raise DatasetError(f"{path}: entry {i} is not an object with an 'id' or 'name'")
            items.append((e["id"] if "id" in e else e["name"], e.get("imagenet_classes", [])))
    else:
        raise DatasetError(f"{path}: expected a JSON object or list, got {type(data).__name__}")
    out = []
    for key, values in items:
        if isinstance(values, (int, str)) and not isinstance(values, bool):
            values = [values]
        if not isinstance(values, list):
            raise DatasetError(f"{path}: category {key!r}: expected a list of class indices")
        out.append((str(key), [_int(v, f"{path}: category {key!r} class") for v in values]))
    return out


def _csv_pairs(text: str, path: str) -> list[tuple[str, list[int]]]:
    out = []
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise DatasetError(f"{path}: line {n}: expected 'category,indices'")
        key, rest = row[0].strip(), " ".join(row[1:]).replace(";", " ").split()
        if n == 1 and not all(_is_int(v) for v in rest):
            continue  # a header
        out.append((key, [_int(v, f"{path}: line {n} class") for v in rest]))
    return out

