"""Crossover (within-participant) designs: period and sequence, carryover, paired arm differences.

With ``allocation = "within"`` every participant reads the first run of cases under one arm and
the second under the other, in a counterbalanced order (the sequence, e.g. ``verify>rely``). Which
cases fall in which run is drawn afresh for each participant, so a case read under arm a by one
participant is read under arm b by another. Each participant's rate of a metric in each period is
the unit of the point estimate:

    m[p, period] = mu_p + period effect + arm effect (+ carryover of the first arm into the second)

- **Arm difference a - b** (period-adjusted): least squares on the participant-period rates with
  participant, period and arm terms; with two arms and two sequences this is the Hills-Armitage
  estimator, half the difference between sequences of the within-participant period differences.
- **Its variance treats participants and cases as random.** The estimate is a fixed linear
  combination of the trial outcomes, sum_pk w_pk y_pk, with weights set by the design alone (the LS
  coefficient spread over each period's trials). Its variance is estimated as in
  `risk_difference` (the method of moments for crossed random factors):

      V_P = sum over sequences of n_s / (n_s - 1) * sum_p (U_p - mean_s U)^2,  U_p = sum_k w_pk e_pk
      V_C = K / (K - 1) * sum_k (T_k - mean T)^2,                             T_k = sum_p w_pk e_pk
      V_E = MS(participant x case, within arms) * sum_pk w_pk^2            (counted in both above)
      Var = V_P + V_C - V_E, floored at max(V_P, V_C); t on Satterthwaite df

  where e_pk is the outcome minus its arm x period mean. Resampling participants only (the
  earlier method) left the case-by-arm term out of the SE: 95% coverage 0.78 with case-by-arm
  logit SD 1.0. Why not a two-way bootstrap over participants and cases: it counts the
  participant x case term twice (Owen 2007), so it is conservative by design, and over the 2-6
  cases that carry wrong advice it has too few distinct resamples to give a p-value. Measured in
  tests/test_estimand.py (slow): type I error and coverage with case-by-arm SD 1.0.
- **Period effect** (period 2 - period 1), estimated and tested the same way.
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

from xai_lab.analysis.risk_difference import combine_components, residual_mean_square
from xai_lab.study.design import order_arms


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
    return _rates(_applicable_trials(indicators, sequence, metric))


def _applicable_trials(indicators: pd.DataFrame, sequence: pd.Series, metric: str) -> pd.DataFrame:
    """The trials where the metric applies, with participant, case, arm, its value `y`, sequence and period."""
    data = indicators.loc[indicators[metric].notna(), ["participant_id", "case_id", "arm", metric]]
    data = data.rename(columns={metric: "y"})
    data["sequence"] = data["participant_id"].map(sequence)
    data = data[data["sequence"].notna()]
    data["period"] = [_period(str(seq), arm) for seq, arm in zip(data["sequence"], data["arm"], strict=True)]
    return data.dropna(subset=["period"]).reset_index(drop=True)


def _rates(trials: pd.DataFrame) -> pd.DataFrame:
    return (trials.groupby(["participant_id", "sequence", "period", "arm"])["y"].mean().rename("rate")
            .reset_index())


def _period(sequence: str, arm: str) -> float:
    """1 for the sequence's first arm, 2 for its second; NaN for an arm it does not contain."""
    arms = order_arms(sequence)
    return arms.index(arm) + 1 if arm in arms else np.nan


def crossover_analysis(indicators: pd.DataFrame, sequence: pd.Series, metric: str, a: str, b: str,
                       alpha: float = 0.05) -> CrossoverResult:
    applicable = _applicable_trials(indicators, sequence, metric)
    rates = _rates(applicable)
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
    keys = ["participant_id", "sequence", "period", "arm"]
    trials = applicable.merge(paired[keys], on=keys)  # the trials behind the paired rates
    weights = trial_weights(trials, paired, a, b)
    result.arm_effect, note = crossed_linear_effect(f"{a} - {b}", trials, weights[:, 0], alpha)
    result.period_effect, _ = crossed_linear_effect("period 2 - period 1", trials, weights[:, 1], alpha)
    if note:
        result.notes.append(f"{metric}: {note}")
    result.carryover = _carryover(paired, alpha)
    dropped = rates["participant_id"].nunique() - len(people)
    if dropped:
        result.notes.append(f"{metric}: {dropped} participant(s) with only one period were left out of the paired "
                            "estimate")
    return result


