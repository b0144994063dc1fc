"""Crossover (within-participant) designs: period and sequence, carryover, paired arm differences.

With ``allocation = "within"`` every participant reads the first run of cases under one arm and
the second under the other, in a counterbalanced order (the sequence, e.g. ``verify>rely``). Each
participant's rate of a metric in each period is the unit:

    m[p, period] = mu_p + period effect + arm effect (+ carryover of the first arm into the second)

- **Arm difference a - b** (period-adjusted): least squares on the participant-period rates with
  participant, period and arm terms; with two arms and two sequences this is the Hills-Armitage
  estimator, half the difference between sequences of the within-participant period differences.
  Its SE is a participant bootstrap (participants resampled within their sequence, B = 2,000); the
  95% CI and p-value use t on n - (sequences) df with that SE (the percentile interval under-covered
  with 30 participants).
- **Period effect** (period 2 - period 1), estimated and bootstrapped the same way.
- **Carryover check**: participants' mean over both periods compared between sequences (Grizzle
  1965); it has little power and is reported as a check, not used to choose the analysis.
- **Flow per period**: participants with a rate in each period, per sequence.

Participants who finished only one period contribute nothing to the paired estimate (reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from xai_lab.study.design import order_arms

BOOTSTRAP = 2000


@dataclass(frozen=True)
class CrossoverEffect:
    name: str  # "rely - verify", "period 2 - period 1"
    estimate: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    df: float | None


@dataclass
class CrossoverResult:
    metric: str
    arm_effect: CrossoverEffect
    period_effect: CrossoverEffect
    carryover: CrossoverEffect  # difference in participant totals between the first two sequences
    flow: list[dict] = field(default_factory=list)  # per sequence: participants in period 1, 2 and both
    n_paired: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"metric": self.metric, "arm_effect": vars(self.arm_effect), "period_effect": vars(self.period_effect),
                "carryover": vars(self.carryover), "flow": self.flow, "n_paired": self.n_paired, "notes": self.notes}


def period_rates(indicators: pd.DataFrame, sequence: pd.Series, metric: str) -> pd.DataFrame:
    """One row per participant and period: sequence, period (1, 2, ...), arm and the metric's rate."""
    data = indicators[indicators[metric].notna()].copy()
    data["sequence"] = data["participant_id"].map(sequence)
    data = data[data["sequence"].notna()]
    data["period"] = [_period(str(seq), arm) for seq, arm in zip(data["sequence"], data["arm"], strict=True)]
    return (data.dropna(subset=["period"]).groupby(["participant_id", "sequence", "period", "arm"])[metric].mean()
            .rename("rate").reset_index())


def _period(sequence: str, arm: str) -> float:
    """1 for the sequence's first arm, 2 for its second; NaN for an arm it does not contain."""
    arms = order_arms(sequence)
    return arms.index(arm) + 1 if arm in arms else np.nan


def crossover_analysis(indicators: pd.DataFrame, sequence: pd.Series, metric: str, a: str, b: str,
                       alpha: float = 0.05, seed: int = 0) -> CrossoverResult:
    rates = period_rates(indicators, sequence, metric)
    flow = _flow(rates)
    both = rates.groupby("participant_id")["period"].transform("nunique") >= 2
    paired = rates[both & rates["arm"].isin([a, b])]
    paired = paired[paired.groupby("participant_id")["arm"].transform("nunique") == 2]
    people = paired["participant_id"].unique()
    result = CrossoverResult(metric, _none(f"{a} - {b}"), _none("period 2 - period 1"),
                             _none("carryover (sequence difference in totals)"), flow, len(people))
    if paired["sequence"].nunique() < 2 or len(people) < 4:
        result.notes.append(f"{metric}: a crossover estimate needs at least 4 participants with both periods in at "
                            f"least two sequences (got {len(people)})")
        return result
    point = _fit(paired, a, b)
    draws = _bootstrap(paired, a, b, seed)
    df = float(len(people) - paired["sequence"].nunique())
    result.arm_effect = _effect(f"{a} - {b}", point[0], draws[:, 0], df, alpha)
    result.period_effect = _effect("period 2 - period 1", point[1], draws[:, 1], df, alpha)
    result.carryover = _carryover(paired, alpha)
    dropped = rates["participant_id"].nunique() - len(people)
    if dropped:
        result.notes.append(f"{metric}: {dropped} participant(s) with only one period were left out of the paired "
                            "estimate")
    return result


