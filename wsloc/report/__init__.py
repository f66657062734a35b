"""Reports people open in a browser: :func:`wsloc.report.html.write_report` (``wsloc report RUN_DIR``)."""

from .html import REPORT, write_report

__all__ = ["REPORT", "write_report"]