def trial_weights(trials: pd.DataFrame, paired: pd.DataFrame, a: str, b: str) -> np.ndarray:
    """(trials, 2): each trial's weight in the least-squares arm (a - b) and period (2 - 1) coefficients.

    The fit is on participant-period rates with participant fixed effects (rows demeaned within
    participant) and columns [arm a, period 2..P, other arms], b and period 1 the references. A
    coefficient is sum over rows of g_row * rate_row with g = (X'X)^-1 x_row; a rate is the mean of
    its period's trials, so each trial carries g_row / (trials in its period)."""
    rows = paired.reset_index(drop=True)
    periods = sorted(rows["period"].unique())[1:]
    others = [arm for arm in sorted(rows["arm"].unique()) if arm not in (a, b)]
    design = np.column_stack([(rows["arm"] == a).to_numpy(float)]
                             + [(rows["period"] == period).to_numpy(float) for period in periods]
                             + [(rows["arm"] == arm).to_numpy(float) for arm in others])
    design -= pd.DataFrame(design).groupby(rows["participant_id"].to_numpy()).transform("mean").to_numpy()
    g = design @ np.linalg.pinv(design.T @ design)  # (rows, coefficients)
    if g.shape[1] < 2:
        g = np.column_stack([g, np.full(len(g), np.nan)])
    keys = list(zip(rows["participant_id"], rows["period"], strict=True))
    row_of = {key: index for index, key in enumerate(keys)}
    index = np.array([row_of[key] for key in zip(trials["participant_id"], trials["period"], strict=True)])
    counts = trials.groupby(["participant_id", "period"])["y"].transform("size").to_numpy(float)
    return g[index, :2] / counts[:, None]


def crossed_linear_effect(name: str, trials: pd.DataFrame, weights: np.ndarray, alpha: float
                    ) -> tuple[CrossoverEffect, str]:
    """The estimate sum w y with participants and cases random (see the module docstring)."""
    if np.isnan(weights).any():
        return _none(name), ""
    y = trials["y"].to_numpy(float)
    estimate = float(weights @ y)
    # outcomes minus their arm x period means: fixed effects carry no sampling variance
    e = y - trials.groupby(["arm", "period"])["y"].transform("mean").to_numpy(float)
    contribution = pd.DataFrame({"participant_id": trials["participant_id"], "sequence": trials["sequence"],
                                 "case_id": trials["case_id"], "we": weights * e})
    people = contribution.groupby(["sequence", "participant_id"])["we"].sum()
    parts: dict[str, tuple[float, float]] = {}
    for seq, values in people.groupby(level="sequence"):
        n = len(values)
        if n >= 2:
            parts[f"participants {seq}"] = (n / (n - 1) * float(((values - values.mean()) ** 2).sum()), n - 1)
    cases = contribution.groupby("case_id")["we"].sum()
    note = ""
    if len(cases) >= 2:
        k = len(cases)
        parts["cases"] = (k / (k - 1) * float(((cases - cases.mean()) ** 2).sum()), k - 1)
        residual, df_residual = residual_mean_square(dict(tuple(trials.groupby("arm"))))
        if df_residual > 0:
            parts["trials"] = (-residual * float((weights ** 2).sum()), df_residual)
    else:
        note = f"only {len(cases)} case applies: case variability cannot be estimated and is left out"
    variance, df = combine_components(parts)
    if variance <= 0:
        empty = CrossoverEffect(name, estimate, 0.0, None, None, None, None)
        return empty, "no variation between participants or cases"
    se = math.sqrt(variance)
    quantile = float(stats.t.ppf(1 - alpha / 2, df))
    p_value = float(2 * stats.t.sf(abs(estimate) / se, df))
    # a difference of two rates lies in [-1, 1]: beyond it a t interval on few df shows impossible values
    low, high = max(estimate - quantile * se, -1.0), min(estimate + quantile * se, 1.0)
    return CrossoverEffect(name, estimate, se, low, high, p_value, df), note


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
