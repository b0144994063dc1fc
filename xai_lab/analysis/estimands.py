"""The declared estimand and everything around it: primary and secondary risk differences, the
analysis population, sensitivity analyses, small-sample warnings and the sample size it needs.

The study's `design.json` (written by `xai-lab export`) carries `[analysis]`: the primary metric,
its contrast "a - b", the secondary family and the effect the study was sized for. Without it the
defaults are over-reliance, rely - verify (accuracy_final and the first two arms when those are
missing), and the report says they were not declared.

Between-participant designs use `risk_difference.crossed_risk_difference` (participants and cases random);
crossover designs the period-adjusted paired analysis of `crossover`; factorial designs (`[factors]`)
the factor contrasts and interactions of `factorial`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import pandas as pd

from xai_lab.analysis.comparison import ordered_arms
from xai_lab.analysis.crossover import CrossoverResult, crossover_analysis
from xai_lab.analysis.factorial import (
    FactorSpec,
    cell_rates,
    factor_contrast,
    factors_of,
    interaction,
    small_cell_warnings,
)
from xai_lab.analysis.load import ExportTables
from xai_lab.analysis.risk_difference import (
    MIN_CASE_DF_FOR_SIZING,
    RiskDifference,
    crossed_risk_difference,
    participants_needed,
    secondary_family,
    variance_parts,
)
from xai_lab.study.design import AI_METRICS, RATE_METRICS

MIN_PER_ARM = 10
MIN_AI_WRONG_CASES = 5


@dataclass
class Declared:
    primary: str
    a: str
    b: str
    secondary: tuple[str, ...]
    effect: float | None
    declared: bool
    factor: str = ""  # factorial designs: the factor whose levels a and b are
    interaction: tuple[str, ...] = ()  # factorial designs: the two factors whose interaction is the primary


@dataclass
class Estimands:
    declared: Declared
    primary: RiskDifference | None
    secondary: list[RiskDifference] = field(default_factory=list)
    differences: list[RiskDifference] = field(default_factory=list)  # every rate metric x arm pair
    sensitivity: list[tuple[str, RiskDifference | None]] = field(default_factory=list)
    crossover: dict[str, CrossoverResult] = field(default_factory=dict)
    population: str = ""
    warnings: list[str] = field(default_factory=list)
    needed_per_arm: int | None = None
    needed_note: str = ""
    # factorial designs: interactions of every pair of factors on the primary metric, and its rate per condition
    interactions: list[RiskDifference] = field(default_factory=list)
    cells: pd.DataFrame | None = None

    def to_json(self) -> dict:
        return {"declared": vars(self.declared), "primary": self.primary.to_json() if self.primary else None,
                "secondary": [r.to_json() for r in self.secondary],
                "risk_differences": [r.to_json() for r in self.differences],
                "sensitivity": [{"population": name, **(r.to_json() if r else {})} for name, r in self.sensitivity],
                "crossover": {m: c.to_json() for m, c in self.crossover.items()},
                "population": self.population,
                "warnings": self.warnings, "participants_needed_per_arm": self.needed_per_arm,
                "participants_needed_note": self.needed_note,
                "interactions": [r.to_json() for r in self.interactions],
                "cells": [] if self.cells is None else self.cells.to_dict(orient="records")}


def declared_estimand(tables: ExportTables, arms_present: list[str]) -> Declared:
    return declared_in(tables.design or {}, arms_present)


def declared_in(design: dict, arms_present: list[str]) -> Declared:
    """The `[analysis]` of a design (as `design.json` holds it), or the defaults for these arms."""
    spec = design.get("analysis") or {}
    if spec.get("primary") and spec.get("interaction"):
        first, second = spec["interaction"]
        return Declared(spec["primary"], first, second, tuple(spec.get("secondary") or ()), None, True,
                        interaction=(first, second))
    if spec.get("primary"):
        a, b = spec["contrast"]
        return Declared(spec["primary"], a, b, tuple(spec.get("secondary") or ()), spec.get("effect"), True,
                        spec.get("factor") or "")
    arms = ordered_arms(arms_present)
    if {"verify", "rely"} <= set(arms):
        a, b, primary = "rely", "verify", "over_reliance"
    else:
        a, b = (arms[-1], arms[0]) if len(arms) > 1 else (arms[0], arms[0])
        primary = "accuracy_final"
    secondary = tuple(m for m in RATE_METRICS if m != primary and not (m in AI_METRICS and "control" in (a, b)))
    return Declared(primary, a, b, secondary, None, False)


def estimate_all(tables: ExportTables, indicators: pd.DataFrame, alpha: float = 0.05) -> Estimands:
    arms = ordered_arms(indicators["arm"])
    declared = declared_estimand(tables, arms)
    factors = factors_of(tables.design or {})
    if (declared.factor or declared.interaction) and factors:
        return _factorial(tables, indicators, declared, factors, alpha)
    result = Estimands(declared, None)
    if declared.a == declared.b or not {declared.a, declared.b} <= set(arms):
        result.warnings.append(f"the declared contrast {declared.a} - {declared.b} needs trials in both arms; the "
                               "primary estimand could not be estimated")
        return result
    contrast = design_contrast(tables.within, _sequences(tables), indicators, alpha, result.crossover)
    result.primary, result.secondary = declared_tests(contrast, indicators, declared)
    if not tables.within:
        # one sign convention in the whole report: the declared contrast's pair keeps its declared order
        pairs = [(b, a) if (b, a) == (declared.a, declared.b) else (a, b)
                 for i, a in enumerate(arms) for b in arms[i + 1:]]
        result.differences = [crossed_risk_difference(indicators, metric, a, b, alpha)
                              for metric in RATE_METRICS for a, b in pairs
                              if not (metric in AI_METRICS and "control" in (a, b))]
    result.sensitivity = _sensitivity(tables, indicators, declared, contrast)
    result.population = _population(tables, indicators)
    result.warnings += _small_sample_warnings(indicators, declared)
    _sample_size(result, indicators, alpha, tables.within)
    return result


def _factorial(tables: ExportTables, indicators: pd.DataFrame, declared: Declared, factors: tuple[FactorSpec, ...],
               alpha: float) -> Estimands:
    """A factorial design's estimands: the declared factor contrast, its Holm-adjusted secondary family,
    every other factor's levels against its first, every pairwise interaction and the rate per condition."""
    result = Estimands(declared, None)
    missing = [f.column for f in factors if f.column not in indicators.columns]
    if missing:
        result.warnings.append(f"the trials file lacks {', '.join(missing)}: export the study again with this "
                               "xai-lab; the factor contrasts could not be estimated")
        return result

    contrast = declared_factor_test(declared, factors, alpha)
    result.primary, result.secondary = declared_tests(contrast, indicators, declared)
    for factor in factors:
        for level in factor.levels[1:]:
            metrics = [m for m in RATE_METRICS if not (factor.name == "workflow" and m in AI_METRICS
                                                       and "control" in (level, factor.levels[0]))]
            result.differences += [factor_contrast(indicators, factors, m, factor.name, level, factor.levels[0], alpha)
                                   for m in metrics]
    result.interactions = [interaction(indicators, factors, declared.primary, first.name, second.name, alpha)
                           for i, first in enumerate(factors) for second in factors[i + 1:]]
    result.cells = cell_rates(indicators, factors, declared.primary)
    result.sensitivity = _sensitivity(tables, indicators, declared, contrast)
    result.population = _population(tables, indicators)
    result.warnings += small_cell_warnings(indicators, factors) + _wrong_advice_warning(indicators, declared)
    result.needed_note = ("A factorial study is sized by simulation: `xai-lab power --design DESIGN --effect "
                          "over_reliance:FACTOR.LEVEL=P,FACTOR.OTHER=Q --effect case_arm_sd=1.0` runs this analysis "
                          "on simulated studies with the effect planted per level (docs/analysis.md).")
    return result


