"""A fine map chosen per image by the object's size, and zoomed-in maps (issue 12).

GT-known protocol as :mod:`scripts.bench_native_maps` (the ground-truth class's map, the default
preset's segmentation, the box of the mask, devkit IoU >= 0.5, buckets of the largest ground-truth
box's share of the image). Halves: "even" (even dataset positions, where thresholds are chosen),
"held-out" (odd positions).

Base maps (the passes of ``bench_native_maps``, cached under ``--cache``/native):
``today`` (sq224 + sq448 fused), ``n448``, ``n640`` (the photo at its aspect, longer side L).

1. Size gate. ``gate(F, stat<t)``: the box of map F when today's ``stat`` is below ``t``, else today's
   box. ``stat``: ``maskbox`` = the area of today's box / the image's; ``map50`` = the share of today's
   map at >= 0.5 of its maximum. ``inside(F)``: F's box when it lies inside today's box (2 % of the
   image's side of slack), else today's; ``inside(F)&stat<t`` needs both.
2. Zoom. ``zL{level}m{margin}s{side}``: the box of today's map at >= ``level`` of its maximum (the union
   of those pixels, in the image's frame), padded by ``margin`` times its width / height on each side,
   is cropped from the photo's own pixels; Grad-CAM of the same class runs on the crop at a longer side of
   ``side`` px at the crop's aspect (:meth:`wsloc.models.Preprocess.native`). Then (``/paste``):

   * ``fuse``: today's map and the crop's map pasted into the image frame (zero outside the crop),
     both peak-normalised, averaged; the image segmented;
   * ``replace``: today's map with the crop's map (peak-normalised) put in its place inside the crop;
   * ``cropseg``: the crop alone segmented with its map, the box shifted back into the image;
   * ``cropseg+t``: the same with the crop's map fused with today's map cut to the crop.

   A zoom variant is gated as in 1 (``gate(z.../paste, stat<t)``): large objects keep today's box and
   cost nothing more. Cost: forward pixels per image (today's 224^2 + 448^2, plus each gated image's
   extra input), no timing. The crop geometry and the ``fuse`` rule are the library's
   (:mod:`wsloc.saliency.zoom`); the header line gives the largest difference between the ``fuse`` maps
   built here from the cached crop passes and :func:`wsloc.saliency.zoom.zoom_map` run afresh on the
   first 3 images of each set.

Thresholds are chosen on the even half of both sets at once: among the settings whose small bucket is
above today's and whose medium and large buckets are no more than 2 points below today's on both sets,
the largest summed small-bucket gain (else the best mean of the three buckets); all and held-out
figures of the chosen setting are printed, with every swept row in ``--json``.

    nice -n 15 python scripts/bench_zoom_maps.py --limit 150 --zooms 0.5:0.5:448,0.6:0.25:448 --all-rows
    nice -n 15 python scripts/bench_zoom_maps.py --zooms 0.2:0.5:448,0.6:0.5:640,0.5:0.5:448 \
        --pastes fuse,cropseg+t --json /tmp/zoomhelper/final.json --all-rows
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import bench_native_maps as bn  # noqa: E402  (data, cached passes, fusion, the segmentation call)
from wsloc.saliency import zoom  # noqa: E402

BASES = ("today", "n448", "n640")
PASSES = ("sq224", "sq448", "n448", "n640")
STATS = ("maskbox", "map50")
THRESHOLDS = (0.1, 0.15, 0.2, 0.22, 0.24, 0.25, 0.26, 0.28, 0.3, 0.35, 0.4, 0.5)
PASTES = ("fuse", "replace", "cropseg", "cropseg+t")
BUCKETS = ("small", "medium", "large")


# --------------------------------------------------------------------------- geometry

box_share = zoom.box_share  # the library's own geometry (wsloc/saliency/zoom.py)
level_box = zoom.zoom_region
padded_crop = zoom.zoom_crop


def inside(fine, coarse, size, slack: float = 0.02) -> bool:
    """Whether xyxy box ``fine`` lies inside ``coarse`` with ``slack`` x the image's side to spare."""
    h, w = size
    sx, sy = slack * w, slack * h
    return bool(fine[0] >= coarse[0] - sx and fine[1] >= coarse[1] - sy and fine[2] <= coarse[2] + sx
                and fine[3] <= coarse[3] + sy)


