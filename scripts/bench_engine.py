"""Inference engines for the default preset's network stage: eager, torch.compile, bf16, ONNX Runtime.

The default preset (Grad-CAM of the top-5 classes at 224 and 448 px, fused) needs, on a GAP +
linear model such as Lite0, only forward passes: the feature map and the logits at each scale
(``grad_cam``'s shortcut, :mod:`wsloc.saliency.cam`). This script times that stage with each
engine computing the features and logits, the maps made from them by the same code, and
reports images/s and the largest difference of the fused maps from eager's, relative to the
map's maximum (the adoption rule: >= 1.3x faster with maps equal to 1e-4 of the maximum).

* ``eager-backward``: ``Localizer.network`` with the backward pass forced (``shortcut=False``),
  what the default did before;
* ``eager-plain``: ``Localizer.network`` on the plain network (``fold_batchnorm=False``:
  channels-last, the shortcut), what the default ran before the inference copy; the reference
  of the speed ratios and of the map differences;
* ``eager``: ``Localizer.network`` as it runs now (the inference copy of
  :mod:`wsloc.models.inference`: BN folded, activations in place, network calls of at most
  ``CPU_FORWARD_PIXELS``);
* ``compile``: ``torch.compile`` of the features + logits module (timed after a warm-up that
  includes the compilation, ``first_call_seconds``; an error or a compilation longer than
  ``--engine-timeout`` is recorded, not raised; on the shared 2-core machine it did not finish
  compiling within 13 minutes);
* ``bf16``: eager under ``torch.autocast("cpu", torch.bfloat16)`` (``LocalizerConfig.amp``;
  native on CPUs with the ``avx512_bf16`` / ``amx_bf16`` flags, printed);
* ``onnx``: ``LocalizerConfig(engine="onnx")`` (:mod:`wsloc.onnx_engine`): ONNX Runtime on the
  features + logits graph exported at 224 and at 448 px with a dynamic batch (needs
  ``pip install 'wsloc[onnx]'``; an error row if missing).

    python scripts/bench_engine.py --images 64 --json engine.json     # the table (a few minutes on 2 cores)
    python scripts/bench_engine.py --images 8 --engines eager,onnx    # a quick check
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "imagenet-val-1300"
ENGINES = ("eager-plain", "eager-backward", "eager", "bf16", "onnx", "compile")


class FeaturesLogits(nn.Module):
    """Lite0 as ``x -> (last feature map [N, C, h, w], logits [N, classes])`` (what the maps need)."""

    def __init__(self, model):
        super().__init__()
        if not hasattr(model, "features") or not hasattr(model, "_fc"):
            raise SystemExit("bench_engine: error: the model is not EfficientNet-Lite (features + _fc needed)")
        self.model = model

    def forward(self, x):
        f = self.model.features(x)
        return f, self.model._fc(f.mean(dim=(2, 3)))


def fused_maps(run, x: torch.Tensor, scales, top_k: int, fc: nn.Linear) -> torch.Tensor:
    """The default preset's fused Grad-CAM maps from ``run(x) -> (features, logits)``: float32 [N, K, H, W]."""
    from wsloc.saliency.cam import gap_linear_gradcam
    from wsloc.saliency.core import upsample_maps
    from wsloc.normalize import normalize_maps

    size = tuple(x.shape[-2:])
    total, targets = None, None
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        xs = xs.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            feats, logits = run(xs)
            feats, logits = feats.float(), logits.float()
            if targets is None:
                targets = logits.topk(top_k, dim=1).indices
            m = torch.stack([gap_linear_gradcam(feats, fc.weight[targets[:, j]]) for j in range(top_k)], 1)
        m = normalize_maps(upsample_maps(m.clamp(min=0), size), "peak")
        total = m if total is None else total + m
    return total / len(scales)


