"""Is an image like the ones a model learned from? A warning for uploads on the trainer page.

    check = FamiliarityCheck.fit(model, data["train"].images, data["val"].images)
    check.distance(image)      # how far the image's features lie from the training images'
    check.is_unfamiliar(image)
    check.save(folder / FAMILIARITY_FILE); FamiliarityCheck.load(folder / FAMILIARITY_FILE, model)

The model's own pooled features (the input to its final layer) describe what it "sees". Their
distribution over the training images is summarised by a mean and a shrunk covariance
(Ledoit-Wolf, scikit-learn), and an image's Mahalanobis distance from it measures how unlike
the training images it is to the model (Lee et al., NeurIPS 2018, with features from the last
layer only). The threshold is `MARGIN` x the 99th percentile of the validation images'
distances: a fixed rule, not tuned on any foreign data.

Measured (default synthetic model, 128 px, the recipe of issue 24): 1 of 300 synthetic test images
flagged (0.3%); all 624 real Kermany radiographs flagged (smallest distance 19.3 against a threshold
of 17.5).
A warning, not a guarantee: an image under the threshold can still mislead the model.

`xai-lab train` saves the fitted check beside the weights (`familiarity.npz`): fitting reads every
training image through the network (about 2 s for the default model on 2 cores), which the
trainer page's first upload used to wait for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from xai_lab.model.locking import MODEL_LOCK
from xai_lab.model.network import ImageClassifier

TYPICAL_QUANTILE = 0.99
MARGIN = 1.25
FAMILIARITY_FILE = "familiarity.npz"


@torch.no_grad()
def pooled_features(model: ImageClassifier, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The features the model's final layer reads (every member's, for an ensemble)."""
    network, chunks = model.network, []
    read = network.head_input if model.imported else (lambda x: network.pooled_features(network.features(x)))
    with MODEL_LOCK:  # another session's explanation hooks must not fire in this pass
        for start in range(0, len(images), batch_size):
            chunks.append(read(model.prepare(images[start:start + batch_size])).flatten(1))
    return torch.cat(chunks).numpy().astype(np.float64)


@dataclass(frozen=True)
class FamiliarityCheck:
    model: ImageClassifier
    location: np.ndarray  # mean of the training images' features
    precision: np.ndarray  # inverse of their Ledoit-Wolf shrunk covariance
    threshold: float
    typical: float  # median validation distance, to say "how many times further"

    @classmethod
    def fit(cls, model: ImageClassifier, train: torch.Tensor, validation: torch.Tensor) -> FamiliarityCheck:
        estimate = LedoitWolf().fit(pooled_features(model, train))
        held_out = np.sqrt(estimate.mahalanobis(pooled_features(model, validation)))
        return cls(model, estimate.location_, estimate.precision_,
                   float(MARGIN * np.quantile(held_out, TYPICAL_QUANTILE)), float(np.median(held_out)))

    def save(self, path: Path) -> None:
        np.savez(path, location=self.location, precision=self.precision,
                 threshold=np.float64(self.threshold), typical=np.float64(self.typical))

    @classmethod
    def load(cls, path: Path, model: ImageClassifier) -> FamiliarityCheck | None:
        """The check saved beside `model`'s weights, or None when there is none (models trained before it
        was saved) or it does not fit the model's features."""
        try:
            with np.load(path) as saved:
                check = cls(model, saved["location"], saved["precision"], float(saved["threshold"]),
                            float(saved["typical"]))
        except (OSError, KeyError, ValueError):
            return None
        return check if check.precision.shape == (len(check.location),) * 2 else None

    def distance(self, image: torch.Tensor) -> float:
        """Mahalanobis distance of one image (C, H, W) from the training images, in feature space."""
        offset = pooled_features(self.model, image[None])[0] - self.location
        return float(np.sqrt(max(0.0, offset @ self.precision @ offset)))

    def is_unfamiliar(self, image: torch.Tensor) -> bool:
        return self.distance(image) > self.threshold
