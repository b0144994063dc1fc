"""Explanations computed on demand, for the trainer page and notebooks (the study UI never does this).

    prediction = predict_image(model, image)                    # calibrated, with the model's threshold
    cascade = randomisation_cascade(model, image, "gradcam")   # Adebayo et al.'s check, one image

Both are thin compositions of the model, `attribute`, `render_overlay`,
`cascading_randomisation` and the similarity metrics of the evaluation, so a trainer sees
exactly what the measured numbers in docs/explanations.md describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from xai_lab.explain.attribution import attribute
from xai_lab.explain.metrics import spearman_similarity, ssim_similarity
from xai_lab.explain.overlay import render_overlay
from xai_lab.explain.randomisation import cascading_randomisation, passes
from xai_lab.model.network import ImageClassifier


@dataclass(frozen=True)
class Prediction:
    label: int
    confidence: float  # calibrated probability of `label`
    probabilities: list[float]


@dataclass(frozen=True)
class CascadeStep:
    randomised_up_to: str  # "original", "head", "features.3", ...
    overlay: Image.Image
    spearman: float  # similarity to the original map, measured as `xai-lab explain evaluate` does
    ssim: float


def predict_image(model: ImageClassifier, image: torch.Tensor) -> Prediction:
    with torch.no_grad():
        probabilities = model.predict_proba(image[None])
    label = int(model.decide(probabilities)[0])
    return Prediction(label, float(probabilities[0, label]), probabilities[0].tolist())


def randomisation_cascade(model: ImageClassifier, image: torch.Tensor, method: str, target: int | None = None, *,
                          seed: int = 0, display_size: int = 256) -> tuple[list[CascadeStep], bool]:
    """The original map, then the map after each block (top down) is re-initialised.

    Returns the steps and whether the fully randomised map passes the a-priori rule (similarity
    below 0.5 on both measures): a map that survives randomising the weights is not explaining
    what the model learned.
    """
    if target is None:
        target = predict_image(model, image).label
    original = attribute(model, image[None], target, method)
    steps = [CascadeStep("original", render_overlay(image, original[0], display_size=display_size, legend=False),
                         1.0, 1.0)]
    for name, randomised in cascading_randomisation(model, seed=seed):
        current = attribute(randomised, image[None], target, method)
        steps.append(CascadeStep(name, render_overlay(image, current[0], display_size=display_size, legend=False),
                                 float(spearman_similarity(original, current)[0]),
                                 float(ssim_similarity(original, current)[0])))
    final = steps[-1]
    return steps, passes(final.spearman, final.ssim)
