"""Per-arm accuracy, reliance and calibration metrics with participant-clustered bootstrap CIs.

Every metric is a pooled proportion or mean over the trials where it applies (each trial
weighs the same), and is null where no trial applies: outside verify there is no initial
answer, so accuracy_initial, switch_fraction, RAIR and RSR are null; in control there is no AI.

Definitions (Schemmer et al. 2023 for RAIR and RSR):
- over_reliance   = P(final = AI | AI wrong)
- under_reliance  = P(final != AI | AI right)
- switch_fraction = P(final = AI | initial != AI)                       (verify)
- rair            = P(final = AI | initial wrong, AI right)             (verify)
- rsr             = P(final = initial | initial right, AI wrong)        (verify)
- brier           = mean((final_confidence/100 - final correct)^2)
- ece             = sum over 10 equal-width confidence bins [0, .1), ..., [.9, 1.0] of
                    |sum(correct - confidence)| / n: confidence/100 is read as the probability
                    that the final decision is right.

CIs: 95% percentile intervals over B resamples of participants (with replacement, within the
arm), because trials of one participant are not independent. Pooled ratios are resampled with
multinomial participant weights on per-participant sums, which makes 1,000+ resamples of a
500-participant study take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ECE_BINS = 10
# metrics that are a pooled mean of a per-trial value (bootstrapped from per-participant sums)
RATIOS = ("accuracy_initial", "accuracy_final", "ai_accuracy", "agreement", "over_reliance", "under_reliance",
          "switch_fraction", "rair", "rsr", "brier", "overlay_toggles")
METRICS = ("accuracy_initial", "accuracy_final", "ai_accuracy", "agreement", "over_reliance", "under_reliance",
           "switch_fraction", "rair", "rsr", "brier", "accuracy_gain", "ece", "median_rt_final_ms",
           "overlay_toggles")


@dataclass(frozen=True)
class Estimate:
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int  # trials the metric is computed over


def trial_indicators(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (as `load.clean_trials` returns them): each ratio metric's value where it
    applies, NaN where it does not."""
    truth, final, ai, initial = (trials[c] for c in ("true_label", "final_label", "ai_label", "initial_label"))
    has_ai, has_initial = ai.notna(), initial.notna()
    final_right = trials["final_right"].astype(float)
    ai_right = trials["ai_right"].fillna(False).astype(bool)
    initial_right = (initial == truth).fillna(False).astype(bool)
    agrees = trials["agrees"].fillna(False).astype(float)
    disagreed = has_initial & has_ai & (initial != ai).fillna(False)
    frame = pd.DataFrame(index=trials.index)
    frame["accuracy_initial"] = initial_right.astype(float).where(has_initial)
    frame["accuracy_final"] = final_right
    frame["ai_accuracy"] = ai_right.astype(float).where(has_ai)
    frame["agreement"] = agrees.where(has_ai)
    frame["over_reliance"] = agrees.where(has_ai & ~ai_right)
    frame["under_reliance"] = (1.0 - agrees).where(has_ai & ai_right)
    frame["switch_fraction"] = agrees.where(disagreed)
    frame["rair"] = agrees.where(has_initial & has_ai & ~initial_right & ai_right)
    frame["rsr"] = (final == initial).astype(float).where(has_initial & has_ai & initial_right & ~ai_right)
    confidence = trials["final_confidence"].astype(float) / 100.0
    frame["brier"] = ((confidence - final_right) ** 2).where(confidence.notna())
    frame["overlay_toggles"] = trials["overlay_toggles"].astype(float).where(trials["overlay_shown"])
    frame["confidence"] = confidence
    frame["correct"] = final_right
    frame["rt_final_ms"] = trials["rt_final_ms"].astype(float)
    frame["participant_id"] = trials["participant_id"].to_numpy()
    frame["case_id"] = trials["case_id"].to_numpy()
    frame["arm"] = trials["arm"].to_numpy()
    for column in (c for c in trials.columns if c.startswith("factor_")):  # factorial designs' levels
        frame[column] = trials[column].astype(str).to_numpy()
    return frame


