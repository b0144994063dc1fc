"""`write_outputs`: an `Analysis` as files - summary.json, one CSV per table, report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from xai_lab.analysis.report import render_report
from xai_lab.analysis.results import Analysis, metrics_table, mrmc_tables, summary
from xai_lab.private_files import write_private_csv, write_private_text


def write_outputs(analysis: Analysis, out_dir: Path) -> dict[str, Path]:
    """summary.json, the CSV tables and report.html; returns what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tables = {"metrics_by_arm": metrics_table(analysis.by_arm)}
    if analysis.by_stratum:
        tables["metrics_by_stratum"] = pd.concat(
            [metrics_table(arms).assign(stratum=s) for s, arms in analysis.by_stratum.items()], ignore_index=True)
    if analysis.quadrant is not None:
        tables["reliance_quadrant"] = analysis.quadrant
    if analysis.calibration is not None:
        tables["calibration_bins"] = analysis.calibration
    if analysis.trial_models is not None and not analysis.trial_models.coefficients.empty:
        tables["trial_models"] = analysis.trial_models.coefficients
        tables["trial_contrasts"] = analysis.trial_models.contrasts
    if analysis.competence:
        tables["competence_means"] = pd.DataFrame(
            [{"item": r.item, "rating_kind": r.kind, "target_arm": arm, "mean": mean, "ci_low": r.mean_cis[arm][0],
              "ci_high": r.mean_cis[arm][1], "model": r.model} for r in analysis.competence
             for arm, mean in r.means.items()])
        contrast_rows = pd.DataFrame([{"item": r.item, "rating_kind": r.kind, **c} for r in analysis.competence
                                      for c in r.contrasts])
        base = ["item", "rating_kind", "a", "b", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model"]
        # Cohen's d and its CI (ANOVA items) follow the contract's columns
        tables["competence_contrasts"] = contrast_rows.reindex(
            columns=base + [c for c in contrast_rows.columns if c not in base])
    tables.update(mrmc_tables(analysis.mrmc))
    if analysis.estimands is not None and analysis.estimands.differences:
        tables["risk_differences"] = pd.DataFrame([r.to_json() for r in analysis.estimands.differences])
    for name, frame in tables.items():
        written[name] = out_dir / f"{name}.csv"
        write_private_csv(written[name], frame)  # participants' results: 0600, no cell runs as a formula
    written["summary"] = out_dir / "summary.json"
    write_private_text(written["summary"], json.dumps(summary(analysis), indent=2, allow_nan=False) + "\n")
    written["report"] = out_dir / "report.html"
    write_private_text(written["report"], render_report(analysis))
    return written
