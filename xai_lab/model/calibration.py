"""Calibration: temperature scaling, expected calibration error, the decision threshold.

Temperature scaling (Guo et al., ICML 2017) fits one scalar T on the validation split so that
softmax(logits / T) minimises the negative log-likelihood. It is a few lines over PyTorch's
LBFGS; the libraries that offer it (netcal, torchcal) would add a dependency for no gain.
ECE is not in scikit-learn either (it has only `calibration_curve`), so it is written here
with the binning stated: 15 equal-width bins on the top-label confidence, as in Guo et al.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve

ECE_BINS = 15
THRESHOLD_RULES = ("youden", "accuracy", "half")
CALIBRATION_PRIORS = ("balanced", "training")


def prior_logit_bias(train_labels: np.ndarray, n_classes: int, prior: str) -> np.ndarray:
    """Logit offsets that re-target calibrated probabilities to a class prior.

    "training": none, probabilities hold at the training prevalence. "balanced": -log(prevalence),
    i.e. probabilities for equal prevalence (Saerens, Latinne & Decaestecker, Neural Computation
    2002; the logit adjustment of Menon et al., ICLR 2021). Trust studies show balanced case sets,
    and with a balanced prior the validation-optimal (Youden) threshold sits near 0.5, so the AI's
    label and the confidence shown with it agree.
    """
    if prior == "training":
        return np.zeros(n_classes)
    if prior != "balanced":
        raise ValueError(f"calibration prior must be one of {CALIBRATION_PRIORS}, got {prior!r}")
    prevalence = np.bincount(train_labels, minlength=n_classes) / max(len(train_labels), 1)
    return -np.log(np.clip(prevalence, 1e-6, None))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising NLL of softmax(logits / T) on held-out data."""
    logits, labels = logits.detach().double(), labels.detach().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # optimise log T: keeps T > 0
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    temperature = float(log_t.detach().exp())
    return temperature if np.isfinite(temperature) and temperature > 0 else 1.0


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| x bin share."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bin_index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bin_index == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def choose_threshold(p_positive: np.ndarray, labels: np.ndarray, rule: str = "youden",
                     n_bootstrap: int = 200, seed: int = 0) -> float:
    """A decision threshold on P(positive) chosen on validation data.

    youden: maximise sensitivity + specificity - 1 (robust to class imbalance); accuracy:
    maximise validation accuracy; half: 0.5, the Bayes rule for calibrated probabilities.
    A validation set that the model nearly separates has many thresholds within one case of
    the optimum, so the single best one is mostly noise; the threshold returned is the median
    of the optima over bootstrap resamples of the validation set (as cutpointr's bootstrapped
    cut-points do), which is stable from seed to seed.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    if rule == "half" or len(np.unique(labels)) < 2:
        return 0.5
    rng = np.random.default_rng(seed)
    optima = [_optimal_threshold(p_positive, labels, rule)]
    for _ in range(n_bootstrap):
        sample = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[sample])) == 2:
            optima.append(_optimal_threshold(p_positive[sample], labels[sample], rule))
    return float(np.median(optima))


def _optimal_threshold(p_positive: np.ndarray, labels: np.ndarray, rule: str) -> float:
    false_pos, true_pos, thresholds = roc_curve(labels, p_positive)
    thresholds = np.clip(thresholds, 0.0, 1.0)
    if rule == "youden":
        scores = true_pos - false_pos
    else:
        n_pos = labels.sum()
        scores = (true_pos * n_pos + (1 - false_pos) * (len(labels) - n_pos)) / len(labels)
    best = np.flatnonzero(scores == scores.max())
    # Among exactly tied thresholds take the one nearest 0.5.
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]])
