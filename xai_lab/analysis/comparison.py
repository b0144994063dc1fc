"""Comparing arms: the order they are listed and contrasted in, and Holm's correction across contrasts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from statsmodels.stats.multitest import multipletests

ARM_ORDER = ("verify", "rely", "control")


def ordered_arms(values: Iterable[str], order: tuple[str, ...] = ARM_ORDER) -> list[str]:
    """The arms present, known ones in `order`, any others after them alphabetically."""
    present = set(values)
    return [arm for arm in order if arm in present] + sorted(present - set(order))


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm-adjusted p-values over the finite ones; a contrast without a p-value (NaN) stays NaN."""
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="holm")[1]
    return adjusted
