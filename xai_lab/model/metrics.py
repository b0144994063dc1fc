"""Test-set metrics of a classifier, from scikit-learn where it has them.

Binary tasks: sensitivity and specificity are for the positive class (index 1). Multi-class
tasks: AUROC is macro one-vs-rest; sensitivity is the macro-averaged recall (balanced accuracy)
and specificity the macro-averaged true-negative rate. 95% CIs are percentile bootstraps over
images (1,000 resamples).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, recall_score, roc_auc_score

from xai_lab.model.calibration import ECE_BINS, expected_calibration_error

BOOTSTRAP_RESAMPLES = 1000


def classification_metrics(probabilities: np.ndarray, predictions: np.ndarray, labels: np.ndarray,
                           with_ci: bool = True, seed: int = 0) -> dict:
    """auroc, accuracy, sensitivity, specificity, ece, brier, nll and n, plus CIs for the first two."""
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
    if with_ci and len(labels) >= 10:
        metrics["auroc_ci"], metrics["accuracy_ci"] = _bootstrap_cis(probabilities, predictions, labels, seed)
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


def _bootstrap_cis(probabilities, predictions, labels, seed: int) -> tuple[list | None, list]:
    rng = np.random.default_rng(seed)
    aurocs, accuracies = [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        sample = rng.integers(0, len(labels), len(labels))
        accuracies.append(np.mean(predictions[sample] == labels[sample]))
        auroc = _auroc(probabilities[sample], labels[sample])
        if auroc is not None:
            aurocs.append(auroc)
    accuracy_ci = [float(q) for q in np.percentile(accuracies, [2.5, 97.5])]
    auroc_ci = [float(q) for q in np.percentile(aurocs, [2.5, 97.5])] if aurocs else None
    return auroc_ci, accuracy_ci
