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
RATIOS = ("accuracy_initial", "accuracy_final", "ai_accuracy", "agreement", "over_reliance", "under_reliance",
          "switch_fraction", "rair", "rsr", "brier", "overlay_toggles")
METRICS = RATIOS[:-1] + ("accuracy_gain", "ece", "median_rt_final_ms", "overlay_toggles")


@dataclass(frozen=True)
class Estimate:
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int  # trials the metric is computed over


def trial_indicators(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: each ratio metric's value where it applies, NaN where it does not."""
    truth, final, ai, initial = (trials[c] for c in ("true_label", "final_label", "ai_label", "initial_label"))
    has_ai, has_initial = ai.notna(), initial.notna()
    final_right, ai_right = (final == truth).astype(float), (ai == truth).fillna(False).astype(bool)
    initial_right = (initial == truth).fillna(False).astype(bool)
    agrees = (final == ai).fillna(False).astype(float)
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
    return frame


def arm_metrics(indicators: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """All metrics for one group of trials (an arm, or an arm within a stratum)."""
    people = pd.Categorical(indicators["participant_id"])
    n_people = len(people.categories)
    people = _Codes(people.codes.astype(np.int64), n_people)  # int8 codes would overflow in bin arithmetic
    weights = np.random.default_rng(seed).multinomial(n_people, np.full(n_people, 1.0 / n_people), size=resamples)
    ones = np.ones((1, n_people))
    results: dict[str, Estimate] = {}
    draws: dict[str, np.ndarray] = {}
    for name in RATIOS:
        values = indicators[name]
        applies = values.notna().to_numpy()
        sums = np.bincount(people.codes[applies], weights=values[applies].to_numpy(), minlength=n_people)
        counts = np.bincount(people.codes[applies], minlength=n_people).astype(float)
        point = _ratio(ones, sums, counts)[0]
        draws[name] = _ratio(weights, sums, counts)
        results[name] = _estimate(point, draws[name], int(applies.sum()))
    gain_point = _difference(results["accuracy_final"].value, results["accuracy_initial"].value)
    gain_draws = draws["accuracy_final"] - draws["accuracy_initial"]
    results["accuracy_gain"] = _estimate(gain_point, gain_draws, results["accuracy_initial"].n)
    results["ece"] = _ece(indicators, people, weights, ones)
    results["median_rt_final_ms"] = _median_rt(indicators, people, weights)
    return {name: results[name] for name in METRICS}


@dataclass(frozen=True)
class _Codes:
    codes: np.ndarray
    n: int


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


def _ece(indicators: pd.DataFrame, people: _Codes, weights: np.ndarray, ones: np.ndarray) -> Estimate:
    applies = indicators["confidence"].notna().to_numpy()
    if not applies.any():
        return Estimate(None, None, None, 0)
    confidence = indicators["confidence"].to_numpy()[applies]
    gap = indicators["correct"].to_numpy()[applies] - confidence
    cell = people.codes[applies] * ECE_BINS + ece_bin_index(confidence)
    size = people.n * ECE_BINS
    gaps = np.bincount(cell, weights=gap, minlength=size).reshape(-1, ECE_BINS)
    counts = np.bincount(people.codes[applies], minlength=people.n).astype(float)

    def ece(w: np.ndarray) -> np.ndarray:
        return np.abs(w @ gaps).sum(axis=1) / (w @ counts)

    return _estimate(float(ece(ones)[0]), ece(weights), int(applies.sum()))


def _median_rt(indicators: pd.DataFrame, people: _Codes, weights: np.ndarray) -> Estimate:
    rt = indicators["rt_final_ms"].to_numpy()
    applies = np.isfinite(rt)
    if not applies.any():
        return Estimate(None, None, None, 0)
    codes, rt = people.codes[applies], rt[applies]
    order = np.argsort(codes, kind="stable")
    codes, rt = codes[order], rt[order]
    starts = np.searchsorted(codes, np.arange(people.n))
    ends = np.searchsorted(codes, np.arange(people.n), side="right")
    medians = []
    for w in weights:  # a weighted median: participant k's trials count w[k] times
        repeat = np.repeat(w, ends - starts)
        medians.append(_weighted_median(rt, repeat) if repeat.sum() else np.nan)
    return _estimate(float(np.median(rt)), np.array(medians), int(applies.sum()))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    half = cumulative[-1] / 2.0
    index = np.searchsorted(cumulative, half)
    if cumulative[index] == half and index + 1 < len(order):  # even total: the mean of the middle two
        return float((values[order][index] + values[order][index + 1]) / 2.0)
    return float(values[order][index])


def reliance_quadrant(trials: pd.DataFrame) -> pd.DataFrame:
    """Counts of AI right/wrong x final right/wrong per arm (AI arms only)."""
    with_ai = trials[trials["ai_label"].notna()]
    frame = pd.DataFrame({"arm": with_ai["arm"],
                          "ai": np.where(with_ai["ai_label"] == with_ai["true_label"], "AI right", "AI wrong"),
                          "final": np.where(with_ai["final_label"] == with_ai["true_label"], "final right",
                                            "final wrong")})
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
