"""How numbers are worded for clinicians: probabilities that never claim certainty.

A calibrated model's rounded probability can read "100%" or "0%", which a radiologist rightly
questions (no classifier is certain, and the calibration was measured on a few hundred images).
The ends are shown as ">99%" and "<1%", as clinical risk calculators do.
"""

from __future__ import annotations


def percent(probability: float) -> str:
    """A probability as a whole percentage, with the ends as "<1%" and ">99%"."""
    shown = round(100 * probability)
    if shown < 1:
        return "<1%"
    if shown > 99:
        return ">99%"
    return f"{shown}%"
