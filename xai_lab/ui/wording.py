"""How numbers are worded for clinicians: probabilities that never claim certainty.

A calibrated model's rounded probability can read "100%" or "0%", which a radiologist rightly
questions (no classifier is certain, and the calibration was measured on a few hundred images).
The ends are shown as ">99%" and "<1%", as clinical risk calculators do.
"""

from __future__ import annotations

from babel.numbers import format_decimal

from xai_lab.ui.i18n import N_, _, language


def threshold_decimals(threshold: float) -> int:
    """How many decimals a decision threshold's percentage needs: none, unless whole numbers would show
    a threshold strictly between 0 and 1 as 0 or 100 (a model whose threshold is 0.996 must not read
    ">99%, at or above the threshold of 100%")."""
    for decimals in range(0, 3):
        if not (0 < threshold < 1) or 0 < round(100 * threshold, decimals) < 100:
            return decimals
    return 3


def percent_number(probability: float, decimals: int) -> str:
    """A probability's percentage number with `decimals` decimals, written the study language's way
    (99.6 in English, 99,6 in French and German); the caller's sentence adds the % sign."""
    value = round(100 * probability, decimals)
    return format_decimal(value, format="0." + "#" * decimals if decimals else "0", locale=language())


def percent_to(probability: float, decimals: int) -> str:
    """A probability as a percentage with `decimals` decimals, the ends shown as "<1%" and ">99%" (at
    one decimal "<0.1%" and ">99.9%"): a reader is never told 0% or 100%."""
    step = 10.0 ** -decimals / 100
    if round(100 * probability, decimals) >= 100:
        return ">" + percent_number(1 - step, decimals) + "%"
    if round(100 * probability, decimals) <= 0:
        return "<" + percent_number(step, decimals) + "%"
    return percent_number(probability, decimals) + "%"


def percent(probability: float) -> str:
    """A probability as a whole percentage, with the ends as "<1%" and ">99%"."""
    return percent_to(probability, 0)


# The verbal confidence display (a design's `confidence` factor at `verbal`): probability bands in the
# words of verbal-probability scales (e.g. the IPCC's and intelligence analysts' likelihood terms), so
# "likely" never stands for a probability below 2/3.
VERBAL_BANDS = ((0.9, N_("very likely")), (0.67, N_("likely")), (0.0, N_("more likely than not")))


def verbal(probability: float) -> str:
    """The AI's confidence in its own suggestion (at least 1/2 for two classes) in words (the study's language)."""
    return _(next(words for floor, words in VERBAL_BANDS if probability >= floor))


def adviser(source: str) -> str:
    """Who advises, inside a sentence: "the AI", or the source factor's label as written."""
    return _("the AI") if source == "AI" else source
