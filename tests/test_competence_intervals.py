"""A competence cell mean whose interval cannot be computed (NaN standard error) is shown without one:
the report's figure once failed on it ("Axis limits cannot be NaN or Inf")."""

from __future__ import annotations

import math

from xai_lab.analysis.competence import known_intervals


def test_a_non_finite_interval_becomes_unknown():
    assert known_intervals({"verify": (math.nan, 5.1), "rely": (3.2, 4.4), "control": (2.0, math.inf)}) == {
        "verify": (None, None), "rely": (3.2, 4.4), "control": (None, None)}
