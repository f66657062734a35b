"""Tables and figures of randomization tests: JSON/CSV tables, similarity curves, map grids."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence

import numpy as np

from .. import viz
from .check import SanityResult

CURVES = (("spearman_abs", "Spearman (abs)"), ("spearman", "Spearman (signed)"), ("ssim", "SSIM"),
          ("hog", "HOG correlation"), ("loc_acc", "GT-known box accuracy"))


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    return v


def table_rows(results: Sequence[SanityResult]) -> list[dict]:
    """The rows of every result (see :meth:`SanityResult.rows`), concatenated."""
    return [row for r in results for row in r.rows()]


def write_table(rows: Sequence[dict], json_path: str | None = None, csv_path: str | None = None) -> None:
    """Write rows as a JSON list (NaN -> null) and/or a CSV file (NaN -> empty), creating folders."""
    for path in (json_path, csv_path):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump([{k: _clean(v) for k, v in r.items()} for r in rows], f, indent=1)
    if csv_path and rows:
        keys = list(rows[0].keys())
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if _clean(r.get(k)) is None else
                                (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k])) for k in keys})


def markdown_table(results: Sequence[SanityResult], metric: str = "spearman_abs",
                   columns: Sequence[str] | None = None) -> str:
    """A markdown table: one row per method, one column per step, values of ``metric`` (or ``loc_acc``)."""
    if not results:
        return ""
    steps = list(columns or results[0].steps)
    lines = ["| method | " + " | ".join(steps) + " |", "|---|" + "---:|" * len(steps)]
    for r in results:
        by = {row["block"]: row for row in r.rows()}
        cells = []
        for s in steps:
            v = by.get(s, {}).get(metric, float("nan"))
            cells.append("" if v is None or not math.isfinite(v) else f"{v:.2f}")
        lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(results: Sequence[SanityResult], path: str, title: str | None = None) -> str:
    """Similarity (and localization) curves per method as blocks are randomized; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [(k, t) for k, t in CURVES if k != "loc_acc" or any(r.loc_correct is not None for r in results)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for r in results:
            if key == "loc_acc":
                if r.loc_correct is None:
                    continue
                y, err = r.loc_correct.mean(axis=1), None
            else:
                vals = r.metrics[key]
                y = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in vals])
                err = np.array([np.nanstd(v) if np.isfinite(v).any() else np.nan for v in vals])
            xs = np.arange(len(y))
            ax.plot(xs, y, marker="o", ms=3, label=r.method)
            if err is not None:
                ax.fill_between(xs, y - err, y + err, alpha=0.12)
        steps = results[0].steps
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([s.replace("_blocks.", "b") for s in steps], rotation=90, fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_ylim(-0.25 if key != "loc_acc" else 0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean over images (band: +-1 s.d.)")
    axes[0][0].legend(fontsize=8)
    mode = results[0].mode if results else ""
    fig.suptitle(title or f"{mode} randomization: original vs randomized maps", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def display_map(m: np.ndarray, absolute: bool = True, percentile: float = 99.0) -> np.ndarray:
    """A map scaled for display: ``|m|`` (or ``m``) divided by its ``percentile``-th percentile
    of absolute values and clipped to [0, 1] (signed: [-1, 1]), so that a few extreme pixels do
    not turn the rest of the picture dark (Smilkov et al. 2017's practice)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float32))
    m = np.abs(m) if absolute else m
    p = float(np.percentile(np.abs(m), percentile)) if m.size else 0.0
    if p <= 0:
        p = float(np.abs(m).max()) if m.size else 0.0
    if p <= 0:
        return np.zeros_like(m)
    return np.clip(m / p, 0.0 if absolute else -1.0, 1.0)


def map_grid(results: Sequence[SanityResult], image_index: int = 0, image: np.ndarray | None = None,
             cell: int = 96, absolute: bool = True) -> np.ndarray:
    """Grid of maps: one row per method, one column per step, for one image (uint8 RGB).

    Each map is shown with :func:`display_map` (JET colours), scaled on its own as in
    Adebayo et al.'s figures. With ``image`` the photo is the first column.
    """
    rows, titles = [], []
    for r in results:
        pics = [viz.heatmap(display_map(m, absolute)) for m in r.maps[:, image_index]]
        if image is not None:
            pics = [image] + pics
        rows.append(pics)
        titles.append(r.method)
    cols = ([""] if image is not None else []) + [s.replace("_blocks.", "b") for s in results[0].steps]
    return viz.grid(rows, row_titles=titles, col_titles=cols, cell=(cell, cell))


def data_randomization_markdown(out: dict) -> str:
    """Markdown of :func:`wsloc.sanity.data_randomization.data_randomization_test`'s result."""
    lines = ["| model | accuracy on its training labels | test accuracy (true labels) | steps |",
             "|---|---:|---:|---:|"]
    for name, m in out["models"].items():
        lines.append(f"| {name} | {m['train_acc']:.2f} | {m['test_acc']:.2f} | {m['steps']} |")
    lines += ["", "| method | maps compared | Spearman abs | Spearman signed | SSIM | HOG | pointing (true) | "
                  "pointing (other) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in out["rows"]:
        lines.append(f"| {r['method']} | {r['compared']} | {r['spearman_abs']:.2f} | {r['spearman']:.2f} | "
                     f"{r['ssim']:.2f} | {r['hog']:.2f} | {r['pointing_true']:.2f} | {r['pointing_other']:.2f} |")
    return "\n".join(lines)
