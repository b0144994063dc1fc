"""Simulated factorial reader studies for the validity tests of `xai_lab.analysis.factorial`.

A trial's outcome (e.g. took wrong advice) is Bernoulli with

    logit P = base + u_p + c_k + g_{k, cell} + fixed effect of the cell

u_p ~ N(0, sd_participant) per participant, c_k ~ N(0, sd_case) per case and g ~ N(0, sd_case_cell)
per case and condition: the case-by-condition heterogeneity that makes a participants-only analysis
liberal. Conditions cross a between factor (`workflow`, levels in `between`) with a within factor
(`explanation`, levels in `within`) rotated over the cases as the lab's schedule does: participant i
of a between cell reads case k under within level (k + i) mod L.

The estimands are marginal risk differences on the probability scale, over the population of
participants and cases (`marginal_rates`, by Monte Carlo integration): what the analysis's intervals
must cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from xai_lab.analysis.factorial import FactorSpec


@dataclass(frozen=True)
class FactorialWorld:
    between: tuple[str, ...] = ("verify", "rely")
    within: tuple[str, ...] = ("none", "contour")
    per_cell: int = 20  # participants per between level
    cases: int = 8
    base: float = -0.4
    sd_participant: float = 0.8
    sd_case: float = 0.8
    sd_case_cell: float = 1.0
    # logit shift per (between level, within level); absent: 0
    effects: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def factors(self) -> tuple[FactorSpec, ...]:
        return (FactorSpec("workflow", "between", self.between), FactorSpec("explanation", "within", self.within))

    def trials(self, seed: int, metric: str = "over_reliance") -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        n_within = len(self.within)
        case_effect = rng.normal(0, self.sd_case, self.cases)
        case_cell = rng.normal(0, self.sd_case_cell, (self.cases, len(self.between), n_within))
        frames = []
        for b, level in enumerate(self.between):
            person = rng.normal(0, self.sd_participant, self.per_cell)
            case = np.arange(self.cases)
            within = (case[None, :] + np.arange(self.per_cell)[:, None]) % n_within  # (people, cases)
            shift = np.array([self.effects.get((level, w), 0.0) for w in self.within])[within]
            logit = self.base + person[:, None] + case_effect[None, :] + case_cell[case[None, :], b, within] + shift
            y = (rng.random(logit.shape) < expit(logit)).astype(float)
            frames.append(pd.DataFrame({
                "participant_id": np.repeat([f"{level}-{i}" for i in range(self.per_cell)], self.cases),
                "case_id": np.tile([f"c{k}" for k in case], self.per_cell),
                "factor_workflow": level, "factor_explanation": np.asarray(self.within)[within].ravel(),
                metric: y.ravel()}))
        trials = pd.concat(frames, ignore_index=True)
        trials["arm"] = trials["factor_workflow"]
        return trials

    def marginal_rates(self, draws: int = 400_000, seed: int = 12345) -> dict[tuple[str, str], float]:
        """P(outcome) per condition over the population of participants and cases."""
        rng = np.random.default_rng(seed)
        noise = rng.normal(0, np.sqrt(self.sd_participant ** 2 + self.sd_case ** 2 + self.sd_case_cell ** 2), draws)
        return {(b, w): float(expit(self.base + self.effects.get((b, w), 0.0) + noise).mean())
                for b in self.between for w in self.within}

    def within_difference(self, a: str, b: str) -> float:
        rates = self.marginal_rates()
        return float(np.mean([rates[(level, a)] - rates[(level, b)] for level in self.between]))

    def interaction(self) -> float:
        """(within[1] - within[0] at between[0]) - (the same at between[1]), as `factorial.interaction` names it."""
        rates = self.marginal_rates()
        (b0, b1), (w0, w1) = self.between[:2], self.within[:2]
        return (rates[(b0, w0)] - rates[(b0, w1)]) - (rates[(b1, w0)] - rates[(b1, w1)])


def shifts_for(world: FactorialWorld, targets: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """The logit shift of each condition that makes its marginal probability the target (bisection on
    the same Monte Carlo integral `marginal_rates` uses): how published effects on the probability
    scale are planted under random participant, case and case-by-condition effects."""
    noise = np.random.default_rng(12345).normal(
        0, np.sqrt(world.sd_participant ** 2 + world.sd_case ** 2 + world.sd_case_cell ** 2), 400_000)
    shifts = {}
    for condition, target in targets.items():
        low, high = -10.0, 10.0
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if expit(world.base + middle + noise).mean() < target else (low, middle)
        shifts[condition] = (low + high) / 2
    return shifts