def arm_metrics(indicators: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """All metrics for one group of trials (an arm, or an arm within a stratum)."""
    categories = pd.Categorical(indicators["participant_id"])
    n_people = len(categories.categories)
    people = categories.codes.astype(np.int64)  # int8 codes would overflow in the ECE's cell arithmetic
    weights = np.random.default_rng(seed).multinomial(n_people, np.full(n_people, 1.0 / n_people), size=resamples)
    ones = np.ones((1, n_people))
    results: dict[str, Estimate] = {}
    draws: dict[str, np.ndarray] = {}
    for name in RATIOS:
        values = indicators[name]
        applies = values.notna().to_numpy()
        sums = np.bincount(people[applies], weights=values[applies].to_numpy(), minlength=n_people)
        counts = np.bincount(people[applies], minlength=n_people).astype(float)
        point = _ratio(ones, sums, counts)[0]
        draws[name] = _ratio(weights, sums, counts)
        results[name] = _estimate(point, draws[name], int(applies.sum()))
    gain_point = _difference(results["accuracy_final"].value, results["accuracy_initial"].value)
    gain_draws = draws["accuracy_final"] - draws["accuracy_initial"]
    results["accuracy_gain"] = _estimate(gain_point, gain_draws, results["accuracy_initial"].n)
    results["ece"] = _ece(indicators, people, weights, ones)
    results["median_rt_final_ms"] = _median_rt(indicators, people, weights)
    return {name: results[name] for name in METRICS}


def _ratio(weights: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    numerator, denominator = weights @ sums, weights @ counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _estimate(point: float | None, draws: np.ndarray, n: int) -> Estimate:
    if point is None or n == 0 or not np.isfinite(point):
        return Estimate(None, None, None, n)
    finite = draws[np.isfinite(draws)]
    if len(finite) < 0.5 * len(draws):  # most resamples had no applicable trial: no honest interval
        return Estimate(float(point), None, None, n)
    low, high = np.percentile(finite, [2.5, 97.5])
    return Estimate(float(point), float(low), float(high), n)


def ece_bin_index(confidence: np.ndarray) -> np.ndarray:
    """Equal-width bins on [0, 1]; a confidence of exactly 1.0 falls in the last bin."""
    return np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)


def _ece(indicators: pd.DataFrame, people: np.ndarray, weights: np.ndarray, ones: np.ndarray) -> Estimate:
    applies = indicators["confidence"].notna().to_numpy()
    if not applies.any():
        return Estimate(None, None, None, 0)
    confidence = indicators["confidence"].to_numpy()[applies]
    gap = indicators["correct"].to_numpy()[applies] - confidence
    n_people = weights.shape[1]
    cell = people[applies] * ECE_BINS + ece_bin_index(confidence)
    gaps = np.bincount(cell, weights=gap, minlength=n_people * ECE_BINS).reshape(-1, ECE_BINS)
    counts = np.bincount(people[applies], minlength=n_people).astype(float)

    def ece(w: np.ndarray) -> np.ndarray:
        return np.abs(w @ gaps).sum(axis=1) / (w @ counts)

    return _estimate(float(ece(ones)[0]), ece(weights), int(applies.sum()))


def _median_rt(indicators: pd.DataFrame, people: np.ndarray, weights: np.ndarray) -> Estimate:
    """The median, and its bootstrap as weighted medians: participant k's trials count w[k] times.
    Times are sorted once; each resample is a cumulative sum over that order."""
    rt = indicators["rt_final_ms"].to_numpy()
    applies = np.isfinite(rt)
    if not applies.any():
        return Estimate(None, None, None, 0)
    order = np.argsort(rt[applies], kind="stable")
    values, owners = rt[applies][order], people[applies][order]
    cumulative = np.cumsum(weights[:, owners], axis=1, dtype=np.int32)  # resamples x trials
    total = cumulative[:, -1:]
    # lower and upper middle: the first positions where the running weight reaches total/2 and passes it
    lower = (cumulative < total / 2).sum(axis=1)
    upper = (cumulative <= total / 2).sum(axis=1)
    upper = np.minimum(upper, len(values) - 1)
    with np.errstate(invalid="ignore"):
        medians = np.where(total[:, 0] > 0, (values[lower.clip(max=len(values) - 1)] + values[upper]) / 2, np.nan)
    return _estimate(float(np.median(rt[applies])), medians, int(applies.sum()))


def reliance_quadrant(trials: pd.DataFrame) -> pd.DataFrame:
    """Counts of AI right/wrong x final right/wrong per arm (AI arms only)."""
    with_ai = trials[trials["ai_right"].notna()]
    frame = pd.DataFrame({"arm": with_ai["arm"],
                          "ai": np.where(with_ai["ai_right"].astype(bool), "AI right", "AI wrong"),
                          "final": np.where(with_ai["final_right"], "final right", "final wrong")})
    counts = frame.groupby(["arm", "ai", "final"]).size().rename("trials").reset_index()
    totals = counts.groupby(["arm", "ai"])["trials"].transform("sum")
    counts["share_within_ai"] = counts["trials"] / totals
    return counts


def calibration_bins(indicators: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Per confidence bin: trials, mean confidence and accuracy of the final decision (for the plot)."""
    applies = indicators["confidence"].notna()
    frame = pd.DataFrame({"bin": ece_bin_index(indicators.loc[applies, "confidence"].to_numpy()),
                          "confidence": indicators.loc[applies, "confidence"].to_numpy(),
                          "correct": indicators.loc[applies, "correct"].to_numpy()})
    table = frame.groupby("bin").agg(trials=("correct", "size"), mean_confidence=("confidence", "mean"),
                                     accuracy=("correct", "mean")).reset_index()
    table.insert(0, "arm", arm)
    table["bin_low"], table["bin_high"] = table["bin"] / ECE_BINS, (table["bin"] + 1) / ECE_BINS
    return table
