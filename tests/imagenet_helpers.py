"""Test helpers for ImageNet-labelled data: a tiny 1000-class model and the demo set in other layouts.

``tiny_imagenet_classifier`` is a ``--model imagenet_helpers:tiny_imagenet_classifier`` factory: a
random (seed 0) conv net on 32x32 inputs whose output bias favours the six demo classes, so that
its top-5 guesses are demo classes and the figures of a demo run are neither all 0 nor all 1.

``demo_layouts(root)`` writes the demo set (``wsloc.paths.demo_annotations()``) as
* ``coco.json``: COCO, image ids 0..5 in sorted file-name order (as the XML and CSV readers number them);
* ``xml/Annotations/*.xml`` + ``xml/JPEGImages/``: ILSVRC / VOC XML (1-based inclusive box numbers);
* ``kaggle/LOC_val_solution.csv`` + ``kaggle/LOC_synset_mapping.txt`` + ``kaggle/ILSVRC/Data/CLS-LOC/val/``;
all with the same images (copies: the readers refuse links leading out of the image folder) and boxes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from wsloc import imagenet, paths
from wsloc.models import Preprocess, load_classifier

DEMO_CLASSES = (281, 967, 657, 812, 872, 665)


class TinyImageNetNet(nn.Module):
    """conv-relu-conv-relu-GAP-linear: [N, 3, 32, 32] -> [N, 1000] logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 1000)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def tiny_imagenet_classifier():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    net = TinyImageNetNet()
    torch.random.set_rng_state(state)
    with torch.no_grad():
        net.fc.bias.zero_()
        net.fc.bias[list(DEMO_CLASSES)] = 3.0
    return load_classifier(net, preprocess=Preprocess((32, 32)))


def demo_layouts(root: Path) -> dict:
    """Write the three layouts of the demo set under ``root``; returns their paths."""
    root = Path(root)
    src = json.loads(Path(paths.demo_annotations()).read_text())
    img_dir = Path(paths.demo_images_dir())
    images = sorted(src["images"], key=lambda im: im["file_name"])
    new_id = {im["id"]: k for k, im in enumerate(images)}
    coco_dir = root / "coco"
    (coco_dir / "images").mkdir(parents=True)
    xml = root / "xml"
    (xml / "Annotations").mkdir(parents=True)
    (xml / "JPEGImages").mkdir()
    kaggle = root / "kaggle"
    val = kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val.mkdir(parents=True)
    wnids = imagenet.wnids()
    rows = []
    for im in images:
        name = im["file_name"]
        for d in (coco_dir / "images", xml / "JPEGImages", val):
            shutil.copyfile(img_dir / name, d / name)
        anns = [a for a in src["annotations"] if a["image_id"] == im["id"]]
        objects, groups = [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            xmin, ymin, xmax, ymax = x + 1, y + 1, x + w, y + h  # continuous -> 1-based inclusive
            objects.append(f"<object><name>{wnids[a['category_id']]}</name><bndbox><xmin>{xmin}</xmin>"
                           f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
            groups.append(f"{wnids[a['category_id']]} {xmin} {ymin} {xmax} {ymax}")
        stem = os.path.splitext(name)[0]
        (xml / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}</filename><size><width>{im['width']}</width>"
            f"<height>{im['height']}</height><depth>3</depth></size>{''.join(objects)}</annotation>")
        rows.append(f"{stem},{' '.join(groups)}")
    (kaggle / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (kaggle / "LOC_synset_mapping.txt").write_text(
        "".join(f"{w} {n}\n" for w, n in zip(wnids, imagenet.full_names())))
    coco = {"images": [{**im, "id": new_id[im["id"]]} for im in images],
            "annotations": [{**a, "image_id": new_id[a["image_id"]]} for a in src["annotations"]],
            "categories": src["categories"]}
    (coco_dir / "annotations.json").write_text(json.dumps(coco))
    return {"coco": coco_dir / "annotations.json", "xml": xml, "csv": kaggle / "LOC_val_solution.csv"}
