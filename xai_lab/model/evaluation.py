"""Evaluate a classifier on a split: calibrated metrics, and calibration before vs after scaling."""

from __future__ import annotations

import numpy as np
import torch

from xai_lab.data.records import Split
from xai_lab.model.calibration import expected_calibration_error
from xai_lab.model.metrics import brier_score, classification_metrics
from xai_lab.model.network import ImageClassifier


@torch.no_grad()
def uncalibrated_logits(model: ImageClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The network's raw logits (temperature 1, no prior offset), computed in batches."""
    model.eval()
    return torch.cat([model.uncalibrated_logits(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def evaluate_split(model: ImageClassifier, split: Split, with_ci: bool = True,
                   prevalence: np.ndarray | None = None) -> dict:
    """Metrics of the calibrated, thresholded model on one split (see `classification_metrics`);
    prevalence: the class mix its probabilities are calibrated for (adds `ece_at_prior`)."""
    model.eval()
    probabilities = model.predict_proba(split.images)
    predictions = model.decide(probabilities).numpy()
    return classification_metrics(probabilities.numpy(), predictions, split.labels.numpy(), with_ci=with_ci,
                                  prevalence=prevalence)


def calibration_report(model: ImageClassifier, split: Split) -> dict:
    """ECE, Brier and NLL of one split's predictions at three stages of calibration.

    before: the raw network (temperature 1); temperature: after temperature scaling alone;
    after: what the model outputs (temperature and the prior offset).
    """
    labels = split.labels.numpy()
    logits = uncalibrated_logits(model, split.images)
    stages = {"before": logits, "temperature": logits / model.temperature,
              "after": logits / model.temperature + model.logit_bias}
    return {stage: _calibration_scores(torch.softmax(values, 1).numpy(), labels) for stage, values in stages.items()}


def _calibration_scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    eps = 1e-12
    nll = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + eps)))
    return {"ece": expected_calibration_error(probabilities, labels), "brier": brier_score(probabilities, labels),
            "nll": nll}
