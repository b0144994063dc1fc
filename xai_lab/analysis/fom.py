"""Figures of merit per reader and modality, and their case-deleted (jackknife) values.

    theta, deleted = figures_of_merit(study, "auc")   # (t, r) and (t, r, c); NaN where not read

- ``auc``: the empirical (trapezoidal) area under the ROC curve, i.e. the Mann-Whitney statistic:
  the share of (abnormal, normal) case pairs in which the abnormal case scored higher, ties
  counting one half (`sklearn.metrics.roc_auc_score` gives the same number; the tests check it).
- ``sensitivity`` / ``specificity``: the share of abnormal / normal cases the reader called
  positive / negative; the score is then the reader's own call (1 = positive, 0 = negative), so
  binary decisions go through the same analysis. Only the abnormal (normal) cases enter these
  FOMs, so only they are jackknifed: `deleted` then has one column per abnormal (normal) case and
  the jackknife constant is (n - 1) / n over those n cases, as in MRMCaov. Jackknifing all cases
  (deletions of the other class entering as zero deviations) inflated Var and the covariances by
  (c - 1) n / (c (n - 1)) and made the result depend on how many cases of the other class the table
  held.

Why not call scikit-learn c times for the jackknife: the AUC is a mean over case pairs, so
deleting one abnormal case removes one row of the pair matrix and deleting one normal case one
column; all c case-deleted AUCs come from the row and column sums of one matrix, exactly.
"""

from __future__ import annotations

import numpy as np

from xai_lab.analysis.reader_study import ReaderStudy, ReaderStudyError

FOMS = ("auc", "sensitivity", "specificity")


def figures_of_merit(study: ReaderStudy, fom: str = "auc") -> tuple[np.ndarray, np.ndarray]:
    """θ (modalities, readers) and the case-deleted θ(k) (modalities, readers, jackknifed cases): every
    case for the AUC, the abnormal (sensitivity) or normal (specificity) cases only; NaN where not read."""
    if fom not in FOMS:
        raise ReaderStudyError(f"--fom must be one of {', '.join(FOMS)}, got {fom!r}")
    abnormal, normal = study.truth, ~study.truth
    if abnormal.sum() < 2 or normal.sum() < 2:
        raise ReaderStudyError(f"the table has {int(abnormal.sum())} abnormal and {int(normal.sum())} normal cases; "
                               "a jackknife over cases needs at least two of each")
    if fom != "auc":
        _check_calls(study)
    t, r, c = study.scores.shape
    group = jackknifed_cases(study, fom)
    theta, deleted = np.full((t, r), np.nan), np.full((t, r, int(group.sum())), np.nan)
    for m, j in zip(*np.nonzero(study.reads), strict=True):
        scores = study.scores[m, j]
        if fom == "auc":
            theta[m, j], deleted[m, j] = _auc(scores[abnormal], scores[normal], abnormal)
        else:
            theta[m, j], deleted[m, j] = _proportion(scores[group], positive_call=fom == "sensitivity")
    return theta, deleted


def jackknifed_cases(study: ReaderStudy, fom: str) -> np.ndarray:
    """(cases,) bool: the cases a FOM's jackknife deletes, in the order of `deleted`'s last axis."""
    return {"auc": np.ones(study.n_cases, bool), "sensitivity": study.truth, "specificity": ~study.truth}[fom]


def _auc(positives: np.ndarray, negatives: np.ndarray, abnormal: np.ndarray) -> tuple[float, np.ndarray]:
    pairs = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    n1, n0 = pairs.shape
    total = pairs.sum()
    deleted = np.empty(len(abnormal))
    deleted[abnormal] = (total - pairs.sum(axis=1)) / ((n1 - 1) * n0)
    deleted[~abnormal] = (total - pairs.sum(axis=0)) / (n1 * (n0 - 1))
    return total / (n1 * n0), deleted


def _proportion(calls: np.ndarray, positive_call: bool) -> tuple[float, np.ndarray]:
    """Share of these cases called positive (sensitivity) or negative (specificity), and its jackknife
    over them."""
    hits = (calls == 1) if positive_call else (calls == 0)
    n, total = len(calls), float(hits.sum())
    return total / n, (total - hits) / (n - 1)


def _check_calls(study: ReaderStudy) -> None:
    read = study.scores[~np.isnan(study.scores)]
    odd = np.setdiff1d(np.unique(read), [0.0, 1.0])
    if len(odd):
        raise ReaderStudyError(f"sensitivity and specificity need the reader's call as the score (1 = positive, "
                               f"0 = negative), but the scores include {odd[0]:g}; give the calls, or use --fom auc")
