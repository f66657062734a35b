"""``report.html``: one static page per localization run, to open in any browser (no server).

What it shows, from the run folder's own files (:mod:`wsloc.run.outputs`):

* the figures (``metrics.json``: ILSVRC top-1 / top-5 localization and classification error,
  GT-known accuracy, COCO AP) and the table by object size;
* the stage timings (``summary.json``: seconds per stage and their share of the wall time);
* a gallery of the ``--overlays`` pictures (relative links to ``overlays/*.png``), each with its
  ground-truth class, top-1 guess and the IoU of the top-1 box, that can be sorted by IoU (worst
  first by default) and filtered by class and by right / wrong (top-1 localization). A few lines
  of inline JavaScript do the sorting and filtering; the cards are in the HTML in dataset order,
  so the page still lists them without JavaScript. The controls can be preset in the address:
  ``report.html#sort=iou-desc&class=tabby&outcome=wrong``.

The per-image ground truth comes from the dataset recorded in ``config.json`` (or the dataset
object given); the IoU is :func:`wsloc.run.overlay.best_iou` in the devkit convention, the one
the evaluation table uses, and "right" is :func:`wsloc.evaluate.image_clsloc_error` with k = 1.
"""

from __future__ import annotations

import html
import json
import os

import numpy as np

__all__ = ["write_report", "gallery_rows", "render_report", "REPORT"]

REPORT = "report.html"
CONVENTION = "devkit"


def _read(path: str):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def open_run_dataset(run_dir: str):
    """The dataset a run was made on (from its ``config.json``), or None when it has no ground
    truth or cannot be opened any more."""
    from ..errors import WslocError
    from ..evaluate.ground_truth import has_ground_truth
    from ..io import open_dataset

    info = (_read(os.path.join(run_dir, "config.json")) or {}).get("dataset", {})
    if info.get("kind") in (None, "FolderDataset", "ImageFiles") or not info.get("path"):
        return None
    try:
        ds = open_dataset(info["path"], image_root=info.get("image_root"))
    except WslocError:
        return None
    return ds if has_ground_truth(ds) else None


