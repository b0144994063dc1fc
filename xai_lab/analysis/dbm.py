"""Dorfman-Berbaum-Metz (DBM) analysis: an ANOVA of jackknife pseudovalues, with Hillis's ddf.

    test = dbm_test(study, "auc")      # DBMTest(F, ndf, ddf, p_value, mean_squares)

Each reader x modality x case gets a pseudovalue Y_ijk = c θ_ij - (c - 1) θ_ij(k), shifted so that
its mean over cases is θ_ij ("normalised" pseudovalues; Hillis et al. 2005). A treatment x reader
x case ANOVA of Y without replication then tests treatments with readers and cases random:
F = MS(T) / [MS(T*R) + max(MS(T*C) - MS(T*R*C), 0)], ddf_H = (denominator)^2 / [MS(T*R)^2 / df(T*R)].
In a split-plot study (readers nested in modalities, equal numbers) T*R becomes R(T) and T*R*C
becomes R(T)*C.

Written apart from `xai_lab.analysis.mrmc` on purpose: Hillis et al. (2005, Stat Med 24:1579)
showed that DBM with normalised pseudovalues and OR with jackknife covariances give the same F and
ddf, so agreement of two independent computations guards both (tests/test_mrmc.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from xai_lab.analysis.fom import figures_of_merit
from xai_lab.analysis.reader_study import ReaderStudy, ReaderStudyError


@dataclass(frozen=True)
class DBMTest:
    F: float
    ndf: int
    ddf: float
    p_value: float
    mean_squares: dict[str, float]


def pseudovalues(study: ReaderStudy, fom: str = "auc") -> np.ndarray:
    """Normalised pseudovalues (modalities, readers, cases); NaN where a reader did not read."""
    theta, deleted = figures_of_merit(study, fom)
    c = deleted.shape[2]  # the jackknifed cases: all for the AUC, one class for sensitivity/specificity
    raw = c * theta[:, :, None] - (c - 1) * deleted
    return raw + (theta - raw.mean(axis=2))[:, :, None]


def dbm_test(study: ReaderStudy, fom: str = "auc") -> DBMTest:
    values = pseudovalues(study, fom)
    if study.design == "crossed":
        squares, df_error = _crossed_anova(values), _df(values, crossed=True)
        reader, case, residual = squares["tr"], squares["tc"], squares["trc"]
    else:
        counts = study.reads.sum(axis=1)
        if len(set(counts)) != 1:
            raise ReaderStudyError(f"the DBM analysis here needs equal readers per modality in a split-plot study "
                                   f"(got {', '.join(map(str, counts))}); the OR analysis handles unequal numbers")
        nested = np.stack([values[i, study.readers_in(i)] for i in range(values.shape[0])])
        squares, df_error = _nested_anova(nested), _df(nested, crossed=False)
        reader, case, residual = squares["r(t)"], squares["tc"], squares["r(t)c"]
    denominator = reader + max(case - residual, 0.0)
    t = values.shape[0]
    F = squares["t"] / denominator
    ddf = denominator ** 2 / (reader ** 2 / df_error)
    return DBMTest(float(F), t - 1, float(ddf), float(stats.f.sf(F, t - 1, ddf)), squares)


def _crossed_anova(y: np.ndarray) -> dict[str, float]:
    t, r, c = y.shape
    grand = y.mean()
    m_t, m_r, m_c = y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=(0, 1))
    m_tr, m_tc, m_rc = y.mean(axis=2), y.mean(axis=1), y.mean(axis=0)
    tr = m_tr - m_t[:, None] - m_r[None, :] + grand
    tc = m_tc - m_t[:, None] - m_c[None, :] + grand
    residual = (y - m_tr[:, :, None] - m_tc[:, None, :] - m_rc[None, :, :] + m_t[:, None, None]
                + m_r[None, :, None] + m_c[None, None, :] - grand)
    return {"t": r * c * float(((m_t - grand) ** 2).sum()) / (t - 1),
            "tr": c * float((tr ** 2).sum()) / ((t - 1) * (r - 1)),
            "tc": r * float((tc ** 2).sum()) / ((t - 1) * (c - 1)),
            "trc": float((residual ** 2).sum()) / ((t - 1) * (r - 1) * (c - 1))}


def _nested_anova(y: np.ndarray) -> dict[str, float]:
    """y: (modalities, readers within each, cases)."""
    t, r, c = y.shape
    grand = y.mean()
    m_t, m_c = y.mean(axis=(1, 2)), y.mean(axis=(0, 1))
    m_tr, m_tc = y.mean(axis=2), y.mean(axis=1)
    tc = m_tc - m_t[:, None] - m_c[None, :] + grand
    residual = y - m_tr[:, :, None] - m_tc[:, None, :] + m_t[:, None, None]
    return {"t": r * c * float(((m_t - grand) ** 2).sum()) / (t - 1),
            "r(t)": c * float(((m_tr - m_t[:, None]) ** 2).sum()) / (t * (r - 1)),
            "tc": r * float((tc ** 2).sum()) / ((t - 1) * (c - 1)),
            "r(t)c": float((residual ** 2).sum()) / (t * (r - 1) * (c - 1))}


def _df(y: np.ndarray, crossed: bool) -> float:
    t, r, _ = y.shape
    return float((t - 1) * (r - 1) if crossed else t * (r - 1))