def declared_factor_test(declared: Declared, factors: tuple[FactorSpec, ...], alpha: float):
    """The declared test of a factorial design, as a function of (rows, metric, a, b): the factor's
    contrast of a and b, or the declared interaction (a and b then name its two factors)."""
    def contrast(rows: pd.DataFrame, metric: str, a: str, b: str) -> RiskDifference:
        if declared.interaction:
            return interaction(rows, factors, metric, *declared.interaction, alpha=alpha)
        return factor_contrast(rows, factors, metric, declared.factor, a, b, alpha)
    return contrast


def declared_tests(contrast, indicators: pd.DataFrame, declared: Declared
                   ) -> tuple[RiskDifference, list[RiskDifference]]:
    """The primary test and the Holm-adjusted secondary family, as declared: what the report states
    and what `xai-lab power --design` simulates."""
    primary = contrast(indicators, declared.primary, declared.a, declared.b)
    return primary, secondary_family([contrast(indicators, m, declared.a, declared.b) for m in declared.secondary])


def design_contrast(within: bool, sequence: pd.Series, indicators: pd.DataFrame, alpha: float,
                    kept: dict[str, CrossoverResult] | None = None):
    """The primary analysis of a design: the crossed test (between) or the crossover analysis (within),
    which keeps each metric's full result (period, carryover, flow) in `kept`."""
    return (_crossover_contrast(sequence, indicators, alpha, {} if kept is None else kept) if within
            else partial(crossed_risk_difference, alpha=alpha))


