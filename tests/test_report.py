"""``wsloc report RUN_DIR`` / ``wsloc localize --report``: one static HTML page per run (issue 14).

The page is checked as written (figures, size table, timings, one card per overlay with its IoU and
outcome) and, when Debian's Chromium is installed, in a real headless browser: the inline script
sorts the gallery worst IoU first and applies the class / right-wrong filters preset in the address.
"""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from wsloc.cli import main
from wsloc.evaluate.iou import box_iou
from wsloc.report import write_report
from wsloc.viz import save_png

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)

GT = [10, 10, 50, 50]  # COCO xywh of every image's box -> xyxy [10, 10, 60, 60]
#: (file, top-1 class, top-1 box xywh); image 3 failed to decode
GUESSES = [("a.png", 1, [10, 10, 50, 50]), ("b.png", 1, [10, 10, 30, 50]), ("c.png", 2, [10, 10, 20, 50]),
           ("d.png", None, None)]


def _iou(box):
    x, y, w, h = box
    return float(box_iou([x, y, x + w, y + h], [10, 10, 60, 60], "devkit")[0, 0])


@pytest.fixture()
def run_dir(tmp_path):
    """A finished run folder written by hand, with its COCO dataset (classes 1 'cat', 2 'dog')."""
    data, out = tmp_path / "data", tmp_path / "run"
    (data / "images").mkdir(parents=True)
    (out / "overlays").mkdir(parents=True)
    images, anns, lines = [], [], []
    for i, (name, cls, box) in enumerate(GUESSES):
        save_png(data / "images" / name, np.zeros((100, 100, 3), np.uint8))
        images.append({"id": 100 + i, "file_name": name, "width": 100, "height": 100})
        anns.append({"id": i + 1, "image_id": 100 + i, "category_id": 1, "bbox": GT})
        if cls is None:
            lines.append({"index": i, "image_id": 100 + i, "file_name": name, "path": "x", "status": "error",
                          "stage": "decode", "reason": "truncated file"})
            continue
        lines.append({"index": i, "image_id": 100 + i, "file_name": name, "status": "ok", "height": 100,
                      "width": 100, "results": [{"rank": 1, "category_id": cls, "name": ["", "cat", "dog"][cls],
                                                 "score": 0.8, "bbox": box}]})
        save_png(out / "overlays" / f"{i:07d}_{name[0]}.png", np.full((20, 30, 3), 40 * i, np.uint8))
    ann = data / "annotations.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns,
                               "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    (out / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (out / "config.json").write_text(json.dumps({"dataset": {"path": str(ann), "kind": "CocoDataset",
                                                             "image_root": str(data / "images")},
                                                 "localizer": {"model": "m", "method": "grad_cam", "top_k": 1}}))
    (out / "summary.json").write_text(json.dumps({"processed": 4, "wall_seconds": 10.0, "images_per_second": 0.4,
                                                  "stage_seconds": {"network": 6.0, "graph_cut": 2.5}}))
    (out / "metrics.json").write_text(json.dumps({
        "n_images": 4, "n_dataset_images": 9, "iou_convention_description": "devkit", "iou_threshold": 0.5,
        "top1_loc_error": 0.75, "top5_loc_error": 0.5, "gt_known_loc_acc": 0.25,
        "by_size": {"small (<25%)": {"n": 4, "top1_loc_error": 0.75, "top5_loc_error": 0.5,
                                     "gt_known_loc_acc": 0.25}}}))
    return out


def _cards(page: str) -> list[tuple[int, str]]:
    """(index, class attribute) of each gallery card in document order."""
    return [(int(m.group(2)), m.group(1)) for m in re.finditer(
        r"""<div class=["']([^"']*\bcard\b[^"']*)["'][^>]*data-index=["'](\d+)["']""", page)]


def test_page_lists_figures_timings_and_one_card_per_overlay(run_dir):
    page = open(write_report(run_dir), encoding="utf-8").read()
    assert os.path.basename(write_report(run_dir)) == "report.html"
    assert "<script src" not in page and "http" not in page.replace("http-equiv", "")  # no external resources
    assert "Top-1 localization error (ILSVRC CLS-LOC)</td><td>75.00 %" in page
    assert "4 images scored of the dataset&#x27;s 9" in page or "4 images scored of the dataset's 9" in page
    assert "small (&lt;25%)</td><td>4</td><td>75.00 %" in page
    assert "<td>network</td><td>6.00</td><td>60.0 %" in page
    assert _cards(page) == [(0, "card right"), (1, "card right"), (2, "card wrong"), (3, "card wrong")]
    for i, (_, _, box) in enumerate(GUESSES[:3]):
        assert f"data-index='{i}' data-iou='{_iou(box):.4f}'" in page
        assert f"src='overlays/{i:07d}_{GUESSES[i][0][0]}.png'" in page
    assert "data-cls='cat'" in page and "error: truncated file" in page
    assert _iou(GUESSES[1][2]) == pytest.approx(31 * 51 / 51 ** 2)  # devkit: +1 on every length


def test_report_command_and_a_folder_that_is_not_a_run(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run_dir / 'report.html'}"
    assert main(["report", str(tmp_path)]) == 1
    assert "wsloc report: error: " in capsys.readouterr().err


def _dump_dom(url: str, tmp_path) -> str:
    profile = tmp_path / f"profile{len(os.listdir(tmp_path))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_gallery_sorts_and_filters_in_headless_chromium(run_dir, tmp_path):
    url = "file://" + write_report(run_dir)
    dom = _dump_dom(url, tmp_path)
    assert 'data-gallery-ready="1"' in dom  # the script ran
    # worst IoU first: the failed image (no IoU), c (IoU of its box, wrong class), b, then a (IoU 1)
    assert [i for i, _ in _cards(dom)] == [3, 2, 1, 0]
    assert "4 of 4 shown" in dom
    dom = _dump_dom(url + "#sort=iou-desc&outcome=wrong", tmp_path)
    cards = _cards(dom)
    assert [i for i, _ in cards] == [0, 1, 2, 3]
    assert [i for i, c in cards if "hidden" not in c] == [2, 3] and "2 of 4 shown" in dom  # d failed: wrong
    dom = _dump_dom(url + "#sort=index&class=cat", tmp_path)
    assert [i for i, c in _cards(dom) if "hidden" not in c] == [0, 1, 2, 3]  # every image is a cat
    options = re.search(r'<select id="cls">(.*?)</select>', dom, re.S).group(1)
    assert re.findall(r'<option value="([^"]*)"', options) == ["", "cat"]  # the truth's classes, not the guesses
