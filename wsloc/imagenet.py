"""The ImageNet-1k class index (wnids and names), available offline.

The index comes from the ``timm`` package (``timm.data.ImageNetInfo``), which ships it
as package data. Class ``i`` is the i-th wnid in sorted order, the convention of
torchvision and of every ImageNet-1k classifier wsloc loads.
"""

from __future__ import annotations

from functools import lru_cache

NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def _info():
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    if info.num_classes() != NUM_CLASSES:  # pragma: no cover - a broken timm install
        raise RuntimeError(f"timm's ImageNet index has {info.num_classes()} classes, expected 1000")
    return info


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 WordNet ids in class-index order, e.g. ``wnids()[281] == 'n02123045'``."""
    info = _info()
    return tuple(info.index_to_label_name(i) for i in range(NUM_CLASSES))


@lru_cache(maxsize=1)
def full_names() -> tuple[str, ...]:
    """The 1000 full descriptions, e.g. ``'tabby, tabby cat'``."""
    info = _info()
    return tuple(info.index_to_description(i) for i in range(NUM_CLASSES))


@lru_cache(maxsize=1)
def names() -> tuple[str, ...]:
    """The 1000 short names (first synonym of each description), e.g. ``'tabby'``."""
    return tuple(n.split(",")[0].strip() for n in full_names())


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}


def wnid_to_index(wnid: str) -> int:
    """Class index of a wnid; ``KeyError`` naming it if it is not an ImageNet-1k class."""
    try:
        return _wnid_index()[wnid]
    except KeyError:
        raise KeyError(f"{wnid!r} is not an ImageNet-1k wnid") from None