def _sequences(tables: ExportTables) -> pd.Series:
    return tables.participants.set_index("participant_id")["arm"] if tables.participants is not None else \
        pd.Series(dtype=str)


def _crossover_contrast(sequence: pd.Series, indicators: pd.DataFrame, alpha: float,
                        kept: dict[str, CrossoverResult]):
    def contrast(rows, metric, a, b):
        analysis = crossover_analysis(rows, sequence, metric, a, b, alpha)
        if rows is indicators:
            kept[metric] = analysis
        effect = analysis.arm_effect
        people = rows[rows[metric].notna()]
        return RiskDifference(metric, a, b, effect.estimate, effect.se, effect.df, effect.ci_low, effect.ci_high,
                              effect.p_value, int(people.loc[people["arm"] == a, "participant_id"].nunique()),
                              int(people.loc[people["arm"] == b, "participant_id"].nunique()),
                              int(people["case_id"].nunique()),
                              "crossover: period-adjusted paired difference, participants and cases random",
                              note="; ".join(analysis.notes))
    return contrast


def _sensitivity(tables: ExportTables, indicators: pd.DataFrame, declared: Declared, contrast) -> list:
    people = tables.participants
    rows = [("all available trials (primary)", None)]
    if people is None:
        return rows
    subsets = {"completers only": people.loc[people["status"].astype(str) == "completed", "participant_id"]}
    if "attention_failures" in people.columns:
        passed = pd.to_numeric(people["attention_failures"], errors="coerce").fillna(0) == 0
        subsets["passed every attention check"] = people.loc[passed, "participant_id"]
    for name, members in subsets.items():
        subset = indicators[indicators["participant_id"].isin(set(members.astype(str)))]
        rows.append((name, contrast(subset, declared.primary, declared.a, declared.b) if len(subset) else None))
    attended = _attended_trials(tables, indicators)
    if attended is not None:
        name, subset = attended
        rows.append((name, contrast(subset, declared.primary, declared.a, declared.b) if len(subset) else None))
    return rows


