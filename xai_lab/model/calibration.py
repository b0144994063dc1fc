"""Calibration: temperature scaling, expected calibration error, the decision threshold.

Temperature scaling (Guo et al., ICML 2017) fits one scalar T on the validation split so that
softmax(logits / T) minimises the negative log-likelihood. It is a few lines over PyTorch's
LBFGS; the libraries that offer it (netcal, torchcal) would add a dependency for no gain.
ECE is not in scikit-learn either (it has only `calibration_curve`), so it is written here
with the binning stated: 15 equal-width bins on the top-label confidence, as in Guo et al.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve

ECE_BINS = 15
# The trial screen tells clinicians the AI's probabilities are calibrated ("of cases given 80%, about
# 80% have the finding") only when the test ECE's 95% upper bound is below this: "about" then
# means within 5 percentage points on average, with 97.5% confidence (docs/calibration.md).
CALIBRATION_CLAIM_MAX_ECE = 0.05
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


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS,
                               weights: np.ndarray | None = None) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| x bin share.

    weights: per-image weights (e.g. `prevalence_weights`), so the error is that of a population
    with another class mix; None weighs every image alike.
    """
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    bin_index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = weights.sum()
    ece = 0.0
    for b in range(n_bins):
        in_bin = bin_index == b
        mass = weights[in_bin].sum()
        if mass > 0:
            gap = np.average(correct[in_bin], weights=weights[in_bin]) - np.average(confidence[in_bin],
                                                                                    weights=weights[in_bin])
            ece += mass / total * abs(gap)
    return float(ece)


def prevalence_weights(labels: np.ndarray, prevalence: np.ndarray) -> np.ndarray:
    """Per-image weights that give each class the share `prevalence` (importance weighting).

    The model's probabilities hold for the prevalence of its calibration prior (equal classes
    for "balanced"), not for the test split's own mix (PneumoniaMNIST's test split is 62.5%
    pneumonia): their calibration is judged on the test images reweighted to that prevalence.
    """
    prevalence = np.asarray(prevalence, dtype=float)
    observed = np.bincount(labels, minlength=len(prevalence)) / max(len(labels), 1)
    ratio = np.divide(prevalence, observed, out=np.zeros(len(prevalence)), where=observed > 0)
    return ratio[labels]


def prior_prevalence(prior: str, training_prevalence: Sequence[float]) -> np.ndarray:
    """The class mix calibrated probabilities hold for: equal classes, or the training split's."""
    training = np.asarray(training_prevalence, dtype=float)
    return np.full(len(training), 1.0 / len(training)) if prior == "balanced" else training


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


def calibration_claim(test_metrics: dict) -> dict:
    """Whether the test split supports telling readers the probabilities are calibrated.

    Supported only when the upper end of the bootstrap 95% CI of the test ECE, measured at the
    prevalence the probabilities hold for (`ece_at_prior`), is below `CALIBRATION_CLAIM_MAX_ECE`.
    No interval (a card written before intervals were kept, or a test split under 10 images):
    no evidence, so no claim.
    """
    ci = test_metrics.get("ece_at_prior_ci")
    supported = bool(ci) and ci[1] < CALIBRATION_CLAIM_MAX_ECE
    if not ci:
        reason = "no confidence interval for the test ECE (retrain to compute one)"
    else:
        reason = (f"test ECE at the calibration prior {test_metrics['ece_at_prior']:.3f}, 95% CI upper bound "
                  f"{ci[1]:.3f} {'<' if supported else '>='} {CALIBRATION_CLAIM_MAX_ECE} on "
                  f"{test_metrics.get('n')} test images")
    return {"supported": supported, "max_ece_upper_bound": CALIBRATION_CLAIM_MAX_ECE, "reason": reason}