def peak(m: np.ndarray) -> np.ndarray:
    """float32 map clipped at 0 and divided by its maximum (zeros stay zeros)."""
    m = np.clip(np.asarray(m, np.float32), 0, None)
    top = float(m.max())
    return m / top if top > 0 else m


def resize(m: np.ndarray, shape) -> np.ndarray:
    """float32 [h, w] map -> ``shape = (H, W)``, bilinear (as the fusion's upsampling)."""
    return cv2.resize(np.ascontiguousarray(m, np.float32), (int(shape[1]), int(shape[0])),
                      interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- zoom passes and maps

def zoom_key(level: float, margin: float, side: int) -> str:
    return f"zL{level:g}m{margin:g}s{side}"


def parse_zoom(spec: str) -> tuple[float, float, int]:
    """"level:margin:side" -> (level, margin, side)."""
    a, b, c = spec.split(":")
    return float(a), float(b), int(c)


def zoom_pass(image, today_map, label, setting, net, preprocess) -> dict:
    """One zoom setting on one image: {"crop": int [4] x0 y0 x1 y1, "region": float share of the level box,
    "cam": float32 [h', w'] Grad-CAM of the crop, "size": int [2] the crop's network input}."""
    level, margin, side = setting
    size = image.shape[:2]
    region = level_box(today_map, size, level)
    x0, y0, x1, y1 = padded_crop(region, size, margin)
    x = preprocess.native(np.ascontiguousarray(image[y0:y1, x0:x1]), side)[None]
    cam, _ = bn.run_pass(net, x, label)
    return {"crop": np.array([x0, y0, x1, y1]), "region": np.float64(box_share(region, size)), "cam": cam,
            "size": np.array(x.shape[-2:])}


def zoom_passes(rec, image, today_map, settings, net, preprocess, cache: Path) -> dict:
    """{zoom key: zoom_pass dict} of one image, computed where not cached (``cache``/{id}.npz)."""
    path = cache / f"{rec['id']}.npz"
    have = bn.load_cached(path)
    changed = False
    for s in settings:
        k = zoom_key(*s)
        if f"{k}_cam" not in have:
            if image is None:
                return {}
            for part, v in zoom_pass(image, today_map, rec["label"], s, net, preprocess).items():
                have[f"{k}_{part}"] = v
            changed = True
    if changed:
        np.savez(path, **have)
    return {zoom_key(*s): {p: have[f"{zoom_key(*s)}_{p}"] for p in ("crop", "region", "cam", "size")}
            for s in settings}


def frame_map(today_map, z, size, paste: str, shape) -> np.ndarray:
    """float32 ``shape`` map in the image frame (``fuse`` or ``replace``, see the module docstring)."""
    h, w = size
    x0, y0, x1, y1 = (int(v) for v in z["crop"])
    gy0, gy1 = int(round(y0 * shape[0] / h)), max(int(round(y1 * shape[0] / h)), int(round(y0 * shape[0] / h)) + 1)
    gx0, gx1 = int(round(x0 * shape[1] / w)), max(int(round(x1 * shape[1] / w)), int(round(x0 * shape[1] / w)) + 1)
    base = peak(resize(today_map, shape))
    crop = peak(resize(resize(z["cam"], z["size"]), (gy1 - gy0, gx1 - gx0)))
    if paste == "fuse":  # the library's rule (zoom.paste_zoom), from the crop's map at its input size
        return zoom.paste_zoom(today_map, resize(z["cam"], z["size"]), z["crop"], size, shape)
    if paste == "replace":
        base[gy0:gy1, gx0:gx1] = crop
        return base
    raise ValueError(paste)


def crop_map(today_map, z, size, paste: str) -> np.ndarray:
    """float32 [h_c, w_c] map of the crop at its pixel size (``cropseg``: its own map; ``cropseg+t``: fused
    with today's map cut to the crop)."""
    x0, y0, x1, y1 = (int(v) for v in z["crop"])
    crop = peak(resize(resize(z["cam"], z["size"]), (y1 - y0, x1 - x0)))
    if paste == "cropseg":
        return crop
    today = peak(resize(today_map, size))[y0:y1, x0:x1]
    return (crop + peak(today)) / 2


def segment_box(image_small, size, m, seg) -> list[float]:
    """xyxy box of the default segmentation of ``m`` on an image of ``size`` (its working copy given)."""
    from wsloc.segment import prepare_maps, segment_prepared

    return [float(v) for v in segment_prepared(image_small, prepare_maps(m[None], size, seg), seg)[0].box]


def zoom_box(image, today_map, z, paste, seg) -> list[float]:
    """The box of one zoom variant on one image (full-size uint8 image)."""
    from wsloc.segment.seeds import working_image, working_shape

    size = image.shape[:2]
    if paste in ("fuse", "replace"):
        shape = working_shape(*size, 224)
        return segment_box(working_image(image, seg.max_side), size, frame_map(today_map, z, size, paste, shape), seg)
    x0, y0, x1, y1 = (int(v) for v in z["crop"])
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    b = segment_box(working_image(crop, seg.max_side), crop.shape[:2], crop_map(today_map, z, size, paste), seg)
    return [b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0]


# --------------------------------------------------------------------------- figures

def figures(recs, hits) -> dict:
    """{half: {"overall"|bucket: (accuracy %, n)}} for halves all / even / held-out (odd positions)."""
    from wsloc.evaluate.run import SIZE_BUCKETS

    share = np.array([r["share"] for r in recs])
    pos = np.array([r["position"] for r in recs])
    out = {}
    for half, sel in (("all", np.ones(len(recs), bool)), ("even", pos % 2 == 0), ("held-out", pos % 2 == 1)):
        row = {"overall": (100.0 * hits[sel].mean() if sel.any() else float("nan"), int(sel.sum()))}
        for (_, lo, hi), name in zip(SIZE_BUCKETS, BUCKETS):
            b = sel & (share >= lo) & (share < hi)
            row[name] = (100.0 * hits[b].mean() if b.any() else float("nan"), int(b.sum()))
        out[half] = row
    return out


def hits_of(recs, boxes) -> np.ndarray:
    from wsloc.evaluate.ilsvrc import gt_known_accuracy

    return gt_known_accuracy([np.asarray(b) for b in boxes], [r["gt"] for r in recs], 0.5, "devkit")[1].astype(float)


# --------------------------------------------------------------------------- one set

def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def bench_set(name, args, net, preprocess, seg) -> dict | None:
    """Every row (variant -> {"figures", "pixels_per_image", "hits"}) of one set."""
    from wsloc.io import load_image
    from wsloc.segment.seeds import working_image

    ann = bn.SETS[name]
    if not ann.exists():
        print(f"{name}: {ann} is absent: skipped")
        return None
    recs = bn.load_set(ann, args.limit)
    root = Path(args.cache)
    (root / "native" / name).mkdir(parents=True, exist_ok=True)
    (root / "zoom" / name).mkdir(parents=True, exist_ok=True)
    box_path = root / f"boxes-{name}.json"
    boxes = load_json(box_path)  # key -> {image id: box}
    keys = list(BASES) + [f"{zoom_key(*s)}/{p}" for s in args.zooms for p in args.pastes]
    for k in keys + ["size"]:
        boxes.setdefault(k, {})  # "size": image id -> (H, W)
    all_passes, zooms, todays = [], [], []
    for i, rec in enumerate(recs):
        rid = str(rec["id"])
        passes = bn.passes_of(rec, set(PASSES), net, preprocess, root / "native" / name)
        today_map = bn.fuse(passes, bn.VARIANTS["today"])
        z = zoom_passes(rec, None, today_map, args.zooms, net, preprocess, root / "zoom" / name)
        missing = [k for k in keys + ["size"] if rid not in boxes[k]]
        if missing or not z:
            image = load_image(rec["path"])
            small, size = working_image(image, seg.max_side), image.shape[:2]
            z = zoom_passes(rec, image, today_map, args.zooms, net, preprocess, root / "zoom" / name)
            for k in missing:
                if k == "size":
                    boxes[k][rid] = [int(v) for v in size]
                elif k in BASES:
                    m = bn.fuse(passes, bn.VARIANTS[k])
                    boxes[k][rid] = segment_box(small, size, m, seg)
                else:
                    zk, paste = k.split("/")
                    boxes[k][rid] = zoom_box(image, today_map, z[zk], paste, seg)
        all_passes.append(passes)
        zooms.append(z)
        todays.append(today_map)
        if missing and (i % 20 == 19 or i == len(recs) - 1):
            box_path.write_text(json.dumps(boxes))
        print(f"\r{name}: {i + 1}/{len(recs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    box_path.write_text(json.dumps(boxes))
    out = rows_of(recs, boxes, keys, all_passes, zooms, todays, args)
    out["check_library_max_abs_diff"] = check_library(recs, todays, zooms, args.zooms, net, preprocess)
    return out


def check_library(recs, todays, zooms, settings, net, preprocess, n: int = 3) -> float:
    """Largest |difference| between the ``fuse`` maps built here from the cached crop passes and
    :func:`wsloc.saliency.zoom.zoom_map` run afresh (no gate) on the first ``n`` images."""
    from wsloc.io import load_image
    from wsloc.segment.seeds import working_shape

    worst = 0.0
    for rec, today_map, z in list(zip(recs, todays, zooms))[:n]:
        image = load_image(rec["path"])
        for s in settings:
            lib = zoom.zoom_map(net, image, preprocess, today_map, rec["label"], None, level=s[0], margin=s[1],
                                side=s[2]).maps
            mine = frame_map(today_map, z[zoom_key(*s)], image.shape[:2], "fuse", working_shape(*image.shape[:2], 224))
            worst = max(worst, float(np.abs(lib - mine).max()))
    return worst


def rows_of(recs, boxes, keys, all_passes, zooms, todays, args) -> dict:
    """Every base, zoom, gated and inside row of one set."""
    sizes = [tuple(boxes["size"][str(r["id"])]) for r in recs]
    base_px = np.array([sum(int(np.prod(p[q][1])) for q in ("sq224", "sq448")) for p in all_passes], float)
    px_of = {"today": np.zeros(len(recs)), "n448": np.array([np.prod(p["n448"][1]) for p in all_passes], float),
             "n640": np.array([np.prod(p["n640"][1]) for p in all_passes], float)}
    for s in args.zooms:
        zk = zoom_key(*s)
        px_of[zk] = np.array([np.prod(z[zk]["size"]) for z in zooms], float)
    today_boxes = [boxes["today"][str(r["id"])] for r in recs]
    stats = {"maskbox": np.array([box_share(b, sz) for b, sz in zip(today_boxes, sizes)]),
             "map50": np.array([float((m >= 0.5 * m.max()).mean()) for m in todays])}
    hits = {k: hits_of(recs, [boxes[k][str(r["id"])] for r in recs]) for k in keys}
    rows = {}

    def add(name, h, px, family=None, stat=None, t=None):
        rows[name] = {"figures": figures(recs, h), "pixels_per_image": float(np.mean(base_px + px)),
                      "hits": h.astype(int).tolist(), "family": family, "stat": stat, "t": t}

    for k in keys:
        fam = k.split("/")[0]
        add(k, hits[k], px_of["n448" if k == "n448" else "n640" if k == "n640" else
                             "today" if k == "today" else fam], family=None)
    add("oracle today | n448", np.maximum(hits["today"], hits["n448"]), px_of["n448"])
    for k in keys[1:]:
        px = px_of[k if k in px_of else k.split("/")[0]]
        fam = k.split("/")[0]
        gates = dict(stats, region=np.array([float(z[fam]["region"]) for z in zooms])) if fam in px_of and \
            fam.startswith("z") else stats
        for stat, v in gates.items():
            for t in THRESHOLDS:
                on = v < t
                add(f"gate({k}, {stat}<{t:g})", np.where(on, hits[k], hits["today"]), px * on, k, stat, t)
        ins = np.array([inside(boxes[k][str(r["id"])], b, sz) for r, b, sz in zip(recs, today_boxes, sizes)])
        add(f"inside({k})", np.where(ins, hits[k], hits["today"]), px, k, "inside", None)
        for t in THRESHOLDS:
            on = ins & (stats["maskbox"] < t)
            add(f"inside({k})&maskbox<{t:g}", np.where(on, hits[k], hits["today"]), px * (stats["maskbox"] < t),
                k, "inside&maskbox", t)
    return {"n": len(recs), "rows": rows, "stats": {k: v.tolist() for k, v in stats.items()},
            "share": [r["share"] for r in recs], "position": [r["position"] for r in recs]}


# --------------------------------------------------------------------------- choice and tables

def ok_on(res_sets: dict, row: str, half: str) -> tuple[bool, float, float]:
    """(whether ``row`` meets the rule against today on ``half`` of every set, summed small gain,
    summed gain of the mean of the three buckets)."""
    good, small, mean = True, 0.0, 0.0
    for res in res_sets.values():
        f, t = res["rows"][row]["figures"][half], res["rows"]["today"]["figures"][half]
        d = {b: f[b][0] - t[b][0] for b in BUCKETS}
        good = good and bool(d["small"] > 0 and d["medium"] >= -2 and d["large"] >= -2)
        small += d["small"]
        mean += sum(d.values()) / 3
    return good, small, mean


def choose(res_sets: dict) -> dict:
    """Per family and stat: the threshold chosen on the even halves (see the module docstring)."""
    first = next(iter(res_sets.values()))["rows"]
    groups: dict = {}
    for row, r in first.items():
        if r["family"] is not None:
            groups.setdefault((r["family"], r["stat"]), []).append(row)
    out = {}
    for g, rows in groups.items():
        scored = [(ok_on(res_sets, row, "even"), row) for row in rows]
        good = [s for s in scored if s[0][0]]
        best = max(good, key=lambda s: (s[0][1], s[0][2])) if good else max(scored, key=lambda s: s[0][2])
        out[f"{g[0]} / {g[1]}"] = {"row": best[1], "even_passes": bool(good),
                                   "all_passes": ok_on(res_sets, best[1], "all")[0],
                                   "held_out_passes": ok_on(res_sets, best[1], "held-out")[0]}
    return out


def print_rows(res_sets: dict, rows: list[str], title: str) -> None:
    cols = ("overall",) + BUCKETS
    print(f"\n### {title}\n")
    head = " | ".join(f"{s} {h} (n={res['rows']['today']['figures'][h]['overall'][1]})"
                      for s, res in res_sets.items() for h in ("all", "held-out"))
    print(f"| row | fwd px / image | {head} |")
    print("|---" * (2 + 2 * len(res_sets)) + "|")
    for row in rows:
        cells = []
        px = []
        for res in res_sets.values():
            r = res["rows"][row]
            px.append(f"{r['pixels_per_image'] / 1000:.0f}k")
            for h in ("all", "held-out"):
                f = r["figures"][h]
                cells.append(" / ".join(f"{f[c][0]:.1f}" for c in cols))
        print(f"| {row} | {', '.join(px)} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="fullres,1300", help="comma-separated: fullres, 1300")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--zooms", default="0.3:0.5:224,0.3:0.5:448", help="comma-separated level:margin:side")
    ap.add_argument("--pastes", default=",".join(PASTES), help=f"comma-separated of {', '.join(PASTES)}")
    ap.add_argument("--cache", default="/tmp/zoomhelper/cache")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write every row here")
    ap.add_argument("--all-rows", action="store_true", help="print every swept row too")
    args = ap.parse_args(argv)
    args.zooms = [parse_zoom(s) for s in args.zooms.split(",") if s]
    args.pastes = [p for p in args.pastes.split(",") if p]
    bad = [p for p in args.pastes if p not in PASTES]
    if bad:
        ap.error(f"unknown pastes {bad}")
    sets = [s for s in args.sets.split(",") if s]
    if not any(bn.SETS[s].exists() for s in sets):
        print("no data set present: nothing to measure")
        return 0
    torch.set_num_threads(args.threads)
    from wsloc.localizer import Localizer
    from wsloc.presets import preset

    loc = Localizer(device="cpu")
    seg = preset().segment
    res_sets = {}
    for s in sets:
        res = bench_set(s, args, loc.classifier, loc.classifier.preprocess, seg)
        if res is not None:
            res_sets[s] = res
    chosen = choose(res_sets)
    keys = list(next(iter(res_sets.values()))["rows"])
    ungated = [k for k in keys if next(iter(res_sets.values()))["rows"][k]["family"] is None]
    print(f"\n## GT-known accuracy %: overall / small / medium / large (limit {args.limit}); library zoom_map vs "
          "the fuse maps here, max |diff|: " + ", ".join(f"{s} {r['check_library_max_abs_diff']:.2g}"
                                                          for s, r in res_sets.items()))
    print_rows(res_sets, ungated, "ungated maps (oracle: not a method)")
    print_rows(res_sets, [c["row"] for c in chosen.values()], "gated, threshold chosen on the even halves")
    print("\nchoice per family / gate (rule on the even halves -> all, held-out):")
    for g, c in chosen.items():
        print(f"  {g}: {c['row']}  even {'PASS' if c['even_passes'] else 'fail'}, all "
              f"{'PASS' if c['all_passes'] else 'fail'}, held-out {'PASS' if c['held_out_passes'] else 'fail'}")
    if args.all_rows:
        print_rows(res_sets, [k for k in keys if k not in ungated], "every gated row")
    if args.json:
        Path(args.json).write_text(json.dumps({"sets": res_sets, "chosen": chosen}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