def _attended_trials(tables: ExportTables, indicators: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """The trials the reader stayed on: away (tab hidden, or the window without focus, as jsPsych's
    interaction data counts leaving) for at most the design's analysis.max_hidden_share of their reading
    time; None when the export has no attention telemetry. Trials without telemetry count as attended."""
    trials = tables.trials
    if trials is None or "hidden_ms" not in trials.columns or trials["hidden_ms"].isna().all() or \
            not indicators.index.isin(trials.index).all():
        return None
    limit = float(((tables.design or {}).get("analysis") or {}).get("max_hidden_share", 0.1))
    reading = pd.to_numeric(trials["rt_final_ms"], errors="coerce").fillna(0)
    if "rt_initial_ms" in trials.columns:
        reading = reading + pd.to_numeric(trials["rt_initial_ms"], errors="coerce").fillna(0)
    away_ms = pd.to_numeric(trials["hidden_ms"], errors="coerce")
    if "blurred_ms" in trials.columns:
        away_ms = away_ms.combine(pd.to_numeric(trials["blurred_ms"], errors="coerce"), max)
    away = (away_ms / reading.where(reading > 0)) > limit
    left_out = int(away.loc[indicators.index].sum())
    name = (f"trials with the tab hidden or the window unfocused at most {limit:.0%} of their reading time "
            f"({left_out} left out)")
    return name, indicators[~away.loc[indicators.index].to_numpy()]


def _population(tables: ExportTables, indicators: pd.DataFrame) -> str:
    analysed = indicators["participant_id"].nunique()
    people = tables.participants
    if people is None:
        return (f"Available-case analysis: every answered main trial in the trials file, {analysed} participants. "
                "The export has no participants file, so pilots, simulated participants and people who did not "
                "complete could not be told apart: all are included, and no sensitivity analysis could be run.")
    if tables.rehearsal:
        who = "every participant, simulated and pilot ones included (a rehearsal)"
    else:
        who = "every participant who is neither simulated nor a pilot"
    text = f"Available-case analysis: every answered main trial of {who}, {analysed} participants"
    unfinished = people[people["participant_id"].isin(indicators["participant_id"])
                        & (people["status"].astype(str) != "completed")]
    text += f", of whom {len(unfinished)} did not complete (their answered trials are included)"
    withdrawn = sum(arm.get("withdrawn", 0) for arm in ((tables.flow or {}).get("by_arm") or {}).values())
    if withdrawn and ((tables.design or {}).get("withdrawal") == "delete"):
        text += (f"; {withdrawn} withdrew and had their answers deleted as the consent promised, so they "
                 "contribute none")
    return text + ". Completers-only and attention-check sensitivity analyses are shown beside the primary result."


def _small_sample_warnings(indicators: pd.DataFrame, declared: Declared) -> list[str]:
    warnings = []
    for arm, count in indicators.groupby("arm")["participant_id"].nunique().items():
        if count < MIN_PER_ARM:
            warnings.append(f"Arm {arm} has only {count} participants (fewer than {MIN_PER_ARM}): its intervals are "
                            "wide and rest on few people; treat the results as a pilot.")
    return warnings + _wrong_advice_warning(indicators, declared)


def _wrong_advice_warning(indicators: pd.DataFrame, declared: Declared) -> list[str]:
    if declared.primary in ("over_reliance", "agreement", "under_reliance"):
        wrong = indicators.loc[indicators["over_reliance"].notna(), "case_id"].nunique()
        if wrong < MIN_AI_WRONG_CASES:
            return [f"Only {wrong} cases carried wrong AI advice (fewer than {MIN_AI_WRONG_CASES}): over-reliance "
                    "rests on very few cases, so its uncertainty is large and case-specific."]
    return []


def _sample_size(result: Estimands, indicators: pd.DataFrame, alpha: float, within: bool) -> None:
    declared = result.declared
    if declared.effect is None:
        result.needed_note = ("No effect size was declared ([analysis] effect): declare the risk difference the "
                              "study is sized for to see the participants it needs.")
        return
    simulate = ("`xai-lab power --design DESIGN --effect case_arm_sd=...` simulates the declared test with the "
                "case-to-case variation you assume")
    if within:
        result.needed_note = ("A crossover study is sized by simulation, not from this study's variances: "
                              + simulate + ".")
        return
    s2_a, s2_b, case_part, case_df = variance_parts(indicators, declared.primary, declared.a, declared.b)
    if case_df < MIN_CASE_DF_FOR_SIZING:
        # The statistics audit (issue 26) found the formula's answer ranged 14-361 participants over 40
        # simulated 20-per-arm pilots with 6 wrong-advice cases: a case variance on 5 df cannot size a study.
        result.needed_note = (f"Not estimated: the primary metric rests on {int(case_df) + 1} cases, too few to "
                              f"estimate the case-to-case variation a sample size depends on (at least "
                              f"{MIN_CASE_DF_FOR_SIZING + 1} needed). " + simulate + ".")
        return
    result.needed_per_arm = participants_needed(s2_a, s2_b, case_part, declared.effect, case_df, alpha)
    if result.needed_per_arm is None:
        result.needed_note = (f"With these cases, no number of participants reaches 80% power for a difference "
                              f"of {declared.effect:g}: the case-to-case variation alone is too large. Add cases.")
    else:
        result.needed_note = (f"For 80% power (two-sided alpha {alpha:g}) to detect the declared difference of "
                              f"{declared.effect:g}, about {result.needed_per_arm} participants per arm are needed, "
                              "with the variances estimated here, the same cases and the t reference of the test.")
