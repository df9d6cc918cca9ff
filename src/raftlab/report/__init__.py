"""Study report: matplotlib figures (PNG + PDF), CSV/JSON/LaTeX tables, one self-contained HTML page."""

from raftlab.report.data import Interval, OLSFit, OutputSample, ReliabilityBin, ReportData, TaskSummary
from raftlab.report.render import REPORT_FILE, render_report

__all__ = ["REPORT_FILE", "Interval", "OLSFit", "OutputSample", "ReliabilityBin", "ReportData", "TaskSummary",
           "render_report"]
