"""Between-arm risk differences with participants and cases both random: the primary estimand's test.

    rd = crossed_risk_difference(indicators, "over_reliance", "rely", "verify")
    rd.estimate, rd.ci_low, rd.ci_high, rd.p_value     # on the probability scale

Each participant reads the same cases, so a trial's outcome y_pk (1 = e.g. took wrong advice)
carries a participant effect, a case effect and a case-by-arm effect: a few AI-wrong cases that are
harder to catch in one arm move the whole arm. Clustering by participant alone ignores the last
term (type I error 0.39 with case-by-arm SD 1.0 on the logit scale; analysis issue). The estimator
here is the method-of-moments analysis of the participant x case table (the "quasi-F" logic of
crossed random factors, Clark 1973; the same decomposition as the DBM analysis of binary
outcomes), with its small-sample degrees of freedom:

    RD = mean over arm-a participants of their rate - the same in arm b
    Var(RD) = V_P + V_C - V_E, where
      V_P = s2(participant rates in a) / n_a + s2(... in b) / n_b      (participants, incl. trial noise)
      V_C = s2(per-case arm difference) / K                           (cases, incl. trial noise)
      V_E = MS(participant x case residual) (1/n_a + 1/n_b) / K       (trial noise, counted twice above)
    floored at max(V_P, V_C); t reference with Satterthwaite df over the components.

Measured (tests/test_estimand.py, slow): with no arm effect, 20 participants per arm, 6 cases and
case-by-arm logit SD 1.0, the rejection rate at 0.05 is within [0.03, 0.07]; with few cases the
test is conservative rather than liberal. Why not the alternatives: the two-way ("pigeonhole")
bootstrap over participants and cases (Owen 2007) over-covers by design and gives no p-value from
6 cases; statsmodels has no frequentist GLMM with crossed random effects; the OR-MRMC framework
with accuracy as the figure of merit is this same decomposition but with Hillis's ddf, which
treats the case term as known - too liberal when a metric rests on 2-6 cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from xai_lab.analysis.comparison import holm


@dataclass(frozen=True)
class RiskDifference:
    metric: str
    a: str
    b: str
    estimate: float | None
    se: float | None
    df: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_a: int  # participants
    n_b: int
    n_cases: int
    method: str
    p_holm: float | None = None
    note: str = ""

    def to_json(self) -> dict:
        return dict(vars(self))


def crossed_risk_difference(indicators: pd.DataFrame, metric: str, a: str, b: str,
                            alpha: float = 0.05) -> RiskDifference:
    """`indicators`: one row per trial with participant_id, case_id, arm and the metric's 0/1 value
    (NaN where it does not apply), as `reliance.trial_indicators` gives them."""
    data, groups, rates = _by_arm(indicators, metric, a, b)
    n = {arm: len(rates[arm]) for arm in (a, b)}
    case_differences = _case_differences(groups, a, b)
    cases = list(case_differences.index)
    empty = RiskDifference(metric, a, b, None, None, None, None, None, None, n[a], n[b], len(cases),
                           "crossed participants x cases")
    if min(n.values()) == 0:
        return replace(empty, note=f"no applicable trials in {a if n[a] == 0 else b}")
    estimate = float(rates[a].mean() - rates[b].mean())
    if min(n.values()) < 2:
        return replace(empty, estimate=estimate, note="fewer than two participants in an arm: no interval")
    parts = {"participants_a": (rates[a].var(ddof=1) / n[a], n[a] - 1),
             "participants_b": (rates[b].var(ddof=1) / n[b], n[b] - 1)}
    note = ""
    if len(cases) >= 2:
        parts["cases"] = (float(case_differences.var(ddof=1)) / len(cases), len(cases) - 1)
        residual, df_residual = residual_mean_square(groups)
        per_person = float(data.groupby("participant_id").size().mean())
        if df_residual > 0:
            parts["trials"] = (-residual * (1 / n[a] + 1 / n[b]) / per_person, df_residual)
    else:
        note = f"only {len(cases)} case applies: case variability cannot be estimated and is left out"
    variance, df = combine_components(parts)
    se = math.sqrt(variance) if variance > 0 else 0.0
    if se == 0:
        return replace(empty, estimate=estimate, se=0.0, note="no variation between participants or cases")
    quantile = float(stats.t.ppf(1 - alpha / 2, df))
    p_value = float(2 * stats.t.sf(abs(estimate) / se, df))
    low, high = estimate - quantile * se, estimate + quantile * se
    if low < -1 or high > 1:
        # A difference of two proportions lies in [-1, 1]; a t interval on very few degrees of freedom
        # can reach past that, and the part outside is impossible values, not uncertainty.
        low, high = max(low, -1.0), min(high, 1.0)
        note = "; ".join(filter(None, [note, f"interval clipped to [-1, 1]: on {df:.1f} degrees of freedom the t "
                                             "interval reached past the possible range; it is too wide to inform"]))
    return RiskDifference(metric, a, b, estimate, se, df, low, high, p_value,
                          n[a], n[b], len(cases), "crossed participants x cases", note=note)


def _by_arm(indicators: pd.DataFrame, metric: str, a: str, b: str
            ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, pd.Series]]:
    """The applicable trials of arms a and b (outcome as `y`), split by arm, and each participant's rate."""
    data = indicators.loc[indicators[metric].notna() & indicators["arm"].isin([a, b]),
                          ["participant_id", "case_id", "arm", metric]].rename(columns={metric: "y"})
    groups = {arm: data[data["arm"] == arm] for arm in (a, b)}
    return data, groups, {arm: rows.groupby("participant_id")["y"].mean() for arm, rows in groups.items()}


