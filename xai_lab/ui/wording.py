"""How numbers are worded for clinicians: probabilities that never claim certainty.

A calibrated model's rounded probability can read "100%" or "0%", which a radiologist rightly
questions (no classifier is certain, and the calibration was measured on a few hundred images).
The ends are shown as ">99%" and "<1%", as clinical risk calculators do.
"""

from __future__ import annotations

from xai_lab.ui.i18n import N_, _


def percent(probability: float) -> str:
    """A probability as a whole percentage, with the ends as "<1%" and ">99%"."""
    shown = round(100 * probability)
    if shown < 1:
        return "<1%"
    if shown > 99:
        return ">99%"
    return f"{shown}%"


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
