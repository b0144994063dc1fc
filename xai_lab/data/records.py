"""Records that describe a dataset: raw arrays before saving, the dataset card, the loaded splits."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPLITS: tuple[str, ...] = ("train", "val", "test")
NOT_FOR_CLINICAL_USE = (
    "Research and teaching only. Not a medical device; not for clinical use or diagnosis."
)


@dataclass
class DatasetArrays:
    """All images of a dataset as NumPy arrays, as importers and the generator produce them.

    images: uint8 (N, C, H, W); labels: int64 (N,) in [0, n_classes); splits: str (N,) of
    train/val/test; case_ids: str (N,), unique and stable (they name study cases later);
    masks: optional bool (N, H, W) lesion masks; metadata: per-image columns of length N.
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    case_ids: np.ndarray
    masks: np.ndarray | None = None
    metadata: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def content_sha256(self) -> str:
        """A hash of what a model learns from, independent of file format and creation time."""
        digest = hashlib.sha256()
        for array in (self.images, self.labels.astype(np.int64), self.splits.astype(str),
                      self.case_ids.astype(str)):
            digest.update(np.ascontiguousarray(array).tobytes())
        if self.masks is not None:
            digest.update(np.ascontiguousarray(self.masks).tobytes())
        return digest.hexdigest()

    def counts(self, class_names: list[str]) -> dict[str, dict[str, int]]:
        return {
            split: {
                name: int(np.sum((self.splits == split) & (self.labels == index)))
                for index, name in enumerate(class_names)
            }
            for split in SPLITS
        }


@dataclass
class DatasetCard:
    """The JSON card saved beside every dataset: where it came from and what is in it."""

    name: str
    class_names: list[str]
    image_size: list[int]  # [height, width]
    channels: int
    counts: dict[str, dict[str, int]]
    source: dict[str, Any]
    license: str
    sha256: str  # of the source file for imports; of the content for generated data
    content_sha256: str
    split_method: str
    has_masks: bool = False
    metadata_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created_at: str = ""
    xai_lab_version: str = ""
    intended_use: str = NOT_FOR_CLINICAL_USE
    # The lower 95% bound of validation AUROC a model of these data must reach before a study
    # serves it (xai_lab.model.quality); None: the lab's default floor.
    min_val_auroc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetCard:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def n_images(self) -> int:
        return sum(sum(by_class.values()) for by_class in self.counts.values())


@dataclass(frozen=True)
class Split:
    """One split of a loaded dataset, ready for PyTorch.

    images: float32 (N, C, H, W) in [0, 1]; labels: int64 (N,); masks: bool (N, H, W) or None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    case_ids: list[str]
    masks: torch.Tensor | None
    metadata: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class ImageDataset:
    """A dataset loaded from ``data/<name>/``: its card and its train/val/test splits."""

    name: str
    card: DatasetCard
    splits: dict[str, Split]
    path: Path

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]
