"""Test-set metrics of a classifier, from scikit-learn where it has them.

Binary tasks: sensitivity and specificity are for the positive class (index 1). Multi-class
tasks: AUROC is macro one-vs-rest; sensitivity is the macro-averaged recall (balanced accuracy)
and specificity the macro-averaged true-negative rate. 95% CIs are percentile bootstraps over
images (1,000 resamples), for AUROC, accuracy and ECE. ECE's interval is the one the trial
screen's calibration sentence rests on (`xai_lab.model.calibration.calibration_claim`); binned
ECE is biased upwards on small samples, which makes the gate conservative, never lenient.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, recall_score, roc_auc_score

from xai_lab.model.calibration import ECE_BINS, expected_calibration_error, prevalence_weights

BOOTSTRAP_RESAMPLES = 1000


def classification_metrics(probabilities: np.ndarray, predictions: np.ndarray, labels: np.ndarray,
                           with_ci: bool = True, seed: int = 0, prevalence: np.ndarray | None = None) -> dict:
    """auroc, accuracy, sensitivity, specificity, ece, brier, nll and n, with CIs for AUROC, accuracy and ECE.

    prevalence: the class mix the probabilities are calibrated for; adds `ece_at_prior` (and its CI),
    the ECE of the images reweighted to that mix (`prevalence_weights`).
    """
    n_classes = probabilities.shape[1]
    metrics = {
        "n": int(len(labels)),
        "auroc": _auroc(probabilities, labels),
        "accuracy": float(accuracy_score(labels, predictions)),
        "sensitivity": _sensitivity(predictions, labels, n_classes),
        "specificity": _specificity(predictions, labels, n_classes),
        "ece": expected_calibration_error(probabilities, labels),
        "ece_bins": ECE_BINS,
        "brier": brier_score(probabilities, labels),
        "nll": float(log_loss(labels, probabilities, labels=list(range(n_classes)))),
    }
    if prevalence is not None:
        metrics["ece_at_prior"] = expected_calibration_error(probabilities, labels,
                                                             weights=prevalence_weights(labels, prevalence))
        metrics["prior_prevalence"] = [float(p) for p in prevalence]
    if with_ci and len(labels) >= 10:
        metrics.update(_bootstrap_cis(probabilities, predictions, labels, seed, prevalence))
    return metrics


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of the probability vector against the one-hot label.

    For two classes this is twice scikit-learn's `brier_score_loss` on P(positive), so the
    binary case is reported in scikit-learn's convention (0 = perfect, 0.25 = coin toss).
    """
    one_hot = np.eye(probabilities.shape[1])[labels]
    multi = float(np.mean(np.sum((probabilities - one_hot) ** 2, axis=1)))
    return multi / 2.0 if probabilities.shape[1] == 2 else multi


def _auroc(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    present = np.unique(labels)
    if len(present) < 2:
        return None  # undefined with one class present
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    if len(present) < probabilities.shape[1]:
        return None
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))


def _sensitivity(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    if n_classes == 2:
        return float(recall_score(labels, predictions, pos_label=1, zero_division=0))
    return float(recall_score(labels, predictions, average="macro", labels=np.unique(labels), zero_division=0))


def _specificity(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    if n_classes == 2:
        return float(recall_score(labels, predictions, pos_label=0, zero_division=0))
    rates = []
    for c in np.unique(labels):
        negatives = labels != c
        if negatives.any():
            rates.append(float(np.mean(predictions[negatives] != c)))
    return float(np.mean(rates))


def _bootstrap_cis(probabilities, predictions, labels, seed: int, prevalence: np.ndarray | None) -> dict:
    rng = np.random.default_rng(seed)
    aurocs, accuracies, eces, eces_at_prior = [], [], [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        sample = rng.integers(0, len(labels), len(labels))
        p, y = probabilities[sample], labels[sample]
        accuracies.append(np.mean(predictions[sample] == y))
        eces.append(expected_calibration_error(p, y))
        if prevalence is not None:
            eces_at_prior.append(expected_calibration_error(p, y, weights=prevalence_weights(y, prevalence)))
        auroc = _auroc(p, y)
        if auroc is not None:
            aurocs.append(auroc)
    intervals = {"auroc_ci": _percentile_ci(aurocs) if aurocs else None, "accuracy_ci": _percentile_ci(accuracies),
                 "ece_ci": _percentile_ci(eces)}
    if eces_at_prior:
        intervals["ece_at_prior_ci"] = _percentile_ci(eces_at_prior)
    return intervals


def _percentile_ci(values: list[float]) -> list[float]:
    return [float(q) for q in np.percentile(values, [2.5, 97.5])]
