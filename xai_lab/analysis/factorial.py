"""Factorial designs (a design's `[factors]`): contrasts of a factor's levels, interactions, cell rates.

    result = factor_contrast(indicators, factors, "over_reliance", "explanation", "contour", "none")

`indicators` are `reliance.trial_indicators` rows with one `factor_<name>` column per factor (the
export's). Every estimate is a fixed linear combination of trial outcomes, sum_pk w_pk y_pk, whose
weights follow from the design, and its variance treats participants and cases as crossed random
factors by the method of moments of `crossover.crossed_linear_effect` (V_P + V_C - V_E, floored,
t on Satterthwaite df):

- a **within** factor's contrast a - b: each participant's rate at a minus their rate at b (paired),
  averaged over participants; only participants who read both levels count;
- a **between** factor's contrast: the crossed between-arm risk difference of `risk_difference`,
  participants' rates averaged over the within levels (which the rotation balances);
- an **interaction** of two factors (their first two levels): the contrast of the first factor's
  levels at the second's first level minus the same at its second level, each participant's paired
  difference where the factor varies within them, the group means where it varies between.

Why these and not a GLMM: statsmodels has no frequentist logistic model with crossed random effects,
and on the probability scale the estimand is the risk difference the design declares; the same
moment estimator is validated for the between and crossover designs (tests/test_estimand.py), and
for these contrasts by simulation in tests/test_factorial_validity.py (type I error with case-by-
condition heterogeneity, coverage of planted effects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from xai_lab.analysis.crossover import crossed_linear_effect
from xai_lab.analysis.risk_difference import RiskDifference, crossed_risk_difference

MIN_PER_CELL = 10


@dataclass(frozen=True)
class FactorSpec:
    """A factor as the analysis needs it (read from design.json)."""

    name: str
    vary: str
    levels: tuple[str, ...]

    @property
    def column(self) -> str:
        return f"factor_{self.name}"


def factors_of(design: dict) -> tuple[FactorSpec, ...]:
    return tuple(FactorSpec(f["name"], f["vary"], tuple(f["levels"])) for f in design.get("factors") or ())


def factor_contrast(indicators: pd.DataFrame, factors: tuple[FactorSpec, ...], metric: str, factor: str, a: str,
                    b: str, alpha: float = 0.05) -> RiskDifference:
    """The risk difference between levels a and b of `factor`, participants and cases random."""
    spec = _named(factors, factor)
    if spec.vary == "between":
        by_level = indicators.assign(arm=indicators[spec.column])
        result = crossed_risk_difference(by_level, metric, a, b, alpha)
        return RiskDifference(**{**vars(result), "a": f"{factor}={a}", "b": f"{factor}={b}",
                                 "method": f"{factor} (between): crossed participants x cases"})
    rows = _applicable(indicators, factors, metric)
    rows = rows[rows[spec.column].isin([a, b])]
    sign = np.where(rows[spec.column] == a, 1.0, -1.0)
    weights, kept = _paired_weights(rows, sign, [spec.column], groups=None)
    name = f"{factor}: {a} - {b}"
    return _as_risk_difference(name, metric, f"{factor}={a}", f"{factor}={b}", rows, kept, weights,
                               _between_columns(factors), alpha,
                               f"{factor} (within): paired within participants, participants and cases random")


def interaction(indicators: pd.DataFrame, factors: tuple[FactorSpec, ...], metric: str, first: str, second: str,
                alpha: float = 0.05) -> RiskDifference:
    """(a1 - b1 at the second factor's first level) - (the same at its second level), first two levels each."""
    f1, f2 = _named(factors, first), _named(factors, second)
    (a, b), (c, d) = f1.levels[:2], f2.levels[:2]
    rows = _applicable(indicators, factors, metric)
    rows = rows[rows[f1.column].isin([a, b]) & rows[f2.column].isin([c, d])]
    sign = np.where(rows[f1.column] == a, 1.0, -1.0) * np.where(rows[f2.column] == c, 1.0, -1.0)
    within = [f.column for f in (f1, f2) if f.vary == "within"]
    between = [f.column for f in (f1, f2) if f.vary == "between"]
    weights, kept = _paired_weights(rows, sign, within, groups=between or None)
    name = f"{first} x {second}: ({a} - {b} at {c}) - ({a} - {b} at {d})"
    return _as_risk_difference(name, metric, f"({first}={a} - {b}) at {second}={c}",
                               f"({first}={a} - {b}) at {second}={d}", rows, kept, weights,
                               _between_columns(factors), alpha, "interaction contrast, participants and cases random")


def cell_rates(indicators: pd.DataFrame, factors: tuple[FactorSpec, ...], metric: str) -> pd.DataFrame:
    """Per condition (one level of every factor): participants, trials and rate of the metric, and the
    appropriate-reliance rates RAIR and RSR (Schemmer et al. 2023; verify trials only, else empty)."""
    columns = [f.column for f in factors]
    rows = indicators[indicators[metric].notna()]
    if rows.empty:
        return pd.DataFrame(columns=[*columns, "participants", "trials", "rate", "rair", "rsr"])
    grouped = rows.groupby(columns, dropna=False)
    frame = pd.DataFrame({"participants": grouped["participant_id"].nunique(), "trials": grouped.size(),
                          "rate": grouped[metric].mean()})
    for extra in ("rair", "rsr"):
        if extra in indicators.columns:
            frame[extra] = indicators.groupby(columns, dropna=False)[extra].mean()
    return frame.reset_index()


def small_cell_warnings(indicators: pd.DataFrame, factors: tuple[FactorSpec, ...]) -> list[str]:
    """A warning per between cell with fewer than MIN_PER_CELL participants."""
    between = [f.column for f in factors if f.vary == "between"]
    if not between:
        return []
    counts = indicators.groupby(between)["participant_id"].nunique()
    return [f"Condition {' x '.join(map(str, np.atleast_1d(cell)))} has only {int(n)} participants (fewer than "
            f"{MIN_PER_CELL}): its estimates rest on few people; treat them as a pilot."
            for cell, n in counts.items() if n < MIN_PER_CELL]


def _named(factors: tuple[FactorSpec, ...], name: str) -> FactorSpec:
    spec = next((f for f in factors if f.name == name), None)
    if spec is None:
        raise KeyError(f"no factor {name!r} in the design (factors: {', '.join(f.name for f in factors)})")
    return spec


def _applicable(indicators: pd.DataFrame, factors: tuple[FactorSpec, ...], metric: str) -> pd.DataFrame:
    columns = ["participant_id", "case_id", *(f.column for f in factors)]
    rows = indicators.loc[indicators[metric].notna(), [*columns, metric]].rename(columns={metric: "y"})
    rows["cell"] = _joined(rows, [f.column for f in factors])
    return rows.reset_index(drop=True)


def _paired_weights(rows: pd.DataFrame, sign: np.ndarray, within: list[str],
                    groups: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Trial weights of: per between group, the mean over its participants of sum_c sign_c * (the
    participant's rate in within cell c); summed over the groups (their signs are in `sign`).
    Participants lacking a within cell are left out (kept False)."""
    cells = _joined(rows, within)
    needed = cells.nunique()
    person_cells = cells.groupby(rows["participant_id"]).transform("nunique")
    kept = (person_cells == needed).to_numpy()
    group = _joined(rows, groups or [])
    per_cell = rows.groupby([rows["participant_id"], cells])["y"].transform("size").to_numpy(float)
    people_in_group = rows[kept].groupby(group[kept])["participant_id"].nunique()
    n_people = group.map(people_in_group).fillna(1).to_numpy(float)
    return np.where(kept, sign / (per_cell * n_people), 0.0), kept


def _as_risk_difference(name: str, metric: str, a: str, b: str, rows: pd.DataFrame, kept: np.ndarray,
                        weights: np.ndarray, between: list[str], alpha: float, method: str) -> RiskDifference:
    used = rows[kept]
    # the participant term is computed within each between cell (the crossover's "sequence")
    group = _joined(used, between)
    used = used.assign(arm=used["cell"], period=1, sequence=group, w=weights[kept])
    people = used["participant_id"].nunique()
    if people < 2 or used["case_id"].nunique() < 1:
        return RiskDifference(metric, a, b, None, None, None, None, None, None, people, people,
                              int(used["case_id"].nunique()), method, note=f"{name}: fewer than two participants")
    effect, note = crossed_linear_effect(name, used, used["w"].to_numpy(float), alpha)
    return RiskDifference(metric, a, b, effect.estimate, effect.se, effect.df, effect.ci_low, effect.ci_high,
                          effect.p_value, people, people, int(used["case_id"].nunique()), method,
                          note="; ".join(filter(None, [note, _left_out(rows, kept)])))


def _joined(rows: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The columns' values joined by '|' per row ('all' for no columns): a cell's name. Column-wise:
    a row-wise join took 80% of an estimate's time."""
    if not columns:
        return pd.Series("all", index=rows.index)
    joined = rows[columns[0]].astype(str)
    for column in columns[1:]:
        joined = joined + "|" + rows[column].astype(str)
    return joined


def _between_columns(factors: tuple[FactorSpec, ...]) -> list[str]:
    return [f.column for f in factors if f.vary == "between"]


def _left_out(rows: pd.DataFrame, kept: np.ndarray) -> str:
    dropped = len(set(rows.loc[~kept, "participant_id"]) - set(rows.loc[kept, "participant_id"]))
    return f"{dropped} participant(s) without every level were left out of the paired estimate" if dropped else ""