def cpu_flags() -> list[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    return sorted({f for f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2") if f" {f}" in text})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="folder with images/ (default: %(default)s; else the demo set)")
    ap.add_argument("--images", type=int, default=32, help="images timed per engine (default: %(default)s)")
    ap.add_argument("--threads", type=int, help="torch / ONNX Runtime threads (default: all CPUs)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ", ".join(ENGINES))
    ap.add_argument("--json", help="write the table to this JSON file")
    ap.add_argument("--engine-timeout", type=int, default=900,
                    help="seconds allowed per engine, compilation included (default: %(default)s); over it the "
                         "engine's row records the timeout")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        print(f"bench_engine: error: unknown engine(s) {', '.join(bad)}; known: {', '.join(ENGINES)}", file=sys.stderr)
        return 2

    import wsloc.io
    from wsloc.localizer import Localizer
    from wsloc.paths import demo_images_dir
    from wsloc.run.runner import cpu_count

    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    paths = sorted(glob.glob(os.path.join(args.data, "images", "*")))[:args.images] or \
        sorted(glob.glob(os.path.join(demo_images_dir(), "*.jpg")))
    loc = Localizer(device="cpu")
    bs = loc.config.batch_size
    x_all = loc.preprocess.batch([wsloc.io.load_image(p) for p in paths])
    n = x_all.shape[0]
    fc = loc.classifier.model.get_submodule(loc.classifier.fc)
    scales, top_k = loc.config.saliency.scales, loc.top_k
    print(f"{n} images, batch {bs}, {threads} threads, torch {torch.__version__}; CPU flags: {', '.join(cpu_flags())}")

    def timed(fn):
        fn(x_all[:min(bs, n)])  # warm-up (and compilation)
        t0 = time.perf_counter()
        maps = [fn(x_all[i:i + bs]) for i in range(0, n, bs)]
        return n / (time.perf_counter() - t0), torch.cat(maps)

    reference = None
    rows = []
    features_logits = FeaturesLogits(loc.classifier.model).eval()
    for name in engines:
        row = {"engine": name}

        late = []

        def too_long(signum, frame):
            late.append(True)
            raise TimeoutError(f"not done within --engine-timeout {args.engine_timeout} s")

        signal.signal(signal.SIGALRM, too_long)
        signal.alarm(args.engine_timeout)
        try:
            t_setup = time.perf_counter()
            if name == "eager-backward":
                forced = Localizer(device="cpu", classifier=loc.classifier,
                                   **{"saliency.options.shortcut": False})
                fn = lambda x: torch.from_numpy(forced.network(x).maps)  # noqa: E731
            elif name == "eager-plain":
                plain = Localizer(device="cpu", classifier=loc.classifier, fold_batchnorm=False)
                fn = lambda x: torch.from_numpy(plain.network(x).maps)  # noqa: E731
            elif name == "eager":
                fn = lambda x: torch.from_numpy(loc.network(x).maps)  # noqa: E731
            elif name == "compile":
                compiled = torch.compile(features_logits)
                fn = lambda x: fused_maps(compiled, x, scales, top_k, fc)  # noqa: E731
            elif name == "bf16":
                def fn(x):
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return fused_maps(features_logits, x, scales, top_k, fc)
            else:
                onnx_loc = Localizer(device="cpu", classifier=loc.classifier, engine="onnx")  # wsloc.onnx_engine
                fn = lambda x: torch.from_numpy(onnx_loc.network(x).maps)  # noqa: E731
            t_first = time.perf_counter()
            fn(x_all[:1])
            row["setup_seconds"] = round(time.perf_counter() - t_setup, 2)
            row["first_call_seconds"] = round(time.perf_counter() - t_first, 2)
            ips, maps = timed(fn)
            row["images_per_second"] = ips
            if reference is None and name in ("eager-plain", "eager", "eager-backward"):
                reference = maps
            if reference is not None:
                peak = reference.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
                row["max_diff_over_max"] = float(((maps - reference).abs() / peak).max())
        except Exception as exc:  # recorded, not raised: e.g. torch.compile without a C compiler
            row["error"] = (f"timeout: not done within --engine-timeout {args.engine_timeout} s" if late else
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        finally:
            signal.alarm(0)
        rows.append(row)
        print(json.dumps(row))
    base = next((r for r in rows if r["engine"] in ("eager-plain", "eager") and "images_per_second" in r), None)
    print()
    print(f"{'engine':<16s}{'images/s':>10s}{' vs ' + (base['engine'] if base else '-'):>16s}{'max |diff| / max':>18s}  note")
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:<16s}{'-':>10s}{'-':>10s}{'-':>18s}  {r['error']}")
            continue
        speed = r["images_per_second"] / base["images_per_second"] if base else float("nan")
        r["speedup_vs_eager"] = speed
        ok = speed >= 1.3 and r.get("max_diff_over_max", 1.0) <= 1e-4
        print(f"{r['engine']:<16s}{r['images_per_second']:10.2f}{speed:15.2f}x{r.get('max_diff_over_max', float('nan')):18.2e}"
              f"  {'meets the adoption rule' if ok and r is not base else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": n, "threads": threads, "cpu_flags": cpu_flags(), "torch": torch.__version__,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
