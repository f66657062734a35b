"""Bytes per image that a dataset run moves between its processes (issue 16, lean process traffic).

For each image of a dataset (default: the demo set; ``--limit`` images), with the default preset and
Lite0 on the CPU, the pickled size of

* the decoded item a decoding process sends to the main process (without the network input ``x``,
  which is the same before and after), and
* the :class:`wsloc.run.segment_worker.SegmentJob` the main process sends to a segmentation process,

as the runner builds them now (the image's working copy and its size; the maps on the working grid,
:func:`wsloc.segment.prepare_maps`), as it built them before the maps were prepared in the main
process (working copy, maps at the network's input grid), and at first (the whole image, the maps at
the input grid). Sizes only, no timing.

Measured on the demo set (6 images, default preset: K = 5 maps of 224 x 224, max_side=80), mean
bytes per image:

=====================================  =========  ==================  ====================
transfer                               at first   working-copy image  + working-grid maps
                                                                      (now)
=====================================  =========  ==================  ====================
decoding process -> main (item)        772.0 kB   15.2 kB             15.2 kB
main -> segmentation process (job)     1776.5 kB  1019.8 kB           115.9 kB
both                                   2548.5 kB  1035.0 kB           131.1 kB (5.1 %)
=====================================  =========  ==================  ====================

A job drawn as an overlay keeps the whole image and the maps at the input grid (the overlay shows them).

    python scripts/pool_bytes.py                       # the demo set
    python scripts/pool_bytes.py ../shared/data/imagenet-val-1300/annotations.json --limit 50
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle

import numpy as np


def dump(obj) -> int:
    """Bytes of ``obj`` pickled as a process pool sends it."""
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", nargs="?", default=None, help="dataset (default: the demo set)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--preset", default=None)
    args = p.parse_args(argv)

    from wsloc.io import open_dataset
    from wsloc.localizer import Localizer
    from wsloc.paths import demo_dir
    from wsloc.run.decode import DecodeBatches
    from wsloc.run.network import NetworkStage

    ds = open_dataset(args.dataset or str(demo_dir()))
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    loc = Localizer(preset=args.preset, device="cpu")
    batches = [list(range(i, min(n, i + loc.config.batch_size))) for i in range(0, n, loc.config.batch_size)]
    now = DecodeBatches(ds, batches, loc.preprocess, 50_000_000, 8, loc.segment_config.max_side)
    before = DecodeBatches(ds, batches, loc.preprocess, 50_000_000, 8, None)  # every image whole, as before
    network = NetworkStage(loc)
    sizes = {"decoded_before": [], "decoded_now": [], "job_first": [], "job_before": [], "job_now": [], "maps": []}
    for b in range(len(batches)):
        old, new = before[b], now[b]
        for (item, out), whole in zip(network.run(new), old.items):
            sizes["decoded_now"].append(dump(item))
            sizes["decoded_before"].append(dump(whole))
            if out is None:
                continue
            job = network.job(item, out)
            full_maps = dataclasses.replace(job, maps=out[0])  # the maps at the network's input grid
            sizes["job_now"].append(dump(job))
            sizes["job_before"].append(dump(full_maps))
            sizes["job_first"].append(dump(dataclasses.replace(full_maps, image=whole["image"], size=None)))
            sizes["maps"].append(out[0].nbytes)
    print(f"{n} images, preset {args.preset or 'default'}, working resolution max_side={loc.segment_config.max_side}")
    print(f"{'':45s} {'at first':>12s} {'work. image':>12s} {'now':>12s}")
    for what, keys in (("decoding process -> main (item, without x)", ("decoded_before", "decoded_now", "decoded_now")),
                       ("main -> segmentation process (SegmentJob)", ("job_first", "job_before", "job_now"))):
        print(f"{what:45s} " + " ".join(f"{np.mean(sizes[k]) / 1e3:9.1f} kB" for k in keys))
    print(f"{'maps at the input grid (float32 [K, 224, 224])':45s} {np.mean(sizes['maps']) / 1e3:9.1f} kB")
    first = np.mean(sizes["decoded_before"]) + np.mean(sizes["job_first"])
    total = np.mean(sizes["decoded_now"]) + np.mean(sizes["job_now"])
    print(f"{'both transfers':45s} {first / 1e3:9.1f} kB {'':12s} {total / 1e3:9.1f} kB ({total / first:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
