"""Class maps (wsloc.labels): folding logits into dataset categories, reading maps, Localizer and CLI use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_run_helpers import NUM_CLASSES, TINY, make_coco, scene, tiny_classifier
from wsloc.cli import main as cli_main
from wsloc.errors import DatasetError
from wsloc.labels import ClassMap, fold_logits
from wsloc.localizer import Localizer


def test_fold_two_categories_by_hand():
    # 4 classes, category A = {0, 1}, category B = {2, 3}
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    z = np.log(np.exp(logits.numpy()).sum(1))  # log of each row's softmax denominator
    folded, probs, best = fold_logits(logits, [(0, 1), (2, 3)], "max")
    assert folded.tolist() == [[3.0, 2.0], [0.0, 5.0]]
    assert best.tolist() == [[1, 2], [0, 3]]  # ties (row 2, category A): the lower index
    np.testing.assert_allclose(probs.numpy(), np.exp(folded.numpy() - z[:, None]), rtol=1e-6)
    folded, probs, best = fold_logits(logits, [(0, 1), (2, 3)], "logsumexp")
    np.testing.assert_allclose(folded.numpy(), [[np.log(np.e + np.e ** 3), np.log(np.e ** 2 + 1)],
                                                [np.log(2.0), np.log(1 + np.e ** 5)]], rtol=1e-6)
    p = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(probs.numpy(), [[p[0, 0] + p[0, 1], p[0, 2] + p[0, 3]],
                                               [p[1, 0] + p[1, 1], p[1, 2] + p[1, 3]]], rtol=1e-6)
    assert best.tolist() == [[1, 2], [0, 3]]  # the map is always the best member's


def test_map_sources_and_errors(tmp_path):
    cats = {1: "cat", 2: "dog", 3: "person"}
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"dog": [5, 4, 5], "1": [0]}))
    m = ClassMap.from_file(js, cats)
    assert m.ids == (1, 2) and m.members == ((0,), (4, 5)) and m.unmapped == ((3, "person"),)
    assert "2 of 3 categories" in m.describe() and "never predicted (no classifier class): person" in m.describe()
    cs = tmp_path / "map.csv"
    cs.write_text("category,imagenet_classes\ndog,4;5\ncat,0\ndog,6\n")
    m = ClassMap.from_file(cs, cats)
    assert m.ids == (1, 2) and m.members == ((0,), (4, 5, 6))
    cs.write_text("horse,3\n")
    with pytest.raises(DatasetError, match="'horse' is not one of the dataset's categories"):
        ClassMap.from_file(cs, cats)
    with pytest.raises(DatasetError, match="none of the 3 categories has a classifier"):
        ClassMap.from_entries([{"id": c, "name": n, "imagenet_classes": []} for c, n in cats.items()])
    with pytest.raises(DatasetError, match="lists class 12, but the classifier has only 10"):
        ClassMap.from_entries([{"id": 1, "imagenet_classes": [12]}]).check(10)


@pytest.fixture(scope="module")
def plain():
    return Localizer(classifier=tiny_classifier(), preset="simonyan2014", device="cpu", top_k=2)


def test_identity_map_reproduces_the_unmapped_run(plain):
    # each category one class, id = class index: folding must change nothing
    entries = [{"id": c, "name": f"class{c}", "imagenet_classes": [c]} for c in range(NUM_CLASSES)]
    mapped = Localizer(classifier=tiny_classifier(), preset="simonyan2014", device="cpu", top_k=2,
                       class_map=entries)
    x = plain.preprocess.batch([scene(i) for i in range(3)])
    a, b = plain.network(x), mapped.network(x)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5)
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-7)
    assert plain.config.result_fields()["class_map"] is None and mapped.config.result_fields()["class_map"] == entries


def test_two_category_map_in_the_localizer(plain):
    entries = [{"id": 101, "name": "low", "imagenet_classes": [0, 1, 2, 3, 4]},
               {"id": 202, "name": "high", "imagenet_classes": [5, 6, 7, 8]},
               {"id": 303, "name": "none", "imagenet_classes": []}]
    loc = Localizer(classifier=tiny_classifier(), preset="simonyan2014", device="cpu", top_k=5,
                    class_map=entries)
    assert loc.top_k == 2  # only two categories can be predicted
    x = loc.preprocess.batch([scene(i) for i in range(2)])
    out = loc.network(x)
    with torch.no_grad():
        logits = tiny_classifier().model(x)
    for i in range(2):
        by_cat = {101: logits[i, :5], 202: logits[i, 5:9]}
        order = sorted(by_cat, key=lambda c: -float(by_cat[c].max()))
        assert out.classes[i].tolist() == order
        best = [int(by_cat[c].argmax()) + (0 if c == 101 else 5) for c in order]
        np.testing.assert_allclose(out.probs[i], torch.softmax(logits[i], 0)[best].numpy(), rtol=1e-5)
        # the map of a category is its best member's map
        np.testing.assert_allclose(out.maps[i], plain.saliency(x[i:i + 1], torch.tensor([best])).maps[0].numpy(),
                                   rtol=1e-5, atol=1e-7)
    assert loc.names_of(out.classes[0]) == ["low" if c == 101 else "high" for c in out.classes[0]]
    from wsloc.localizer import LocalizerConfig

    assert LocalizerConfig.from_dict(json.loads(json.dumps(loc.config.to_dict()))) == loc.config  # config.json
    assert loc.config.result_fields()["class_map"][2] == {"id": 303, "name": "none", "imagenet_classes": []}


def _coco_with(tmp_path, members):
    path = make_coco(tmp_path, 4, bad=())
    data = json.loads(path.read_text())
    for c in data["categories"]:
        c["imagenet_classes"] = members(c["id"])
    path.write_text(json.dumps(data))
    return path


CLI = ["--model", TINY, "--device", "cpu", "--batch-size", "4", "--workers", "0", "--segment-workers", "0",
       "--quiet", "--no-eval"]


def test_cli_uses_the_datasets_map(tmp_path, capsys):
    # categories 0..9; the even ones map to class c + 1, the odd ones to nothing
    path = _coco_with(tmp_path, lambda c: [c + 1] if c % 2 == 0 and c + 1 < NUM_CLASSES else [])
    out = tmp_path / "run"
    assert cli_main(["localize", str(path), "--out", str(out), "--top-k", "3", *CLI]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res and {r["category_id"] for r in res} <= {0, 2, 4, 6, 8}
    cfg = json.loads((out / "config.json").read_text())["localizer"]
    assert [e["id"] for e in cfg["class_map"] if e["imagenet_classes"]] == [0, 2, 4, 6, 8]


def test_cli_dataset_without_any_mapped_category_is_a_clear_error(tmp_path, capsys):
    path = _coco_with(tmp_path, lambda c: [])
    assert cli_main(["localize", str(path), "--out", str(tmp_path / "run"), *CLI]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("wsloc localize: error: ") and "none of the 10 categories has a classifier" in err[-1]
    assert not (tmp_path / "run" / "results.json").exists()


def test_cli_class_map_file_and_its_scoring(tmp_path):
    path = make_coco(tmp_path, 4, bad=())  # categories 0..9 without imagenet_classes
    cm = tmp_path / "map.csv"
    cm.write_text("category,imagenet_classes\nclass0,3\nclass2,5 6\n")
    out = tmp_path / "run"
    assert cli_main(["localize", str(path), "--out", str(out), "--class-map", str(cm),
                     *[a for a in CLI if a != "--no-eval"]]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["category_id"] for r in res} == {0, 2}  # top-5 lowered to the 2 mapped categories
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mask_categories"] == [0, 2]  # scored on what the map can predict
