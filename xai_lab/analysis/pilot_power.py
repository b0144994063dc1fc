"""Power of a reader study sized from a pilot's OR estimates (Hillis, Obuchowski & Berbaum 2011).

    pilot = PilotEstimates.from_mrmc_json(json.loads(Path("pilot/mrmc.json").read_text()))
    pilot_power(pilot, readers=10, cases=165)                          # readers and cases random
    cases_needed(pilot, readers=10, target=0.8, generalisation="fixed_readers")
    readers_needed(pilot, cases=150, target=0.8)

A pilot study analysed with `xai-lab mrmc` gives the OR variance components of two modalities:
Var, Cov1, Cov2, Cov3 (case sampling, on the pilot's K* cases) and σ²_TR (reader-by-modality).
For a pivotal study with J readers and K cases, the case terms scale by K*/K, and with the
effect d (default: the pilot's observed difference) HOB 2011 (eqs. 8-10) give:

- **readers and cases random**: noncentral F(1, ddf, λ), λ = J d² / 2 / D,
  D = σ²_TR + K*/K [Var - Cov1 + (J - 1) max(Cov2 - Cov3, 0)],
  ddf = D² / {[σ²_TR + K*/K (Var - Cov1 - max(Cov2 - Cov3, 0))]² / (J - 1)};
- **readers fixed**: noncentral chi-square(1, λ) with D = K*/K [Var - Cov1 + (J - 1) max(Cov2 - Cov3, 0)];
- **cases fixed**: noncentral F(1, J - 1, λ) with D = σ²_TR + K*/K (Var - Cov1 - max(Cov2 - Cov3, 0)).

σ²_TR is floored at 0, as in RJafroc's `SsPowerGivenJK`, whose published example (Van Dyke as the
pilot) the tests reproduce to 8 digits.

**Abnormal share.** K*/K assumes the pivotal study keeps the pilot's share of abnormal cases. A
case's jackknife deviations split the covariances into the part carried by abnormal and by normal
cases (`case_classes` in the `mrmc --json` result); each scales by its own class count, n*/n, so
a pivotal study with another share is sized by its own mix (the first-order variance of an AUC is
a sum of an abnormal-case and a normal-case term, DeLong et al. 1988). With the pilot's share this
is exactly K*/K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import stats

from xai_lab.analysis.reader_study import ReaderStudyError

GENERALISATION_NAMES = {"random": "readers and cases random", "fixed_readers": "readers fixed, cases random",
                        "fixed_cases": "readers random, cases fixed"}
COVARIANCE_TERMS = ("var", "cov1", "cov2", "cov3")


@dataclass(frozen=True)
class PilotEstimates:
    """What sizing needs from a pilot: OR components, its case counts and its observed difference."""

    var_tr: float
    abnormal: dict[str, float]  # Var, Cov1, Cov2, Cov3 carried by the abnormal cases
    normal: dict[str, float]  # ... and by the normal cases
    n_abnormal: int
    n_normal: int
    difference: float  # first modality minus second, as observed
    modalities: tuple[str, str]

    @classmethod
    def from_mrmc_json(cls, result: dict[str, Any]) -> PilotEstimates:
        """From `xai-lab mrmc --json` (or its --out mrmc.json) of a crossed, two-modality pilot."""
        if result.get("method") != "OR" or "case_classes" not in result:
            raise ReaderStudyError("the pilot file is not an `xai-lab mrmc --json` result of this version; analyse "
                                   "the pilot with `xai-lab mrmc TABLE ... --out DIR` and give DIR/mrmc.json")
        if result.get("design") != "crossed":
            raise ReaderStudyError("pilot-based sizing needs a fully crossed pilot (every reader reads every case in "
                                   f"both modalities); this pilot is {result.get('design')}")
        modalities = tuple(result["modalities"])
        if len(modalities) != 2:
            raise ReaderStudyError(f"the pilot compares {len(modalities)} modalities; sizing compares two: analyse "
                                   "a table holding only the two of interest")
        contrast = result["contrasts"][0]
        classes = result["case_classes"]
        return cls(float(result["variance_components"]["var_tr"]), classes["abnormal"], classes["normal"],
                   int(result["n_abnormal"]), int(result["n_cases"]) - int(result["n_abnormal"]),
                   float(contrast["estimate"]), (contrast["a"], contrast["b"]))

    def case_terms(self, cases: int, abnormal_share: float | None) -> dict[str, float]:
        """Var, Cov1, Cov2, Cov3 for a study of `cases` cases (default: the pilot's abnormal share)."""
        pilot_cases = self.n_abnormal + self.n_normal
        share = self.n_abnormal / pilot_cases if abnormal_share is None else abnormal_share
        n_abnormal = cases * share
        n_normal = cases - n_abnormal
        return {term: self.abnormal[term] * self.n_abnormal / n_abnormal + self.normal[term] * self.n_normal / n_normal
                for term in COVARIANCE_TERMS}


def pilot_power(pilot: PilotEstimates, readers: int, cases: int, generalisation: str = "random",
                effect: float | None = None, alpha: float = 0.05, abnormal_share: float | None = None) -> float:
    """HOB 2011 power of the OR test for `readers` and `cases` (see the module docstring)."""
    if readers < 2 or cases < 4:
        raise ReaderStudyError(f"a pivotal study needs at least 2 readers and 4 cases, got {readers} and {cases}")
    if abnormal_share is not None and not 0 < abnormal_share < 1:
        raise ReaderStudyError(f"--abnormal-share must be between 0 and 1, got {abnormal_share}")
    d = pilot.difference if effect is None else effect
    terms = pilot.case_terms(cases, abnormal_share)
    var_tr = max(pilot.var_tr, 0.0)
    shared = max(terms["cov2"] - terms["cov3"], 0.0)
    if generalisation == "random":
        denominator = var_tr + terms["var"] - terms["cov1"] + (readers - 1) * shared
        ddf = denominator ** 2 / ((var_tr + terms["var"] - terms["cov1"] - shared) ** 2 / (readers - 1))
    elif generalisation == "fixed_readers":
        denominator, ddf = terms["var"] - terms["cov1"] + (readers - 1) * shared, math.inf
    elif generalisation == "fixed_cases":
        denominator, ddf = var_tr + terms["var"] - terms["cov1"] - shared, float(readers - 1)
    else:
        raise ReaderStudyError(f"generalisation must be one of {', '.join(GENERALISATION_NAMES)}, got "
                               f"{generalisation!r}")
    if denominator <= 0:
        raise ReaderStudyError("the pilot's variance components give no error variance (all zero or negative): "
                               "it cannot size a study")
    noncentrality = readers * d ** 2 / 2 / denominator
    if math.isinf(ddf):
        return float(stats.ncx2.sf(stats.chi2.ppf(1 - alpha, 1), 1, noncentrality))
    return float(stats.ncf.sf(stats.f.ppf(1 - alpha, 1, ddf), 1, ddf, noncentrality))


def cases_needed(pilot: PilotEstimates, readers: int, target: float = 0.8, generalisation: str = "random",
                 effect: float | None = None, alpha: float = 0.05, abnormal_share: float | None = None,
                 most: int = 100_000) -> int | None:
    """The fewest cases giving `target` power with `readers` readers; None if `most` cases do not
    (with readers random, more cases cannot remove the reader variability: add readers)."""
    def power(cases: int) -> float:
        return pilot_power(pilot, readers, cases, generalisation, effect, alpha, abnormal_share)

    low = 4
    if power(most) < target:
        return None
    high = most
    while high - low > 1:  # power rises with cases: bisect for the first size that reaches the target
        middle = (low + high) // 2
        if power(middle) >= target:
            high = middle
        else:
            low = middle
    return high if power(low) < target else low


def readers_needed(pilot: PilotEstimates, cases: int, target: float = 0.8, generalisation: str = "random",
                   effect: float | None = None, alpha: float = 0.05, abnormal_share: float | None = None,
                   most: int = 1000) -> int | None:
    """The fewest readers giving `target` power with `cases` cases; None if `most` readers do not."""
    for readers in range(2, most + 1):
        if pilot_power(pilot, readers, cases, generalisation, effect, alpha, abnormal_share) >= target:
            return readers
    return None
