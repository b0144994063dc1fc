"""OR error covariances by jackknifing cases, and each reader's own contrasts from the same jackknife.

    covariances = jackknife_covariances(deleted, study.reads)     # Var, Cov1, Cov2, Cov3
    reader_contrasts(study, theta, deleted, alpha)                 # per reader, cases random

`deleted` holds the case-deleted figures of merit (`fom.figures_of_merit`). The covariances are
(c-1)/c times the cross-products of the deletions' deviations, averaged over the reader x modality
pairs of each kind (Obuchowski & Rockette 1995; Hillis 2005, 2007); `xai_lab.analysis.mrmc` builds
the OR tests on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from xai_lab.analysis.reader_study import ReaderStudy


@dataclass(frozen=True)
class Covariances:
    """OR error variance and covariances (jackknife), over all modalities and per modality."""

    var: float
    cov1: float | None  # None in split-plot designs: no reader reads two modalities
    cov2: float
    cov3: float
    var_by_modality: tuple[float, ...]
    cov2_by_modality: tuple[float, ...]


@dataclass(frozen=True)
class ReaderContrast:
    """One reader's difference between two modalities, cases random (fixed-reader analysis per reader)."""

    reader: str
    a: str
    b: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float


def jackknife_covariances(deleted: np.ndarray, reads: np.ndarray, columns: np.ndarray | None = None
                          ) -> Covariances:
    """Var, Cov1, Cov2, Cov3 from case-deleted FOMs (t, r, c): (c-1)/c times the cross-products of
    the deviations from their means, averaged over the reader x modality pairs of each kind.
    `columns` (bool, c) keeps only those deletions' cross-products: the part of each covariance that
    those cases carry (the parts over a partition of the cases sum to the whole)."""
    modality, reader = np.nonzero(reads)
    values = deleted[modality, reader]  # (readings, cases)
    c = values.shape[1]
    centred = values - values.mean(axis=1, keepdims=True)
    kept = centred if columns is None else centred[:, columns]
    covariance = (c - 1) / c * kept @ kept.T
    same_modality = modality[:, None] == modality[None, :]
    same_reader = reader[:, None] == reader[None, :]
    diagonal = np.eye(len(modality), dtype=bool)

    def mean_of(mask: np.ndarray) -> float | None:
        return float(covariance[mask].mean()) if mask.any() else None

    n_modalities = reads.shape[0]
    in_modality = [modality == i for i in range(n_modalities)]
    return Covariances(
        var=mean_of(diagonal), cov1=mean_of(same_reader & ~same_modality),
        cov2=mean_of(same_modality & ~same_reader), cov3=mean_of(~same_modality & ~same_reader) or 0.0,
        var_by_modality=tuple(mean_of(diagonal & m[:, None] & m[None, :]) for m in in_modality),
        cov2_by_modality=tuple(mean_of(~same_reader & m[:, None] & m[None, :]) for m in in_modality))


def reader_contrasts(study: ReaderStudy, theta: np.ndarray, deleted: np.ndarray, alpha: float
                      ) -> tuple[ReaderContrast, ...]:
    """Per reader and modality pair: the difference with its jackknife SE over cases, z reference
    (MRMCaov's reader-specific comparisons under fixed readers)."""
    c = deleted.shape[2]
    quantile = float(stats.norm.ppf(1 - alpha / 2))
    rows = []
    for j, reader in enumerate(study.readers):
        for a, b in combinations(range(len(study.modalities)), 2):
            change = deleted[a, j] - deleted[b, j]
            se = math.sqrt((c - 1) / c * float(((change - change.mean()) ** 2).sum()))
            estimate = float(theta[a, j] - theta[b, j])
            z = estimate / se if se > 0 else math.nan
            rows.append(ReaderContrast(reader, study.modalities[a], study.modalities[b], estimate, se,
                                       max(estimate - quantile * se, -1.0), min(estimate + quantile * se, 1.0), z,
                                       float(2 * stats.norm.sf(abs(z))) if se > 0 else math.nan))
    return tuple(rows)
