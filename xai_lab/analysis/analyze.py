"""`analyze_export`: an export folder in, `summary.json`, CSV tables and `report.html` out.

Each part runs on what it can: an export without ratings still gets its reliance analysis, a
vignette study without trials still gets its competence analysis, and every part that could
not run says why in `notes` (shown in the report and printed by the CLI).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xai_lab.analysis.comparison import ordered_arms
from xai_lab.analysis.competence import ItemResult, analyse_competence
from xai_lab.analysis.estimands import Estimands, estimate_all
from xai_lab.analysis.load import ExportTables, load_export
from xai_lab.analysis.reliance import (
    ECE_BINS,
    METRICS,
    Estimate,
    arm_metrics,
    calibration_bins,
    reliance_quadrant,
    trial_indicators,
)
from xai_lab.analysis.study_mrmc import StudyMRMC, study_mrmc
from xai_lab.analysis.trial_models import TrialModels, fit_trial_models
from xai_lab.study.design import order_arms

PRIMARY_ITEM = "competence"


@dataclass
class Analysis:
    tables: ExportTables
    by_arm: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    by_stratum: dict[str, dict[str, dict[str, Estimate]]] = field(default_factory=dict)
    n_participants: dict[str, int] = field(default_factory=dict)
    quadrant: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None
    trial_models: TrialModels | None = None
    competence: list[ItemResult] = field(default_factory=list)
    primary_item: str | None = None
    mrmc: StudyMRMC | None = None
    estimands: Estimands | None = None
    settings: dict = field(default_factory=dict)  # resamples, seed, models run: for the methods paragraph
    notes: list[str] = field(default_factory=list)


def analyze_export(directory: Path, resamples: int = 1000, seed: int = 0, mixed: bool = True,
                   primary_item: str | None = None) -> Analysis:
    tables = load_export(directory)
    analysis = Analysis(tables=tables, notes=list(tables.problems),
                        settings={"resamples": resamples, "seed": seed, "mixed": mixed})
    if tables.trials is not None and len(tables.trials):
        _trial_part(analysis, tables.trials, resamples, seed, mixed)
    elif tables.trials is not None:
        analysis.notes.append("the trials file has no answered trials: no accuracy or reliance metrics")
    if tables.ratings is not None and len(tables.ratings):
        analysis.competence = analyse_competence(tables.ratings)
        analysis.primary_item = _primary_item([r.item for r in analysis.competence], primary_item, analysis.notes)
        if not analysis.n_participants:
            analysis.n_participants = _raters_by_arm(tables)
    elif tables.ratings is not None:
        analysis.notes.append("the ratings file is empty: no peer-rated competence analysis")
    return analysis


def _primary_item(items: list[str], asked: str | None, notes: list[str]) -> str:
    if asked in items:
        return asked
    if asked is not None:
        notes.append(f"item {asked!r} was not rated; items: {', '.join(items)}")
    return PRIMARY_ITEM if PRIMARY_ITEM in items else items[0]


def _trial_part(analysis: Analysis, trials: pd.DataFrame, resamples: int, seed: int, mixed: bool) -> None:
    indicators = trial_indicators(trials)
    bins = []
    for arm in ordered_arms(trials["arm"]):
        rows = indicators[trials["arm"] == arm]
        analysis.n_participants[arm] = int(rows["participant_id"].nunique())
        analysis.by_arm[arm] = arm_metrics(rows, resamples, seed)
        bins.append(calibration_bins(rows, arm))
    allocated = _allocated_arms(analysis.tables)
    for arm in allocated - set(analysis.by_arm):
        analysis.notes.append(f"arm {arm!r} has participants but no answered trials: its metrics are null")
        analysis.n_participants[arm] = 0
    strata = _strata(analysis.tables, trials)
    if strata is not None:
        for (stratum, arm), rows in indicators.groupby([strata, trials["arm"]]):
            analysis.by_stratum.setdefault(str(stratum), {})[arm] = arm_metrics(rows, resamples, seed)
    analysis.quadrant = reliance_quadrant(trials)
    analysis.calibration = pd.concat(bins, ignore_index=True)
    analysis.trial_models = fit_trial_models(trials, mixed=mixed)
    analysis.estimands = estimate_all(analysis.tables, indicators)
    analysis.mrmc = study_mrmc(trials)
    analysis.notes += analysis.mrmc.notes


def _allocated_arms(tables: ExportTables) -> set[str]:
    if tables.participants is None:
        return set()
    arms = tables.participants["arm"].dropna().astype(str)
    return {part for arm in arms for part in order_arms(arm)}


def _strata(tables: ExportTables, trials: pd.DataFrame) -> pd.Series | None:
    if tables.participants is None:
        return None
    stratum = tables.participants.set_index("participant_id")["stratum"].astype(str)
    mapped = trials["participant_id"].map(stratum)
    return mapped if mapped.nunique() > 1 else None


def _raters_by_arm(tables: ExportTables) -> dict[str, int]:
    raters = set(tables.ratings["rater_id"])
    if tables.participants is None:
        return {"all": len(raters)}
    people = tables.participants[tables.participants["participant_id"].isin(raters)]
    return {arm: int(n) for arm, n in people.groupby("arm").size().items()}


# ---------------------------------------------------------------- outputs


def summary(analysis: Analysis) -> dict:
    """The JSON contract; `json_safe` turns every NaN into null on the way out."""
    result = {
        "n_participants": analysis.n_participants,
        "by_arm": {arm: {name: m[name].value for name in METRICS} for arm, m in analysis.by_arm.items()},
        "by_arm_ci": {arm: {name: [m[name].ci_low, m[name].ci_high] for name in METRICS}
                      for arm, m in analysis.by_arm.items()},
        "by_stratum": {s: {arm: {name: m[name].value for name in METRICS} for arm, m in arms.items()}
                       for s, arms in analysis.by_stratum.items()},
        "ece_bins": f"{ECE_BINS} equal-width bins of final confidence / 100 on [0, 1]",
        "competence": None,
        "competence_items": [item.to_json() for item in analysis.competence],
        "trial_models": analysis.trial_models.notes if analysis.trial_models else [],
        "trial_contrasts": (analysis.trial_models.contrasts.to_dict(orient="records")
                            if analysis.trial_models else []),
        "flow": analysis.tables.flow,
        "estimands": analysis.estimands.to_json() if analysis.estimands else None,
        "mrmc": analysis.mrmc.to_json() if analysis.mrmc else None,
        "notes": analysis.notes,
    }
    primary = next((item for item in analysis.competence if item.item == analysis.primary_item), None)
    if primary is not None:
        result["competence"] = primary.to_json()
    return json_safe(result)


def json_safe(value):
    """NaN and infinities become null: a metric that cannot be computed is null, never a number."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) or hasattr(value, "item"):
        number = float(value)
        if not math.isfinite(number):
            return None
        return int(number) if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu") \
            else number
    return value


