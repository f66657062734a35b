"""The segmentation process's module stays free of torch (fast worker starts and restarts)."""

import pickle
import subprocess
import sys

import numpy as np

from wsloc.run.segment_worker import SegmentJob, segment_job
from wsloc.segment import SegmentConfig


def test_importing_the_worker_module_does_not_import_torch():
    code = ("import sys, wsloc.run.segment_worker as w; w._warm(); "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_pickled_job_gives_the_record_of_the_object():
    # a red rectangle on a dark background; the map is sure inside it (>= 40 % of its maximum), undecided
    # (between 20 and 40 %) on a band around it that reaches beyond it: the colours decide the band, and
    # the record's box is the rectangle's
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:30, 12:28] = (230, 60, 40)
    maps = np.zeros((1, 40, 40), np.float32)
    maps[0, 5:35, 6:34] = 0.3
    maps[0, 15:25, 16:24] = 1.0
    job = SegmentJob(index=0, image_id=7, file_name="a.png", path=None, image=image, maps=maps,
                     classes=np.array([3]), logits=np.array([2.5], np.float32), probs=np.array([0.9], np.float32),
                     names=["thing"], config=SegmentConfig(seed_rule="fraction", q_fg=40.0, q_bg=20.0, box_rule="union"))
    record, timings = segment_job(pickle.loads(pickle.dumps(job)))
    assert record["status"] == "ok" and record["image_id"] == 7 and (record["height"], record["width"]) == (40, 40)
    (r,) = record["results"]
    assert r["category_id"] == 3 and r["name"] == "thing" and r["rank"] == 1
    assert r["bbox"] == [12.0, 10.0, 16.0, 20.0]  # x, y, w, h of the square
    assert timings["segment_cpu"] >= 0
