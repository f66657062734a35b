"""``--targets gt``: one localization per annotated category of every image (GT-known protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_run_helpers import NUM_CLASSES, TINY, make_coco, scene, tiny_classifier
from wsloc.cli import main as cli_main
from wsloc.errors import MethodError
from wsloc.localizer import Localizer

CLI = ["--model", TINY, "--device", "cpu", "--batch-size", "4", "--workers", "0", "--segment-workers", "0",
       "--quiet", "--no-eval", "--targets", "gt"]


def _dataset(tmp_path, mapped: bool):
    """5 images; image i annotated with categories {i, i + 3} (two boxes of i + 3 on image 0); with
    ``mapped`` the categories are ids 100 + c mapped to class c, and category 104 has no class."""
    path = make_coco(tmp_path, 5, bad=())
    data = json.loads(path.read_text())
    anns = []
    for k, im in enumerate(data["images"]):
        for c in (k, k + 3) + ((k + 3,) if k == 0 else ()):
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": (100 + c) if mapped else c,
                         "bbox": [4 + len(anns) % 3, 4, 20, 16]})
    data["annotations"] = anns
    if mapped:
        data["categories"] = [{"id": 100 + c, "name": f"cat{c}", "imagenet_classes": [] if c == 4 else [c]}
                              for c in range(NUM_CLASSES)]
    path.write_text(json.dumps(data))
    return path, data


@pytest.mark.parametrize("mapped", [False, True])
def test_one_result_per_annotated_category(tmp_path, mapped):
    path, data = _dataset(tmp_path, mapped)
    out = tmp_path / "run"
    if mapped:  # image 4's categories 4 and 7: 104 has no class; drop 107 so that image 4 has nothing to localize
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 107]
        path.write_text(json.dumps(data))
    assert cli_main(["localize", str(path), "--out", str(out), "--overlays", "5", *CLI]) == 0
    res = json.loads((out / "results.json").read_text())
    want = {}
    for a in data["annotations"]:
        if not (mapped and a["category_id"] == 104):  # no ImageNet class: never localized
            want.setdefault(a["image_id"], set()).add(a["category_id"])
    got = {}
    for r in res:
        assert r["segmentation"]["size"] == [48, 64]
        got.setdefault(r["image_id"], []).append(r["category_id"])
    assert {i: sorted(v) for i, v in got.items()} == {i: sorted(v) for i, v in want.items()}  # each once
    lines = [json.loads(s) for s in (out / "images.jsonl").read_text().splitlines()]
    assert all(rec["status"] == "ok" for rec in lines) and len(lines) == 5
    assert (not mapped) or [rec["results"] for rec in lines if rec["image_id"] == 104] == [[]]


def test_network_given_classes_match_direct_maps():
    loc = Localizer(classifier=tiny_classifier(), preset="simonyan2014", device="cpu", top_k=2)
    x = loc.preprocess.batch([scene(i) for i in range(3)])
    out = loc.network(x, [[3, 1], [], [7, 7]])
    assert out.counts.tolist() == [2, 0, 1]
    maps, classes, _, probs = out.image(0)
    assert classes.tolist() == [3, 1] and maps.shape[0] == 2
    np.testing.assert_allclose(maps, loc.saliency(x[:1], [[3, 1]]).maps[0].numpy(), rtol=1e-5, atol=1e-7)
    assert out.image(1)[1].tolist() == [] and out.image(2)[1].tolist() == [7]
    res = loc.localize_batch([scene(i) for i in range(3)], wanted=[[3, 1], [], [7]])
    assert [[c.class_id for c in r.classes] for r in res] == [[3, 1], [], [7]]
    with pytest.raises(MethodError, match="class 12 is not one of the classifier's 10 classes"):
        loc.network(x, [[12], [], []])


def test_gt_targets_need_annotations(tmp_path, capsys):
    from test_run_helpers import make_folder

    folder = make_folder(tmp_path / "imgs", 2)
    assert cli_main(["localize", str(folder), "--out", str(tmp_path / "run"), *CLI]) != 0
    assert "--targets gt: the input has no annotations" in capsys.readouterr().err
