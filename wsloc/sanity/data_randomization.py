"""The data-randomization test (Adebayo et al. 2018, sec. 3.2) on a data set made here.

If a saliency method explains what the model learned, a model trained on *permuted* labels
(which can only memorise) must give different maps from one trained on the true labels.
Everything is small enough for a CPU:

* :func:`make_shapes`: ``size x size`` RGB images of one filled shape (square, circle,
  triangle, cross) of a random colour, size and place on a smooth random background; the class
  is the shape (colour says nothing about it), the box is the shape's.
* :class:`TinyCNN`: conv(w)-conv(2w)-pool-conv(4w)-pool-conv(4w) with ReLUs (``w = 8`` by
  default), global average pooling and one linear layer (so CAM/Grad-CAM apply).
* :func:`train`: Adam on the training set for ``steps`` minibatches (or until ``max_seconds``),
  seeded: initialisation, minibatch order and the label permutation come from ``seed``.
* :func:`data_randomization_test`: trains the true-label model, a second true-label model with
  another seed (the control: how much maps differ between two honest models) and the
  permuted-label model; computes maps of held-out images for their true class with each and
  reports the similarity (:mod:`wsloc.sanity.similarity`) of true vs control and true vs
  permuted, plus each model's accuracies and the pointing accuracy of its maps (the map's
  maximum inside the shape's box: :func:`wsloc.evaluate.pointing.pointing_game`, tolerance 0).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate.pointing import pointing_game
from .similarity import METRICS, compare_maps

SHAPES = ("square", "circle", "triangle", "cross")
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def coverage(shape: str, cx: float, cy: float, r: float, size: int, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by a filled ``shape`` of half-size ``r`` centred at (cx, cy).

    Continuous coordinates: pixel (row i, column j) is the square [j, j + 1) x [i, i + 1); the
    fraction is measured on a ``supersample`` x ``supersample`` grid of points per pixel.
    Shapes: ``square`` [cx - r, cx + r] x [cy - r, cy + r]; ``circle`` of radius r; ``triangle``
    with apex (cx, cy - r) and base from (cx - r, cy + r) to (cx + r, cy + r); ``cross`` the union
    of two bars of length 2r and width 2r/3. Every shape's bounding box is
    ``[cx - r, cy - r, cx + r, cy + r]``. Returns float32 ``[size, size]`` in [0, 1].
    """
    s = supersample
    t = (np.arange(size * s) + 0.5) / s
    y, x = np.meshgrid(t, t, indexing="ij")
    dx, dy = np.abs(x - cx), np.abs(y - cy)
    if shape == "square":
        inside = (dx <= r) & (dy <= r)
    elif shape == "circle":
        inside = dx * dx + dy * dy <= r * r
    elif shape == "triangle":
        inside = (y <= cy + r) & (dx <= (y - (cy - r)) / 2)
    elif shape == "cross":
        w = r / 3
        inside = ((dx <= r) & (dy <= w)) | ((dx <= w) & (dy <= r))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(size, s, size, s).mean(axis=(1, 3)).astype(np.float32)


def make_shapes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic classification-and-localization set.

    Returns:
        images uint8 ``[n, size, size, 3]`` RGB, labels int64 ``[n]`` (index into :data:`SHAPES`,
        balanced: ``i % 4`` then shuffled), boxes float64 ``[n, 4]`` xyxy of the shape.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPES)).astype(np.int64)
    images = np.zeros((n, size, size, 3), np.uint8)
    boxes = np.zeros((n, 4), np.float64)
    for i in range(n):
        low = rng.uniform(0, 255, (3, 3, 3)).astype(np.float32)  # smooth background: upsampled 3x3 noise
        bg = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        bg = np.clip(bg * 0.6 + rng.normal(0, 8, (size, size, 3)), 0, 255)
        r = rng.uniform(size * 0.16, size * 0.3)
        cx, cy = rng.uniform(r + 1, size - r - 1, 2)
        color = rng.integers(0, 256, 3).astype(np.float32)
        cov = coverage(SHAPES[labels[i]], cx, cy, r, size)[..., None]
        images[i] = np.clip(np.rint(bg * (1 - cov) + color * cov), 0, 255).astype(np.uint8)
        boxes[i] = [cx - r, cy - r, cx + r, cy + r]
    return images, labels, boxes


class TinyCNN(nn.Module):
    """``[N, 3, H, W]`` -> ``[N, num_classes]`` logits; see the module docstring."""

    def __init__(self, num_classes: int = len(SHAPES), width: int = 8):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float32 ``[N, 3, H, W]`` normalised with :data:`MEAN`/:data:`STD`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@dataclass
class TrainedModel:
    """A trained :class:`TinyCNN` and how it went."""

    model: nn.Module
    train_acc: float
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)


