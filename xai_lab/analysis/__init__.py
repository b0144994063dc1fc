"""Analysis of a study export: reliance and accuracy by arm, calibration, trial-level models,
peer-rated competence, the HTML report, and power by simulation."""

from xai_lab.analysis.analyze import Analysis, analyze_export, summary, write_outputs

__all__ = ["Analysis", "analyze_export", "summary", "write_outputs"]
