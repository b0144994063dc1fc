"""The report's words, numbers and tables: formatting, metric names, the table shape the template
draws, and the sentences that say what the intervals allow (a CI that spans zero is "compatible
with no difference", never "no effect")."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xai_lab.analysis.reliance import ECE_BINS
from xai_lab.analysis.risk_difference import RiskDifference

METRIC_NAMES = {
    "accuracy_initial": "Accuracy, initial decision", "accuracy_final": "Accuracy, final decision",
    "ai_accuracy": "AI accuracy on the same cases", "accuracy_gain": "Accuracy gain (final - initial)",
    "agreement": "Agreement with the AI", "over_reliance": "Over-reliance: P(final = AI | AI wrong)",
    "under_reliance": "Under-reliance: P(final != AI | AI right)",
    "switch_fraction": "Switch fraction: P(final = AI | initial != AI)", "rair": "RAIR", "rsr": "RSR",
    "brier": "Brier score (final confidence)", "ece": f"ECE ({ECE_BINS} bins)",
    "median_rt_final_ms": "Median decision time (s)", "overlay_toggles": "Overlay toggles per trial",
}
PLAIN = {"over_reliance": "over-reliance (taking wrong AI advice)",
         "under_reliance": "under-reliance (rejecting right AI advice)",
         "agreement": "agreement with the AI", "accuracy_final": "final accuracy"}
# metric families share one y-axis scale in the plots
RATES = ("accuracy_initial", "accuracy_final", "ai_accuracy", "agreement", "over_reliance", "under_reliance",
         "switch_fraction", "rair", "rsr")
SCORES = ("brier", "ece")


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if not math.isfinite(number) else f"{number:.{digits}f}"


def p_text(value) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def p_words(value) -> str:
    text = p_text(value)
    return text if text.startswith("<") or text == "n/a" else f"= {text}"


def ci(low, high, digits: int = 3) -> str:
    return "n/a" if low is None or high is None else f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def metric_value(name: str, value) -> str:
    """A metric as the report shows it: times in seconds with one decimal, others with three."""
    if name == "median_rt_final_ms":
        return "n/a" if value is None else f"{float(value) / 1000:.1f} s"
    return fmt(value)


def risk_difference_sentence(rd: RiskDifference) -> str:
    """What a risk difference allows, in words."""
    words = PLAIN.get(rd.metric, rd.metric)
    if rd.estimate is None:
        return f"The {words} difference {rd.a} - {rd.b} could not be estimated ({rd.note or 'no data'})."
    if rd.ci_low is None:
        return (f"{_capital(words)}: {rd.a} - {rd.b} = {fmt(rd.estimate, 2)}; no interval ({rd.note}).")
    points = 100 * rd.estimate
    direction = "higher" if rd.estimate > 0 else "lower"
    verdict = ("the interval includes no difference, so the data are compatible with no difference between the arms"
               if rd.ci_low <= 0 <= rd.ci_high else
               f"the interval excludes zero, so {words} was {direction} in {rd.a}")
    return (f"{_capital(words)} was {abs(points):.1f} percentage points {direction} in {rd.a} than in {rd.b} "
            f"(risk difference {fmt(rd.estimate, 3)}, 95% CI {fmt(rd.ci_low, 3)} to {fmt(rd.ci_high, 3)}, p "
            f"{p_words(rd.p_value)}; {rd.n_a} and {rd.n_b} participants, {rd.n_cases} cases); {verdict}.")


def odds_ratio_sentence(row, ai: str, invert: bool) -> str:
    odds, low, high = row["odds_ratio"], row["ci_low"], row["ci_high"]
    if not np.isfinite([odds, low, high]).all():
        return f"On {ai} cases the GEE odds ratio is not estimable (every answer in a cell was the same)."
    if invert:  # under-reliance is disagreement: invert the agreement odds ratio
        odds, low, high = 1 / odds, 1 / high, 1 / low
    verdict = ("compatible with no difference" if low <= 1 <= high else
               f"lower in {row['a']}" if high < 1 else f"higher in {row['a']}")
    return (f"GEE check on {ai} cases: odds ratio {row['a']}/{row['b']} {fmt(odds, 2)} {ci(low, high, 2)} "
            f"(Holm p {p_words(row['p_holm'])}): {verdict}.")


def competence_sentence(item: str, contrast: dict) -> str:
    low, high = contrast["ci_low"], contrast["ci_high"]
    if low is None or high is None or not np.isfinite([low, high]).all():
        return ""
    verdict = ("compatible with no difference" if low <= 0 <= high else
               f"{contrast['a']} rated higher" if low > 0 else f"{contrast['b']} rated higher")
    return (f"Peer-rated {item}: {contrast['a']} - {contrast['b']} = {fmt(contrast['estimate'], 2)} "
            f"{ci(low, high, 2)} points (Holm p {p_words(contrast['p_holm'])}): {verdict}.")


def table(frame: pd.DataFrame, left: int = 1) -> dict:
    """A frame as the template's table: column names and rows of text."""
    return {"columns": [str(c) for c in frame.columns], "left": left,
            "rows": [[_cell(v, c) for v, c in zip(row, frame.columns, strict=True)]
                     for row in frame.itertuples(index=False)]}


def _cell(value, column: str) -> str:
    if column.startswith("p_") or column in ("p", "p (Holm)"):
        return p_text(value) if isinstance(value, float | np.floating) or value is None else str(value)
    if isinstance(value, float | np.floating):
        return fmt(value)
    return "n/a" if value is None or value is pd.NA else str(value)


def _capital(text: str) -> str:
    """First letter upper case, the rest untouched (str.capitalize would turn "AI" into "ai")."""
    return text[:1].upper() + text[1:]
