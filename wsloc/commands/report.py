"""``wsloc report RUN_DIR``: write the run's static HTML page, ``RUN_DIR/report.html``."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write a static HTML page of a localization run (figures, timings, overlay gallery)",
        description="Write RUN_DIR/report.html: the evaluation figures, the table by object size, the stage "
                    "timings and a gallery of the run's overlay pictures that can be sorted by IoU and filtered "
                    "by class and by right/wrong. One self-contained file with relative links to RUN_DIR/overlays; "
                    "open it in any browser, no server needed.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `wsloc localize` run folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0
