"""Check that a code change leaves ``results.json`` byte-identical (issue 16, must-show 1).

Runs ``wsloc localize`` from two source trees, the working tree and a base revision checked out
with ``git worktree`` (its outputs are cached, so a second check only recomputes the working
tree), for both presets on the demo set and on the first ``--limit`` images of
imagenet-val-1300, and compares the ``results.json`` files byte for byte. Worker counts are
pinned (one torch thread, one decoding and one segmentation process) so that the only thing
that differs between the two runs is the code.

    python scripts/check_identical.py --base a6f9e2b            # demo + first 200 of imagenet-val-1300
    python scripts/check_identical.py --base a6f9e2b --sets demo  # the demo set only (seconds)

Prints one line per (set, preset): ``identical`` or ``DIFFERENT`` with the first differing
result; exits 1 when any differs. A set whose data is absent is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
PRESETS = ("gradcam_graphcut", "simonyan2014")


def sets(limit: int) -> dict:
    """name -> (dataset arguments, image limit or None)."""
    return {"demo": ([], None),
            "imagenet-val-1300": ([os.path.join(SHARED, "imagenet-val-1300", "annotations.json")], limit)}


def worktree(rev: str, cache: str) -> str:
    """A checkout of ``rev`` under ``cache`` (created once)."""
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    path = os.path.join(cache, f"tree-{sha}")
    if not os.path.isdir(path):
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, sha], check=True,
                       capture_output=True)
    return path


def localize(tree: str, dataset: list, limit: int | None, preset: str, out: str) -> str:
    """Run ``wsloc localize`` with the package of ``tree``; returns the results.json path."""
    results = os.path.join(out, "results.json")
    if os.path.isfile(results) and os.path.isfile(os.path.join(out, "summary.json")):
        return results
    cmd = [sys.executable, "-m", "wsloc", "localize", *dataset, "--preset", preset, "--out", out, "--overwrite",
           "--device", "cpu", "--threads", "1", "--workers", "1", "--segment-workers", "1", "--no-eval", "-q"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = {**os.environ, "PYTHONPATH": tree}
    subprocess.run(cmd, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    return results


def first_difference(a: str, b: str) -> str:
    ra, rb = json.load(open(a)), json.load(open(b))
    if len(ra) != len(rb):
        return f"{len(ra)} vs {len(rb)} results"
    for x, y in zip(ra, rb):
        if x != y:
            return f"image {x.get('image_id')}: {json.dumps(x)[:200]} vs {json.dumps(y)[:200]}"
    return "same values, different bytes (formatting)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="git revision to compare against (e.g. a6f9e2b)")
    p.add_argument("--limit", type=int, default=200, help="images of imagenet-val-1300 (default: 200)")
    p.add_argument("--sets", default="demo,imagenet-val-1300", help="comma-separated sets")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--cache", default=os.path.join("/tmp", "wsloc-identical"), help="folder for trees and runs")
    args = p.parse_args(argv)
    base = worktree(args.base, args.cache)
    known = sets(args.limit)
    failed = 0
    for name in args.sets.split(","):
        dataset, limit = known[name]
        if dataset and not os.path.isfile(dataset[0]):
            print(f"{name}: skipped ({dataset[0]} is absent)")
            continue
        for preset in args.presets.split(","):
            tag = f"{name}-{preset}-{limit or 'all'}"
            before = localize(base, dataset, limit, preset, os.path.join(args.cache, "base-" + os.path.basename(base), tag))
            after_dir = os.path.join(args.cache, f"after-{os.getpid()}", tag)  # one folder per check: checks may overlap
            after = localize(ROOT, dataset, limit, preset, after_dir)
            same = filecmp.cmp(before, after, shallow=False)
            n = len(json.load(open(after)))
            line = f"{name:18s} {preset:17s} {n:5d} results  " + ("identical" if same else
                                                                   "DIFFERENT: " + first_difference(before, after))
            print(line, flush=True)
            failed += not same
            if same:
                subprocess.run(["rm", "-rf", after_dir], check=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
