"""Shared fixtures of the localizer/run tests: a tiny deterministic classifier and small datasets.

``tiny_classifier`` is also the ``--model test_run_helpers:tiny_classifier`` factory the
command-line tests pass to ``wsloc localize`` (with ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from wsloc.models import Preprocess, load_classifier

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
NUM_CLASSES = 10


class TinyNet(nn.Module):
    """conv-relu-conv-relu-GAP-linear on 32x32 inputs: [N, 3, 32, 32] -> [N, 10] logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, NUM_CLASSES)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def tiny_classifier():
    """A random but fixed (seed 0) :class:`TinyNet` as a wsloc Classifier."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    net = TinyNet()
    torch.random.set_rng_state(gen_state)
    return load_classifier(net, preprocess=Preprocess((32, 32)),
                           class_names=tuple(f"class{i}" for i in range(NUM_CLASSES)))


def scene(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """uint8 [h, w, 3]: a textured background with one coloured rectangle."""
    rng = np.random.default_rng(seed)
    img = (rng.integers(0, 60, (h, w, 3)) + rng.integers(0, 120, 3)).astype(np.uint8)
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    y1, x1 = y0 + rng.integers(h // 4, h // 2), x0 + rng.integers(w // 4, w // 2)
    img[y0:y1, x0:x1] = rng.integers(130, 256, 3).astype(np.uint8)
    return img


def make_folder(root: Path, n: int, h: int = 48, w: int = 64) -> Path:
    """``n`` PNG scenes ``img000.png``... in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / f"img{i:03d}.png"), cv2.cvtColor(scene(i, h, w), cv2.COLOR_RGB2BGR))
    return root


BAD_KINDS = ("corrupt", "empty", "missing", "tiny")


def make_coco(root: Path, n_good: int, bad=BAD_KINDS) -> Path:
    """A COCO dataset of ``n_good`` scenes with bad entries interleaved (``bad``: any of
    "corrupt" (a truncated JPEG), "empty" (0 bytes), "missing" (no file), "tiny" (1x1 image));
    returns the JSON path."""
    images_dir = make_folder(root / "images", n_good)
    names = [f"img{i:03d}.png" for i in range(n_good)]
    files = {"corrupt": "corrupt.jpg", "empty": "empty.jpg", "missing": "missing.jpg", "tiny": "dot.png"}
    if "corrupt" in bad:
        good_jpeg = cv2.imencode(".jpg", scene(99))[1].tobytes()
        (images_dir / "corrupt.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    if "empty" in bad:
        (images_dir / "empty.jpg").write_bytes(b"")
    if "tiny" in bad:
        cv2.imwrite(str(images_dir / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    for k, kind in enumerate(bad):
        names.insert(1 + 2 * k, files[kind])
    images = [{"id": 100 + i, "file_name": name, "width": 64, "height": 48} for i, name in enumerate(names)]
    annotations = [{"id": i + 1, "image_id": im["id"], "category_id": i % NUM_CLASSES, "bbox": [4, 4, 20, 16]}
                   for i, im in enumerate(images)]
    categories = [{"id": c, "name": f"class{c}"} for c in range(NUM_CLASSES)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def cli_env() -> dict:
    """Environment for ``python -m wsloc`` subprocesses that can import the tiny model."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


PYTHON = sys.executable
TINY = "test_run_helpers:tiny_classifier"