def _case_differences(groups: dict[str, pd.DataFrame], a: str, b: str) -> pd.Series:
    """Per case read in both arms: its rate in a minus its rate in b."""
    by_case = {arm: rows.groupby("case_id")["y"].mean() for arm, rows in groups.items()}
    return (by_case[a] - by_case[b]).dropna().sort_index()


def residual_mean_square(groups: dict[str, pd.DataFrame]) -> tuple[float, float]:
    """The participant x case interaction within arms: trial-level noise, with its df."""
    total, df = 0.0, 0.0
    for rows in groups.values():
        person = rows.groupby("participant_id")["y"].transform("mean")
        case = rows.groupby("case_id")["y"].transform("mean")
        residual = rows["y"] - person - case + rows["y"].mean()
        total += float((residual ** 2).sum())
        df += len(rows) - rows["participant_id"].nunique() - rows["case_id"].nunique() + 1
    return (total / df, df) if df > 0 else (0.0, 0.0)


def combine_components(parts: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Sum of the variance components, floored at the largest single positive one, with the
    Satterthwaite df of the terms that were used."""
    variance = sum(value for value, _ in parts.values())
    largest = max((value for value, _ in parts.values() if value > 0), default=0.0)
    used = parts
    if variance < largest:
        key = next(k for k, (value, _) in parts.items() if value == largest)
        variance, used = largest, {key: parts[key]}
    denominator = sum(value ** 2 / df for value, df in used.values() if df > 0)
    return variance, (variance ** 2 / denominator if denominator > 0 else math.inf)


def secondary_family(results: list[RiskDifference]) -> list[RiskDifference]:
    """Holm's correction over the declared secondary family."""
    adjusted = holm([r.p_value if r.p_value is not None else math.nan for r in results])
    return [replace(r, p_holm=None if math.isnan(p) else float(p)) for r, p in zip(results, adjusted, strict=True)]


MIN_CASE_DF_FOR_SIZING = 10  # below this the case variance of a pilot is too uncertain to size a study on


def participants_needed(rate_variance_a: float, rate_variance_b: float, case_variance: float, effect: float,
                        case_df: float, alpha: float = 0.05, power: float = 0.8,
                        most: int = 5000) -> int | None:
    """Participants per arm for `power` at `effect` with the same cases, on the t reference the test
    uses: the smallest n with (t_{1-alpha/2, df} + t_{power, df})^2 [(s2_a + s2_b) / n + V_C] <= effect^2,
    df the Satterthwaite df of that variance (participant parts on n - 1 df each, the case part on
    `case_df`). None when no n up to `most` reaches it (the case term alone is too large: add cases)."""
    def enough(n: int) -> bool:
        parts = [(rate_variance_a / n, n - 1), (rate_variance_b / n, n - 1), (case_variance, case_df)]
        variance = sum(value for value, _ in parts)
        denominator = sum(value ** 2 / df for value, df in parts if df > 0 and value > 0)
        df = variance ** 2 / denominator if denominator > 0 else math.inf
        return (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) ** 2 * variance <= effect ** 2

    if effect == 0 or not enough(most):
        return None
    low, high = 1, most  # more participants only shrink the variance and raise the df: bisect
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def variance_parts(indicators: pd.DataFrame, metric: str, a: str, b: str) -> tuple[float, float, float, float]:
    """(s2 of participant rates in a, in b, V_C, V_C's df) from a study, for sizing the next one."""
    _, groups, rates = _by_arm(indicators, metric, a, b)
    differences = _case_differences(groups, a, b)
    case_variance = float(differences.var(ddof=1) / len(differences)) if len(differences) >= 2 else 0.0
    return (float(np.nan_to_num(rates[a].var(ddof=1))), float(np.nan_to_num(rates[b].var(ddof=1))), case_variance,
            float(max(len(differences) - 1, 0)))
