"""Bytes per image that a dataset run moves between its processes (issue 16, lean process traffic).

For each image of a dataset (default: the demo set; ``--limit`` images), with the default preset and
Lite0 on the CPU, the pickled size of

* the decoded item a decoding process sends to the main process (without the network input ``x``,
  which is the same before and after), and
* the :class:`wsloc.run.segment_worker.SegmentJob` the main process sends to a segmentation process,

as the runner builds them now (the image's working copy and its size) and as it built them before
(the whole image). Sizes only, no timing.

    python scripts/pool_bytes.py                       # the demo set
    python scripts/pool_bytes.py ../shared/data/imagenet-val-1300/annotations.json --limit 50
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle

import numpy as np


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
    sizes = {"decoded_before": [], "decoded_now": [], "job_before": [], "job_now": [], "maps": []}
    for b in range(len(batches)):
        old, new = before[b], now[b]
        for (item, out), whole in zip(network.run(new), old.items):
            sizes["decoded_now"].append(len(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)))
            sizes["decoded_before"].append(len(pickle.dumps(whole, protocol=pickle.HIGHEST_PROTOCOL)))
            if out is None:
                continue
            job = network.job(item, out)
            old_job = dataclasses.replace(job, image=whole["image"], size=None)
            sizes["job_now"].append(len(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)))
            sizes["job_before"].append(len(pickle.dumps(old_job, protocol=pickle.HIGHEST_PROTOCOL)))
            sizes["maps"].append(out[0].nbytes)
    print(f"{n} images, preset {args.preset or 'default'}, working resolution max_side={loc.segment_config.max_side}")
    for key, what in (("decoded", "decoding process -> main (item, without x)"),
                      ("job", "main -> segmentation process (SegmentJob)")):
        b, a = np.mean(sizes[f"{key}_before"]), np.mean(sizes[f"{key}_now"])
        print(f"{what:45s} before {b / 1e3:9.1f} kB   now {a / 1e3:9.1f} kB   ({a / b:.1%})")
    print(f"{'of which the maps (float32 [K, 224, 224])':45s} {np.mean(sizes['maps']) / 1e3:9.1f} kB")
    total_b = np.mean(sizes["decoded_before"]) + np.mean(sizes["job_before"])
    total_a = np.mean(sizes["decoded_now"]) + np.mean(sizes["job_now"])
    print(f"{'both transfers':45s} before {total_b / 1e3:9.1f} kB   now {total_a / 1e3:9.1f} kB   ({total_a / total_b:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
