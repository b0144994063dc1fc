"""Comparing arms: the order they are listed and contrasted in, and Holm's correction across contrasts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

ARM_ORDER = ("verify", "rely", "control")


def ordered_arms(values: Iterable[str], order: tuple[str, ...] = ARM_ORDER) -> list[str]:
    """The arms present, known ones in `order`, any others after them alphabetically."""
    present = set(values)
    return [arm for arm in order if arm in present] + sorted(present - set(order))


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm-adjusted p-values over the finite ones; a contrast without a p-value (NaN) stays NaN.

    Holm's step-down written out (sorted p times the number of hypotheses left, running maximum,
    capped at 1) rather than statsmodels' `multipletests`, which gives the same numbers (a test
    compares them) but runs a full `gc.collect()` on every call: 0.15-1 s each in a process that
    holds torch and Streamlit, about half of an analysis's time.
    """
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size:
        order = finite[np.argsort(p[finite], kind="stable")]
        steps = p[order] * np.arange(finite.size, 0, -1)
        adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted
