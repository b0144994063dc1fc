"""`analyze_export`: an export folder in, an `Analysis` out (`outputs.write_outputs` writes it).

Each part runs on what it can: an export without ratings still gets its reliance analysis, a
vignette study without trials still gets its competence analysis, and every part that could
not run says why in `notes` (shown in the report and printed by the CLI).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xai_lab.analysis.comparison import ordered_arms
from xai_lab.analysis.competence import analyze_competence
from xai_lab.analysis.deviations import check_preregistration
from xai_lab.analysis.estimands import estimate_all
from xai_lab.analysis.load import ExportTables, load_export
from xai_lab.analysis.preregistration import Lock
from xai_lab.analysis.reliance import (
    arm_metrics,
    calibration_bins,
    reliance_quadrant,
    trial_indicators,
)
from xai_lab.analysis.results import Analysis
from xai_lab.analysis.study_mrmc import study_mrmc
from xai_lab.analysis.trial_models import fit_trial_models
from xai_lab.study.design import order_arms

# The item a report leads with when the design names none (the construct the peer-rating literature measures).
PRIMARY_ITEM = "competence"



def analyze_export(directory: Path, resamples: int = 1000, seed: int = 0, mixed: bool = True,
                   primary_item: str | None = None, rehearsal: bool = False, allow_partial: bool = False,
                   preregistration: Lock | None = None) -> Analysis:
    tables = load_export(directory, rehearsal=rehearsal, allow_partial=allow_partial)
    analysis = Analysis(tables=tables, notes=list(tables.problems),
                        settings={"resamples": resamples, "seed": seed, "mixed": mixed},
                        preregistration=check_preregistration(preregistration, tables.design, tables.history,
                                                              rehearsal))
    if tables.trials is not None and len(tables.trials):
        _trial_part(analysis, tables.trials, resamples, seed, mixed)
    elif tables.trials is not None:
        analysis.notes.append("the trials file has no answered trials: no accuracy or reliance metrics")
    if tables.ratings is not None and len(tables.ratings):
        design_kind = ((tables.design or {}).get("peer_rating") or {}).get("kind")
        analysis.competence = analyze_competence(tables.ratings, first_kind=design_kind)
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