def gallery_rows(run_dir: str, dataset=None) -> list[dict]:
    """One dict per image of the run's ``images.jsonl``: index, file, overlay (relative path or
    None), status, top1 (name), score, gt (ground-truth class name or None), iou (top-1 box,
    or None), right (top-1 localization right; None without ground truth), top5_right."""
    from ..evaluate.ilsvrc import image_clsloc_error
    from ..run import outputs
    from ..run.overlay import best_iou, sample_gt
    from ..run.outputs import overlay_path

    rows = []
    cats = getattr(dataset, "categories", None) if dataset is not None else None
    for rec in outputs.iter_jsonl(os.path.join(run_dir, outputs.IMAGES)):
        item = {"index": rec["index"], "file_name": rec.get("file_name")}
        png = overlay_path(run_dir, item)
        row = {"index": int(rec["index"]), "file": rec.get("file_name") or str(rec["index"]),
               "overlay": os.path.relpath(png, run_dir).replace(os.sep, "/") if os.path.isfile(png) else None,
               "status": rec["status"], "reason": rec.get("reason"), "top1": None, "score": None, "gt": None,
               "iou": None, "right": None, "top5_right": None}
        res = rec.get("results") or []
        if res:
            row["top1"] = str(res[0].get("name") or res[0]["category_id"])
            row["score"] = float(res[0]["score"])
        gt = sample_gt(dataset[int(rec["index"])], cats) if dataset is not None else None
        if gt is not None:
            if gt["label"] is not None:
                row["gt"] = gt["names"][gt["label"]]
            elif len(gt["labels"]):
                row["gt"] = ", ".join(sorted({gt["names"][int(v)] for v in gt["labels"]}))
            classes = np.array([r["category_id"] for r in res], np.int64)
            boxes = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                               r["bbox"][1] + r["bbox"][3]] for r in res], np.float64).reshape(-1, 4)
            if res:
                row["iou"] = best_iou(boxes[0], gt, CONVENTION)
            if len(gt["boxes"]):
                row["right"] = image_clsloc_error(classes, boxes, gt["boxes"], gt["labels"], None, 1,
                                                  iou_convention=CONVENTION)[0] == 0.0
                row["top5_right"] = image_clsloc_error(classes, boxes, gt["boxes"], gt["labels"], None, 5,
                                                       iou_convention=CONVENTION)[0] == 0.0
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:12px} table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right} th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left}
.bar{display:inline-block;height:10px;background:#4a7bd0;vertical-align:middle}
.controls{margin:8px 0;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
#gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px;background:#fafafa}
.card img{width:100%;height:auto;display:block} .card .cap{font-size:12px;margin-top:4px}
.right{border-left:5px solid #2a2} .wrong{border-left:5px solid #d33} .nogt{border-left:5px solid #999}
.hidden{display:none} .cols{display:flex;gap:40px;flex-wrap:wrap} .cols>div{flex:1 1 520px}
"""

_JS = """
(function(){
  var g=document.getElementById('gallery'); if(!g) return;
  var cards=Array.prototype.slice.call(g.querySelectorAll('.card'));
  var sort=document.getElementById('sort'), cls=document.getElementById('cls'), out=document.getElementById('outcome');
  var shown=document.getElementById('shown');
  function num(c){var v=c.getAttribute('data-iou'); return v===''?-1:parseFloat(v);}
  function apply(){
    var s=sort.value, order=cards.slice();
    if(s==='iou-asc') order.sort(function(a,b){return num(a)-num(b)||a.dataset.index-b.dataset.index;});
    else if(s==='iou-desc') order.sort(function(a,b){return num(b)-num(a)||a.dataset.index-b.dataset.index;});
    else order.sort(function(a,b){return a.dataset.index-b.dataset.index;});
    var n=0;
    order.forEach(function(c){
      var ok=(cls.value===''||c.dataset.cls===cls.value)&&(out.value===''||c.dataset.outcome===out.value);
      c.classList.toggle('hidden',!ok); if(ok) n++; g.appendChild(c);
    });
    shown.textContent=n+' of '+cards.length+' shown';
    var h='sort='+encodeURIComponent(s)+(cls.value?'&class='+encodeURIComponent(cls.value):'')+
          (out.value?'&outcome='+out.value:'');
    if(history.replaceState) history.replaceState(null,'','#'+h);
  }
  var q={}; location.hash.replace(/^#/,'').split('&').forEach(function(p){
    var kv=p.split('='); if(kv[0]) q[kv[0]]=decodeURIComponent(kv[1]||'');});
  if(q.sort) sort.value=q.sort; if(q['class']!==undefined) cls.value=q['class']; if(q.outcome) out.value=q.outcome;
  [sort,cls,out].forEach(function(e){e.addEventListener('change',apply);});
  apply();
  document.body.setAttribute('data-gallery-ready','1');
})();
"""


def _esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _pct(v) -> str:
    from ..evaluate.report import pct

    return pct(v).strip()


def _figures_html(metrics: dict | None) -> str:
    from ..evaluate.report import FIGURE_ROWS

    if not metrics:
        return "<p>Not scored: the run's input has no ground truth (or it was run with --no-eval).</p>"
    rows = [f"<tr><td>{_esc(label)}</td><td>{_pct(metrics[key])}</td></tr>" for key, label in FIGURE_ROWS
            if key in metrics]
    if "coco_bbox" in metrics:
        c = metrics["coco_bbox"]
        rows.append(f"<tr><td>COCO box AP [.50:.95] / AP50 / AP75 (continuous IoU)</td>"
                    f"<td>{_pct(c['AP'])} / {_pct(c['AP50'])} / {_pct(c['AP75'])}</td></tr>")
    n, n_all = metrics.get("n_images"), metrics.get("n_dataset_images")
    scored = f"{n} images scored" + (f" of the dataset's {n_all}" if n_all not in (None, n) else "")
    head = (f"<p class='meta'>{_esc(scored)}; IoU convention: {_esc(metrics.get('iou_convention_description'))}; "
            f"a box is right at IoU &ge; {_esc(metrics.get('iou_threshold'))}</p>")
    table = "<table><tr><th>figure</th><th>value</th></tr>" + "".join(rows) + "</table>"
    by_size = metrics.get("by_size")
    if by_size:
        size_rows = "".join(
            f"<tr><td>{_esc(name)}</td><td>{r['n']}</td><td>{_pct(r.get('top1_loc_error'))}</td>"
            f"<td>{_pct(r.get('top5_loc_error'))}</td><td>{_pct(r.get('gt_known_loc_acc'))}</td></tr>"
            for name, r in by_size.items())
        table += ("<h2>By object size</h2><p class='meta'>largest ground-truth box / image area</p>"
                  "<table><tr><th>bucket</th><th>images</th><th>top-1 loc err</th><th>top-5 loc err</th>"
                  "<th>GT-known</th></tr>" + size_rows + "</table>")
    return head + table


def _timings_html(summary: dict | None) -> str:
    if not summary or not summary.get("stage_seconds"):
        return "<p>No summary.json.</p>"
    wall = summary.get("wall_seconds") or 0.0
    stages = [(k, v) for k, v in summary["stage_seconds"].items() if v]
    top = max((v for _, v in stages), default=1.0) or 1.0
    rows = "".join(
        f"<tr><td>{_esc(k)}</td><td>{v:.2f}</td><td>{(100 * v / wall if wall else 0):.1f} %</td>"
        f"<td style='text-align:left'><span class='bar' style='width:{int(240 * v / top)}px'></span></td></tr>"
        for k, v in stages)
    ips = summary.get("images_per_second")
    head = (f"<p class='meta'>{summary.get('processed', 0)} images in {wall:.1f} s"
            f"{f' ({ips:.2f} images/s)' if ips else ''}; seconds summed over the processes that did the "
            "work, so stages that overlap add up to more than the wall time.</p>")
    return head + ("<table><tr><th>stage</th><th>seconds</th><th>of wall</th><th></th></tr>" + rows + "</table>")


def _card(r: dict) -> str:
    outcome = "nogt" if r["right"] is None else ("right" if r["right"] else "wrong")
    iou = "" if r["iou"] is None else f"{r['iou']:.4f}"
    cls = r["gt"] if r["gt"] is not None else (r["top1"] or "")
    pic = (f"<img src='{_esc(r['overlay'])}' alt='{_esc(r['file'])}' loading='lazy'>" if r["overlay"] else "")
    if r["status"] != "ok" or r["top1"] is None:
        cap = f"<b>{_esc(r['file'])}</b>: " + (f"error: {_esc(r['reason'])}" if r["status"] != "ok" else "no guess")
    else:
        cap = (f"<b>{_esc(r['file'])}</b> &middot; top-1: {_esc(r['top1'])} ({r['score']:.2f})"
               + (f" &middot; truth: {_esc(r['gt'])}" if r["gt"] is not None else "")
               + (f" &middot; IoU {r['iou']:.2f}" if r["iou"] is not None else "")
               + ("" if r["right"] is None else (" &middot; right" if r["right"] else " &middot; wrong"))
               + ("" if r["top5_right"] is None or r["right"] else
                  (" (right in top-5)" if r["top5_right"] else "")))
    return (f"<div class='card {outcome}' data-index='{r['index']}' data-iou='{iou}' data-cls='{_esc(cls)}' "
            f"data-outcome='{outcome}'>{pic}<div class='cap'>{cap}</div></div>")


def render_report(run_dir: str, rows: list[dict], metrics: dict | None, summary: dict | None,
                  config: dict | None) -> str:
    """The page's HTML text (see the module doc)."""
    cards = [r for r in rows if r["overlay"] or r["status"] != "ok"]
    classes = sorted({(r["gt"] if r["gt"] is not None else r["top1"]) for r in cards
                      if (r["gt"] or r["top1"])})
    ds = (config or {}).get("dataset", {})
    loc = (config or {}).get("localizer", {})
    title = f"wsloc run: {os.path.basename(os.path.normpath(run_dir))}"
    meta = (f"dataset {_esc(ds.get('path'))} ({_esc(ds.get('kind'))}); model {_esc(loc.get('model'))}, "
            f"method {_esc(loc.get('method'))}, top-{_esc(loc.get('top_k'))}")
    n_over = sum(1 for r in rows if r["overlay"])
    gallery_note = (f"{n_over} of {len(rows)} images have an overlay picture (wsloc localize --overlays N). "
                    "Yellow: our box; green: ground truth with its class; cyan: mask outline. IoU of the top-1 "
                    f"box in the {CONVENTION} convention; right = top-1 class and box right (IoU &ge; 0.5).")
    options = "".join(f"<option value='{_esc(c)}'>{_esc(c)}</option>" for c in classes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>{_esc(title)}</h1><p class="meta">{meta}</p>
<div class="cols"><div><h2>Figures</h2>{_figures_html(metrics)}</div>
<div><h2>Stage timings</h2>{_timings_html(summary)}</div></div>
<h2>Gallery</h2><p class="meta">{gallery_note}</p>
<div class="controls">
<label>sort <select id="sort"><option value="iou-asc">IoU, worst first</option>
<option value="iou-desc">IoU, best first</option><option value="index">dataset order</option></select></label>
<label>class <select id="cls"><option value="">all</option>{options}</select></label>
<label>outcome <select id="outcome"><option value="">all</option><option value="right">right</option>
<option value="wrong">wrong</option></select></label>
<span id="shown">{len(cards)} shown</span></div>
<div id="gallery">
{chr(10).join(_card(r) for r in cards)}
</div>
<script>{_JS}</script>
</body></html>
"""


def write_report(run_dir: str | os.PathLike, dataset=None) -> str:
    """Write ``report.html`` of a finished run into ``run_dir`` (its links to the overlays are
    relative to that folder); returns its path.

    Args:
        run_dir: a run folder (``images.jsonl``, ``summary.json``, ``metrics.json``, ``overlays/``).
        dataset: the run's dataset for the per-image ground truth; default: reopened from
            ``config.json`` (none for image folders and image lists).

    Raises:
        DatasetError: ``run_dir`` is not a run folder.
    """
    from ..errors import DatasetError
    from ..run import outputs

    run_dir = os.path.abspath(os.fspath(run_dir))
    if not os.path.isfile(os.path.join(run_dir, outputs.IMAGES)):
        raise DatasetError(f"{run_dir}: not a run folder (no {outputs.IMAGES})")
    if dataset is None:
        dataset = open_run_dataset(run_dir)
    rows = gallery_rows(run_dir, dataset)
    page = render_report(run_dir, rows, _read(os.path.join(run_dir, outputs.METRICS)),
                         _read(os.path.join(run_dir, outputs.SUMMARY)), _read(os.path.join(run_dir, outputs.CONFIG)))
    path = os.path.join(run_dir, REPORT)
    outputs.atomic_write(path, [page.encode("utf-8")])
    return path
