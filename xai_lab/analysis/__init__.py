"""Analysis of a study export: reliance and accuracy by arm, calibration, trial-level models,
peer-rated competence, the HTML report, and power by simulation."""

from xai_lab.analysis.analyze import analyze_export
from xai_lab.analysis.outputs import write_outputs
from xai_lab.analysis.results import Analysis, summary

__all__ = ["Analysis", "analyze_export", "summary", "write_outputs"]
