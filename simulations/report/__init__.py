"""The run report: a self-contained report.html with the run's losses, data, AdaDN, embeddings and timings."""

from __future__ import annotations

from simulations.report.build import REPORT_DIR, REPORT_FILE, write_run_report
from simulations.report.timings import TIMINGS_FILE, read_timings, write_timings

__all__ = ["REPORT_DIR", "REPORT_FILE", "TIMINGS_FILE", "read_timings", "write_run_report", "write_timings"]