def train(images: np.ndarray, labels: np.ndarray, seed: int = 0, steps: int = 1000, batch_size: int = 64,
          lr: float = 3e-3, width: int = 8, max_seconds: float = 300.0) -> TrainedModel:
    """Train a :class:`TinyCNN` on CPU, seeded (reruns give the same weights unless ``max_seconds`` cuts in).

    Returns the model in eval mode with ``requires_grad=False``.
    """
    x = to_tensor(images)
    y = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyCNN(int(y.max()) + 1 if len(y) else len(SHAPES), width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    model.train()
    start, losses, order, pos, done = time.perf_counter(), [], torch.randperm(len(x), generator=gen), 0, 0
    for done in range(1, steps + 1):
        if pos + batch_size > len(x):
            order, pos = torch.randperm(len(x), generator=gen), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if time.perf_counter() - start > max_seconds:
            break
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return TrainedModel(model, accuracy(model, images, labels), done, time.perf_counter() - start, losses)


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on uint8 images ``[N, H, W, 3]``."""
    pred = model(to_tensor(images)).argmax(1).numpy()
    return float((pred == np.asarray(labels)).mean())


def classifier(model: nn.Module, size: int = 32):
    """Wrap a trained :class:`TinyCNN` as a ``wsloc`` ``Classifier`` (for :func:`wsloc.saliency.attribute`)."""
    from ..models import load_classifier
    from ..models.preprocess import Preprocess

    return load_classifier(model, device="cpu", preprocess=Preprocess((size, size), MEAN, STD),
                           class_names=SHAPES)


def pointing(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """bool ``[N]``: the maximum of ``|map|`` ``[N, H, W]`` lies inside the xyxy box ``[N, 4]``.

    The pointing game of :func:`wsloc.evaluate.pointing.pointing_game` with tolerance 0 (on
    32 px images the paper's 15 px would cover most of the image): the first maximum's pixel
    centre lies inside the box.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 1, 4)
    return pointing_game(np.abs(np.asarray(maps)), gt_boxes=list(boxes), tolerance=0)["hits"]


def data_randomization_test(methods: Sequence[str] = ("gradient", "guided_backprop", "grad_cam",
                                                      "integrated_gradients"),
                            n_train: int = 512, n_test: int = 64, size: int = 32, steps: int = 1000,
                            width: int = 8, seed: int = 0, max_seconds: float = 300.0,
                            method_options: dict[str, dict] | None = None) -> dict:
    """Run the test; returns a JSON-able dict.

    Keys: ``models`` (per model: accuracy on the labels it was trained with, accuracy on the
    true labels of the test images, steps, seconds, final loss), ``rows`` (per method and
    comparison: mean over the test images of each similarity metric, see
    :mod:`wsloc.sanity.check` for which maps; and the pointing accuracy of both models' maps),
    ``setup`` (the arguments). Maps are for the true class of each test image;
    ``method_options`` maps a method name to extra :func:`wsloc.saliency.attribute` options.
    """
    from .check import compute_maps

    images, labels, boxes = make_shapes(n_train + n_test, size, seed)
    tr, te = slice(0, n_train), slice(n_train, n_train + n_test)
    perm = np.random.default_rng(seed + 1).permutation(labels[tr])
    runs = {"true": (labels[tr], seed), "true_control": (labels[tr], seed + 100), "permuted": (perm, seed)}
    trained = {k: train(images[tr], y, s, steps, width=width, max_seconds=max_seconds) for k, (y, s) in runs.items()}
    models = {k: {"train_acc": v.train_acc, "test_acc": accuracy(v.model, images[te], labels[te]),
                  "steps": v.steps, "seconds": round(v.seconds, 1),
                  "final_loss": v.losses[-1] if v.losses else None}
              for k, v in trained.items()}
    x = to_tensor(images[te])
    t = torch.as_tensor(labels[te])
    rows = []
    for method in methods:
        maps = {k: compute_maps(classifier(v.model, size), x, t, method,
                                dict((method_options or {}).get(method, {})), 64)
                for k, v in trained.items()}
        for other in ("true_control", "permuted"):
            sim = compare_maps(maps["true"][0], maps[other][0])
            sim["spearman"] = compare_maps(maps["true"][1], maps[other][1])["spearman"]
            row = {"method": method, "compared": f"true vs {other}"}
            row.update({m: float(np.nanmean(sim[m])) for m in METRICS})
            row["pointing_true"] = float(pointing(maps["true"][0], boxes[te]).mean())
            row["pointing_other"] = float(pointing(maps[other][0], boxes[te]).mean())
            rows.append(row)
    return {"setup": {"n_train": n_train, "n_test": n_test, "size": size, "steps": steps, "width": width,
                      "seed": seed, "classes": list(SHAPES)}, "models": models, "rows": rows}
