"""Train/val/test assignment: stratified by label, and grouped by patient where patients repeat.

A patient with several images must sit in one split only, or the test set leaks the training
set (the model recognises the patient, not the disease). scikit-learn's StratifiedGroupKFold
keeps groups whole while balancing labels; one fold becomes test, one of the remaining
folds becomes val.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from xai_lab.errors import DataError

DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
MIN_IMAGES, MIN_PER_CLASS = 20, 3


def check_splittable(labels: np.ndarray, origin: object) -> None:
    """Refuse pools too small for a stratified train/val/test split, naming the shortfall."""
    counts = np.bincount(labels) if labels.size else np.zeros(1, dtype=int)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if labels.size < MIN_IMAGES or smallest < MIN_PER_CLASS:
        raise DataError(f"{origin} has {labels.size} images ({smallest} in its smallest class); splitting into "
                        f"train/val/test needs at least {MIN_IMAGES} images and {MIN_PER_CLASS} per class")


def stratified_split(labels: np.ndarray, seed: int, fractions: dict[str, float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Assign each image to train/val/test, keeping class proportions in every split."""
    indices = np.arange(labels.shape[0])
    train, rest = train_test_split(indices, train_size=fractions["train"], stratify=labels, random_state=seed)
    val_share = fractions["val"] / (fractions["val"] + fractions["test"])
    val, test = train_test_split(rest, train_size=val_share, stratify=labels[rest], random_state=seed)
    return _assignment(labels.shape[0], train, val, test)


def grouped_stratified_split(labels: np.ndarray, groups: np.ndarray, seed: int,
                             fractions: dict[str, float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Like `stratified_split`, but all images of one group (patient) land in the same split."""
    n_folds = max(3, round(1.0 / min(fractions["val"], fractions["test"])))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(labels.shape[0], dtype=int)
    for fold, (_, members) in enumerate(folds.split(np.zeros(labels.shape[0]), labels, groups)):
        fold_of[members] = fold
    indices = np.arange(labels.shape[0])
    test = indices[fold_of == 0]
    val = indices[fold_of == 1]
    train = indices[fold_of >= 2]
    return _assignment(labels.shape[0], train, val, test)


def _assignment(n: int, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> np.ndarray:
    splits = np.empty(n, dtype="<U5")
    splits[train], splits[val], splits[test] = "train", "val", "test"
    return splits