def _blocks(rows: pd.DataFrame, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per participant, X'X and X'y of their demeaned rows (participant fixed effects absorbed), for
    the design [period 2..P dummies, arm dummies with b as reference]; and each participant's sequence.

    A least-squares fit is then solve(sum_p w_p X'X_p, sum_p w_p X'y_p), so a bootstrap draw is a
    weighted sum of precomputed blocks (a resampled participant is a repeated block)."""
    periods = sorted(rows["period"].unique())[1:]  # period 1 is the reference
    others = [arm for arm in sorted(rows["arm"].unique()) if arm not in (a, b)]  # b is the reference
    # arm a and period 2 first: their coefficients are the two effects reported
    columns = [(rows["arm"] == a).to_numpy(float)] + [(rows["period"] == period).to_numpy(float)
                                                       for period in periods] + \
              [(rows["arm"] == arm).to_numpy(float) for arm in others]
    design, outcome = np.column_stack(columns), rows["rate"].to_numpy(float)
    codes, people = pd.factorize(rows["participant_id"])
    xtx = np.zeros((len(people), design.shape[1], design.shape[1]))
    xty = np.zeros((len(people), design.shape[1]))
    for index in range(len(people)):
        own = codes == index
        x = design[own] - design[own].mean(axis=0)
        y = outcome[own] - outcome[own].mean()
        xtx[index], xty[index] = x.T @ x, x.T @ y
    sequences = rows.groupby("participant_id", sort=False)["sequence"].first().reindex(people).to_numpy()
    return xtx, xty, sequences


def _solve(xtx: np.ndarray, xty: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(arm a - arm b, period 2 - period 1) for participant weights."""
    coefficients = np.linalg.lstsq(np.tensordot(weights, xtx, axes=1), weights @ xty, rcond=None)[0]
    return float(coefficients[0]), float(coefficients[1] if len(coefficients) > 1 else math.nan)


def _fit(rows: pd.DataFrame, a: str, b: str) -> tuple[float, float]:
    xtx, xty, _ = _blocks(rows, a, b)
    return _solve(xtx, xty, np.ones(len(xtx)))


def _bootstrap(rows: pd.DataFrame, a: str, b: str, seed: int) -> np.ndarray:
    """Participants resampled within their sequence, B times."""
    xtx, xty, sequences = _blocks(rows, a, b)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(sequences == seq) for seq in pd.unique(sequences)]
    draws = np.empty((BOOTSTRAP, 2))
    for index in range(BOOTSTRAP):
        weights = np.zeros(len(xtx))
        for members in groups:
            np.add.at(weights, rng.choice(members, len(members)), 1.0)
        draws[index] = _solve(xtx, xty, weights)
    return draws


def _effect(name: str, point: float, draws: np.ndarray, df: float, alpha: float) -> CrossoverEffect:
    se = float(np.std(draws, ddof=1))
    quantile = float(stats.t.ppf(1 - alpha / 2, df))
    p_value = float(2 * stats.t.sf(abs(point) / se, df)) if se > 0 else None
    return CrossoverEffect(name, point, se, point - quantile * se, point + quantile * se, p_value, df)


def _carryover(rows: pd.DataFrame, alpha: float) -> CrossoverEffect:
    totals = rows.groupby(["participant_id", "sequence"])["rate"].mean().reset_index()
    sequences = sorted(totals["sequence"].unique())[:2]
    first, second = (totals.loc[totals["sequence"] == s, "rate"] for s in sequences)
    test = stats.ttest_ind(first, second, equal_var=False)
    difference = float(first.mean() - second.mean())
    se = math.sqrt(first.var(ddof=1) / len(first) + second.var(ddof=1) / len(second))
    df = float(test.df)  # Welch's df (scipy >= 1.11 reports it)
    quantile = float(stats.t.ppf(1 - alpha / 2, df))
    return CrossoverEffect(f"carryover: {sequences[0]} - {sequences[1]} in participant means", difference, se,
                           difference - quantile * se, difference + quantile * se,
                           float(test.pvalue) if np.isfinite(test.pvalue) else None, df)


def _flow(rates: pd.DataFrame) -> list[dict]:
    rows = []
    for seq, group in rates.groupby("sequence"):
        periods = group.groupby("participant_id")["period"].apply(set)
        rows.append({"sequence": seq, "period_1": int(sum(1 in p for p in periods)),
                     "period_2": int(sum(2 in p for p in periods)), "both": int(sum(len(p) >= 2 for p in periods))})
    return rows


def _none(name: str) -> CrossoverEffect:
    return CrossoverEffect(name, None, None, None, None, None, None)
