"""Reading weight files without running code from them, and checking their published hashes.

A ``.pth`` file is a pickle: unpickled in full by ``torch.load`` with ``weights_only`` off (what
``torch.hub.load_state_dict_from_url`` and torchvision's ``WeightsEnum.get_state_dict`` do)
it can run any code on the machine. Every weight file wsloc reads goes through
:func:`load_state_dict`, which uses ``torch.load(..., weights_only=True)`` (tensors,
containers and plain numbers only; anything else is refused before it is built) and checks
the file's SHA-256 first when a hash is known:

* pinned: the full digest of a file wsloc knows (the Lite0 package file);
* in the name: torch hub / torchvision files are named ``<name>-<first hex digits of the
  SHA-256>.<ext>`` (``resnet18-f37072fd.pth``); :func:`hub_state_dict` checks that prefix
  for files found in the hub cache, and verifies downloads the same way.

Torchvision's builders load their weights themselves; :func:`safe_torchvision_weights`
makes them load through :func:`hub_state_dict` instead for the duration of one build.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Mapping
from urllib.parse import urlparse

import torch

from ..errors import ModelError

__all__ = ["sha256_of", "check_sha256", "hash_in_name", "load_state_dict", "hub_cache_path", "hub_state_dict",
           "safe_torchvision_weights"]

# torch hub's naming rule for files that carry their hash: "<name>-<hex prefix>.<ext>".
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_PATCH_LOCK = threading.RLock()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_in_name(file_name: str) -> str | None:
    """The SHA-256 prefix a torch hub file name carries (``resnet18-f37072fd.pth`` -> ``"f37072fd"``), or None."""
    m = _HASH_IN_NAME.search(os.path.basename(file_name))
    return m.group(1) if m else None


def check_sha256(path: str | os.PathLike, expected: str, what: str = "weights") -> None:
    """Raise :class:`ModelError` unless the file's SHA-256 starts with ``expected`` (a full digest or a prefix)."""
    actual = sha256_of(path)
    if not actual.startswith(expected.lower()):
        raise ModelError(f"{os.fspath(path)}: refused: the {what} file's SHA-256 is {actual[:16]}..., "
                         f"expected {expected[:16]}{'...' if len(expected) > 16 else ''}; the file is corrupt "
                         f"or not the published one (delete it, or pass a state dict file of your own)")


def load_state_dict(path: str | os.PathLike, what: str = "weights", sha256: str | None = None) -> dict:
    """A state dict from a file, read with ``weights_only=True`` after an optional hash check.

    Args:
        path: a file written by ``torch.save(model.state_dict(), path)`` (a dict holding it under
            ``"state_dict"`` is unwrapped).
        what: the model, for messages.
        sha256: the expected SHA-256 (full or a prefix), or None for no check.

    Returns:
        dict name -> tensor, on the CPU.

    Raises:
        ModelError: missing file, hash mismatch, a file that holds anything but tensors and plain
            containers (refused before it is unpickled into objects), or no state dict inside.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: weights file not found")
    if sha256 is not None:
        check_sha256(path, sha256, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for forbidden globals, RuntimeError/EOFError for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: refused: not a plain weights file for {what} (torch.load with "
                         f"weights_only=True rejected it: {first})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not (isinstance(state, Mapping) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ModelError(f"{path}: not a state dict for {what} (expected a dict of parameter name -> tensor, "
                         f"got {type(state).__name__})")
    return dict(state)


def hub_cache_path(url: str) -> str:
    """Where torch hub keeps the file of ``url``: ``<torch hub dir>/checkpoints/<file name>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def hub_state_dict(url: str, progress: bool = True, what: str = "weights") -> dict:
    """The state dict of ``url`` from the torch hub cache, downloading it there when absent.

    The file's SHA-256 must start with the prefix in its name (when the name carries one); a
    download is checked the same way by ``torch.hub.download_url_to_file`` before it is kept.
    Network errors propagate unchanged (the caller says where to put the file).
    """
    path = hub_cache_path(url)
    prefix = hash_in_name(path)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, prefix, progress=progress)
    return load_state_dict(path, what, sha256=prefix)


@contextlib.contextmanager
def safe_torchvision_weights(weights_enum: type):
    """Within the block, ``weights_enum`` members load through :func:`hub_state_dict`.

    Torchvision builders call ``weights.get_state_dict(progress=..., check_hash=True)``, which
    unpickles the cached file with ``weights_only=False`` and checks no hash for a cached file.
    This shadows that method on the one weights class (not on torchvision's base class) and
    removes the shadow on exit.
    """

    def get_state_dict(self, *args, progress: bool = True, **kwargs):
        return hub_state_dict(self.url, progress=progress, what=str(self))

    with _PATCH_LOCK:
        previous = weights_enum.__dict__.get("get_state_dict")
        setattr(weights_enum, "get_state_dict", get_state_dict)
        try:
            yield
        finally:
            if previous is None:
                delattr(weights_enum, "get_state_dict")
            else:
                setattr(weights_enum, "get_state_dict", previous)
