"""Datasets on disk: ``data/<name>/arrays.npz`` plus ``data/<name>/card.json``.

Arrays are checked before anything is written (`check_arrays`), written to a temporary folder
and moved into place in one rename, so a failed import never leaves a half-written dataset
and an overwrite never loses the old one before the new one is complete. Loading verifies the
content hash recorded in the card, so a damaged file is reported instead of trained on.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xai_lab.data.records import SPLITS, DatasetArrays, DatasetCard, ImageDataset, Split
from xai_lab.data.squares import reading_copy_path
from xai_lab.errors import DataError
from xai_lab.paths import check_name, data_root, dataset_dir

ARRAYS_FILE = "arrays.npz"
CARD_FILE = "card.json"
_META_PREFIX = "meta_"


def check_arrays(arrays: DatasetArrays, class_names: list[str], origin: str) -> None:
    """Reject arrays no model could learn from, naming the problem and the fix."""
    n = len(arrays.images)
    if arrays.images.ndim != 4 or arrays.images.dtype != np.uint8:
        raise DataError(f"{origin}: images must be uint8 with shape (N, C, H, W), got {arrays.images.dtype} "
                        f"{arrays.images.shape}")
    if n == 0:
        raise DataError(f"{origin} holds no images; point to a file or folder that contains some")
    if len(arrays.labels) != n:
        raise DataError(f"{origin} has {n} images but {len(arrays.labels)} labels; "
                        "every image needs exactly one label")
    if len(class_names) < 2:
        raise DataError(f"{origin} has only one class ({', '.join(class_names)}); a classifier needs examples of "
                        "at least two classes")
    if arrays.labels.min() < 0 or arrays.labels.max() >= len(class_names):
        raise DataError(f"{origin} has labels outside 0..{len(class_names) - 1} for classes {class_names}; "
                        "pass --classes with one name per label value")
    present = np.unique(arrays.labels)
    if len(present) < 2:
        raise DataError(f"{origin} contains only one class ({class_names[int(present[0])]!r}); "
                        "a classifier needs examples of at least two classes")
    for split in SPLITS:
        in_split = arrays.splits == split
        if not in_split.any():
            raise DataError(f"{origin} has no {split} images; every dataset needs train, val and test splits")
    if len(np.unique(arrays.labels[arrays.splits == "train"])) < 2:
        raise DataError(f"{origin}: the train split has only one class; it needs examples of every class")
    if len(np.unique(arrays.case_ids)) != n:
        raise DataError(f"{origin}: case ids are not unique; each image needs its own id")


def make_card(name: str, arrays: DatasetArrays, class_names: list[str], *, source: dict[str, Any],
              license: str, split_method: str, source_sha256: str | None = None,
              notes: list[str] | None = None, min_val_auroc: float | None = None) -> DatasetCard:
    """Describe checked arrays: counts per split and class, size, provenance, hashes."""
    from xai_lab.version import __version__

    content_sha256 = arrays.content_sha256()
    return DatasetCard(
        name=name, class_names=list(class_names),
        image_size=[int(arrays.images.shape[2]), int(arrays.images.shape[3])],
        channels=int(arrays.images.shape[1]), counts=arrays.counts(class_names), source=source,
        license=license, sha256=source_sha256 or content_sha256, content_sha256=content_sha256,
        split_method=split_method, has_masks=arrays.masks is not None,
        metadata_columns=sorted(arrays.metadata), notes=list(notes or []),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"), xai_lab_version=__version__,
        min_val_auroc=min_val_auroc,
    )


def save_dataset(name: str, arrays: DatasetArrays, class_names: list[str], *, source: dict[str, Any],
                 license: str, split_method: str, source_sha256: str | None = None,
                 notes: list[str] | None = None, overwrite: bool = False,
                 reading_copies: dict[str, bytes] | None = None, min_val_auroc: float | None = None) -> DatasetCard:
    """Check, then atomically write a dataset and its card; returns the card.

    reading_copies: case id -> PNG of the image at its own resolution (xai_lab.data.squares), kept
    beside the arrays for the study viewer; derived views, so not part of the content hash.
    """
    target = dataset_dir(name)
    check_arrays(arrays, class_names, f"dataset {name!r}")
    if target.exists() and not overwrite:
        raise DataError(f"dataset {name!r} already exists in {target}; choose another --name or pass --overwrite")
    card = make_card(name, arrays, class_names, source=source, license=license, split_method=split_method,
                     source_sha256=source_sha256, notes=notes, min_val_auroc=min_val_auroc)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        _write_arrays(staging / ARRAYS_FILE, arrays)
        for case_id, png in (reading_copies or {}).items():
            path = reading_copy_path(staging, case_id)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(png)
        (staging / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
        _replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def load_dataset(name_or_path: str | Path) -> ImageDataset:
    """Load a saved dataset by name (under ``XAI_LAB_HOME/data``) or by the path of its folder."""
    folder = resolve_dataset_dir(name_or_path)
    card = read_card(folder)
    arrays = _read_arrays(folder / ARRAYS_FILE)
    if arrays.content_sha256() != card.content_sha256:
        raise DataError(f"dataset {card.name!r} in {folder} is damaged (its content no longer matches its card); "
                        "re-create it with 'xai-lab data synth' or 'xai-lab data import --overwrite'")
    return to_image_dataset(card, arrays, folder)


def to_image_dataset(card: DatasetCard, arrays: DatasetArrays, folder: Path) -> ImageDataset:
    """Turn NumPy arrays into per-split float tensors in [0, 1]."""
    splits = {}
    for split in SPLITS:
        rows = np.flatnonzero(arrays.splits == split)
        splits[split] = Split(
            images=torch.from_numpy(arrays.images[rows]).float().div_(255.0),
            labels=torch.from_numpy(arrays.labels[rows].astype(np.int64)),
            case_ids=[str(c) for c in arrays.case_ids[rows]],
            masks=None if arrays.masks is None else torch.from_numpy(arrays.masks[rows]),
            metadata={key: column[rows] for key, column in arrays.metadata.items()},
        )
    return ImageDataset(name=card.name, card=card, splits=splits, path=folder)


def resolve_dataset_dir(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if (candidate / CARD_FILE).is_file():
        return candidate
    if isinstance(name_or_path, str) and "/" not in name_or_path and "\\" not in name_or_path:
        folder = dataset_dir(check_name(name_or_path, "dataset name"))
        if (folder / CARD_FILE).is_file():
            return folder
    known = ", ".join(card.name for card in list_datasets()) or "none yet"
    raise DataError(f"unknown dataset {str(name_or_path)!r} (datasets in {data_root()}: {known}); "
                    "create it with 'xai-lab data synth' or 'xai-lab data import', or check XAI_LAB_HOME")


def read_card(folder: Path) -> DatasetCard:
    try:
        return DatasetCard.from_dict(json.loads((folder / CARD_FILE).read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"the dataset card {folder / CARD_FILE} is unreadable ({error}); "
                        "re-create the dataset") from None


def list_datasets() -> list[DatasetCard]:
    root = data_root()
    if not root.is_dir():
        return []
    cards = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (folder / CARD_FILE).is_file():
            try:
                cards.append(read_card(folder))
            except DataError:
                continue
    return cards


def _write_arrays(path: Path, arrays: DatasetArrays) -> None:
    payload = {"images": arrays.images, "labels": arrays.labels.astype(np.int64),
               "splits": arrays.splits.astype(str), "case_ids": arrays.case_ids.astype(str)}
    if arrays.masks is not None:
        payload["masks"] = arrays.masks.astype(bool)
    payload.update({_META_PREFIX + key: column for key, column in arrays.metadata.items()})
    np.savez_compressed(path, **payload)


def _read_arrays(path: Path) -> DatasetArrays:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return DatasetArrays(
                images=stored["images"], labels=stored["labels"], splits=stored["splits"],
                case_ids=stored["case_ids"], masks=stored["masks"] if "masks" in stored.files else None,
                metadata={key[len(_META_PREFIX):]: stored[key] for key in stored.files
                          if key.startswith(_META_PREFIX)},
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"the dataset file {path} is unreadable ({error}); re-create the dataset") from None


def _replace_directory(staging: Path, target: Path) -> None:
    """Move `staging` to `target`; an existing target is kept aside until the move succeeded."""
    if not target.exists():
        staging.rename(target)
        return
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
