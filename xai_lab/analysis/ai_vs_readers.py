"""A standalone AI against the readers who read the same cases: the question every AI reader study is asked.

    result = ai_vs_readers(study, ai_scores, fom="auc")
    result.modalities[0].random.p_value      # readers and cases random (Hillis 2007, section 5.3)

The AI is a "reader" without reader variability: its FOM is fixed given the cases. For each
modality, with J readers, ψ_j = θ_j - θ_AI (reader minus AI) and the null hypothesis is that the
readers' mean FOM equals the AI's:

- **Readers and cases random** (RJafroc's ``StCadVsRad(method = "1T-RRRC")``, Chakraborty's
  single-modality method; Hillis 2007 section 5.3): the OR model for one modality on ψ. Var and
  Cov2 are jackknife estimates over cases of the ψ_j (each case deletion moves the reader and the
  AI together, so what they share cancels); MS(R) is the variance of the ψ_j;
  t = mean ψ / sqrt(D / J), D = MS(R) + max(J Cov2, 0), ddf = D^2 / (MS(R)^2 / (J - 1)).
- **Readers random, cases fixed** (``"1T-RRFC"``): a one-sample t-test of the ψ_j on J - 1 df.

Figures of merit and their jackknife come from `fom.figures_of_merit`, so the AUC is the same
Mann-Whitney area the OR analysis uses. Reference: the test suite reproduces RJafroc's stored
expected values for Karssemeijer's CAD vs nine radiologists (200 cases) to every printed digit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from xai_lab.analysis.fom import figures_of_merit
from xai_lab.analysis.jackknife import jackknife_covariances
from xai_lab.analysis.reader_study import ReaderStudy, ReaderStudyError, as_label


@dataclass(frozen=True)
class AiTest:
    """Readers' mean FOM minus the AI's, with its test under one generalisation."""

    difference: float
    se: float
    df: float
    t: float
    p_value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AiVsReaders:
    modality: str
    n_readers: int
    ai_fom: float
    reader_foms: dict[str, float]
    readers_mean: float
    var: float  # OR error variance of ψ (jackknife)
    cov2: float  # OR covariance of ψ between readers (jackknife)
    ms_r: float  # variance of the ψ_j
    random: AiTest  # readers and cases random (1T-RRRC)
    fixed_cases: AiTest  # readers random, cases fixed (1T-RRFC)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ai_vs_readers(study: ReaderStudy, ai_scores: np.ndarray, fom: str = "auc", alpha: float = 0.05
                  ) -> list[AiVsReaders]:
    """One comparison per modality; `ai_scores` holds the AI's score for each of `study.cases`."""
    if len(ai_scores) != study.n_cases or not np.isfinite(ai_scores).all():
        raise ReaderStudyError("the AI needs a numeric score for every case; some cases have none")
    with_ai = _with_ai_reader(study, ai_scores)
    theta, deleted = figures_of_merit(with_ai, fom)
    results = []
    for m, name in enumerate(study.modalities):
        readers = study.readers_in(m)
        if len(readers) < 2:
            raise ReaderStudyError(f"modality {name} has {len(readers)} reader; AI vs readers needs at least two")
        psi = theta[m, readers] - theta[m, -1]
        psi_deleted = deleted[m, readers] - deleted[m, -1]
        # Var and Cov2 of ψ: the OR jackknife over cases of one "modality" whose readers are the ψ_j
        psi_covariances = jackknife_covariances(psi_deleted[None], np.ones((1, len(readers)), bool))
        var, cov2 = psi_covariances.var, psi_covariances.cov2
        results.append(_compare(name, study, readers, theta[m], psi, var, cov2, alpha))
    return results


def _with_ai_reader(study: ReaderStudy, ai_scores: np.ndarray) -> ReaderStudy:
    """The study with the AI appended as a last reader who read every case in every modality."""
    t, _, c = study.scores.shape
    ai = np.broadcast_to(np.asarray(ai_scores, float), (t, 1, c))
    return replace(study, readers=(*study.readers, "AI"), scores=np.concatenate([study.scores, ai], axis=1))


def _compare(name: str, study: ReaderStudy, readers: np.ndarray, theta: np.ndarray, psi: np.ndarray, var: float,
             cov2: float, alpha: float) -> AiVsReaders:
    j = len(psi)
    mean = float(psi.mean())
    ms_r = float(psi.var(ddof=1))
    denominator = ms_r + max(j * cov2, 0.0)
    ddf = denominator ** 2 / (ms_r ** 2 / (j - 1)) if ms_r > 0 else math.inf
    random = _t_test(mean, math.sqrt(denominator / j), ddf, alpha)
    fixed_cases = _t_test(mean, math.sqrt(ms_r / j), float(j - 1), alpha)
    return AiVsReaders(name, j, float(theta[-1]), {study.readers[r]: float(theta[r]) for r in readers},
                       float(theta[readers].mean()), var, cov2, ms_r, random, fixed_cases)


def _t_test(difference: float, se: float, df: float, alpha: float) -> AiTest:
    if se <= 0:
        return AiTest(difference, se, df, math.nan, math.nan, math.nan, math.nan)
    t = difference / se
    quantile = float(stats.t.ppf(1 - alpha / 2, df))
    low, high = max(difference - quantile * se, -1.0), min(difference + quantile * se, 1.0)
    return AiTest(difference, se, df, t, float(2 * stats.t.sf(abs(t), df)), low, high)


def ai_scores_from(frame: pd.DataFrame, study: ReaderStudy, case: str, column: str, lower_is_positive: bool = False
                   ) -> np.ndarray:
    """The AI's score per case from a column of the long table: one value per case, the same in every row."""
    if column not in frame.columns:
        raise ReaderStudyError(f"the table has no column --ai {column!r}; its columns are "
                               f"{', '.join(map(str, frame.columns))}")
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any():
        raise ReaderStudyError(f"{int(values.isna().sum())} rows have no numeric AI score in column {column!r}; "
                               "give the AI's score on every row")
    by_case = pd.DataFrame({"case": frame[case].map(as_label), "ai": values}).groupby("case")["ai"]
    differing = by_case.nunique()
    if (differing > 1).any():
        raise ReaderStudyError(f"case {differing[differing > 1].index[0]} has different AI scores in different rows; "
                               "the AI reads each case once, so its score must be the same in every row")
    scores = by_case.first().reindex(list(study.cases)).to_numpy(float)
    return -scores if lower_is_positive else scores