def metrics_table(by_group: dict[str, dict[str, Estimate]], group: str = "arm") -> pd.DataFrame:
    rows = [{group: key, "metric": name, "estimate": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
             "n_trials": e.n} for key, metrics in by_group.items() for name, e in metrics.items()]
    return pd.DataFrame(rows, columns=[group, "metric", "estimate", "ci_low", "ci_high", "n_trials"])


def _mrmc_tables(mrmc: StudyMRMC | None) -> dict[str, pd.DataFrame]:
    """Per-reader AUCs and every contrast of the two MRMC analyses, with the generalisation named."""
    if mrmc is None:
        return {}
    readers, contrasts = [], []
    for comparison, result in (("sequential", mrmc.sequential), ("between_arms", mrmc.between_arms)):
        if result is None:
            continue
        readers += [{"comparison": comparison, "condition": condition, "reader": reader, "auc": auc}
                    for condition, by_reader in result.reader_foms().items() for reader, auc in by_reader.items()]
        for generalisation in ("random", "fixed_readers", "fixed_cases"):
            contrasts += [{"comparison": comparison, "generalisation": generalisation, **vars(c)}
                          for c in getattr(result, generalisation).contrasts]
    return {"mrmc_reader_auc": pd.DataFrame(readers), "mrmc_contrasts": pd.DataFrame(contrasts)} if readers else {}


def write_outputs(analysis: Analysis, out_dir: Path) -> dict[str, Path]:
    """summary.json, the CSV tables and report.html; returns what was written."""
    from xai_lab.analysis.report import render_report

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
            [{"item": r.item, "target_arm": arm, "mean": mean, "ci_low": r.mean_cis[arm][0],
              "ci_high": r.mean_cis[arm][1], "model": r.model} for r in analysis.competence
             for arm, mean in r.means.items()])
        contrast_rows = pd.DataFrame([{"item": r.item, **c} for r in analysis.competence for c in r.contrasts])
        base = ["item", "a", "b", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model"]
        # Cohen's d and its CI (ANOVA items) follow the contract's columns
        tables["competence_contrasts"] = contrast_rows.reindex(
            columns=base + [c for c in contrast_rows.columns if c not in base])
    tables.update(_mrmc_tables(analysis.mrmc))
    if analysis.estimands is not None and analysis.estimands.differences:
        tables["risk_differences"] = pd.DataFrame([r.to_json() for r in analysis.estimands.differences])
    for name, frame in tables.items():
        written[name] = out_dir / f"{name}.csv"
        frame.to_csv(written[name], index=False)
    written["summary"] = out_dir / "summary.json"
    written["summary"].write_text(json.dumps(summary(analysis), indent=2, allow_nan=False) + "\n")
    written["report"] = out_dir / "report.html"
    written["report"].write_text(render_report(analysis))
    return written
