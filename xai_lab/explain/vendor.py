"""A vendor's advice without its model: one probability (and optionally a decision) per case, and
optionally a heat map per case, imported as an *advice set* (`xai-lab advice import`).

An advice set lives where a model does, so that studies, the quality gate and the study pages read it
as they read a model: ``models/NAME/`` holds its card (``model_card.json``, architecture type
``advice_set``) and the normalised table (``advice.csv``); ``cache/NAME/`` holds one prediction per case
and the vendor's maps under the request `vendor_map_request()`, resized to the image. What an advice
set cannot do is run: it advises only on the cases it has rows for, it explains only with the maps it
came with, and no randomisation check is possible (a black box's maps cannot be tested against weights
the lab does not have); its card says so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as transforms

from xai_lab.data.records import NOT_FOR_CLINICAL_USE, ImageDataset
from xai_lab.errors import ExplainError
from xai_lab.explain.cache import CachedExplanation, CachedPrediction, ExplanationCache
from xai_lab.explain.request import VENDOR_MAP, vendor_map_request
from xai_lab.model.card import ADVICE_SET, CARD_FILE, CARD_VERSION, ModelCard, write_model_folder
from xai_lab.model.metrics import classification_metrics
from xai_lab.paths import explanation_cache_dir, model_dir

MAP_SUFFIXES = (".npy", ".npz", ".png")
ASPECT_TOLERANCE = 0.02  # a map whose height/width differs more from the image's is not of that image
ID_COLUMNS = ("case_id", "sop_instance_uid")
NO_RANDOMISATION_CHECK = ("no randomisation check is possible: the maps come from a model the lab does not have, "
                          "so their dependence on its weights cannot be tested")


@dataclass(frozen=True)
class AdviceRow:
    case_id: str
    probability: float  # P(finding) as the vendor reports it
    decision: int | None  # the vendor's own class index, when the table gives one


@dataclass(frozen=True)
class VendorMap:
    attribution: np.ndarray  # (H, W) float32 at the image's resolution
    resized_from: tuple[int, int] | None  # the map's own (H, W) when it was resized


def read_advice_table(path: Path, dataset: ImageDataset) -> list[AdviceRow]:
    """The table's rows with ids resolved to the dataset's case ids; refuses, in one line, what is wrong."""
    columns, rows = _table(path)
    id_column = next((name for name in ID_COLUMNS if name in columns), None)
    if id_column is None or "probability" not in columns:
        raise ExplainError(f"{path} needs a case_id (or sop_instance_uid) column and a probability column (of "
                           f"{dataset.class_names[-1]!r}); its columns: {', '.join(columns)}")
    ids = _id_lookup(dataset, id_column, path)
    found, unknown = [], []
    for number, row in enumerate(rows, start=2):
        given = str(row[id_column]).strip()
        if given not in ids:
            unknown.append(given)
            continue
        found.append(AdviceRow(ids[given], _probability(row["probability"], path, number),
                               _decision(row.get("decision"), dataset.class_names, path, number)))
    if unknown:
        raise ExplainError(f"{path}: {len(unknown)} {id_column}(s) are not in dataset '{dataset.name}': "
                           f"{listed_ids(unknown)}; import the vendor's outputs with the dataset they were made on")
    repeated = sorted(case_id for case_id, count in Counter(row.case_id for row in found).items() if count > 1)
    if repeated:
        raise ExplainError(f"{path}: case(s) {listed_ids(repeated)} have more than one row; keep one row per case")
    if not found:
        raise ExplainError(f"{path} has no rows; give one row per case")
    return found


def _table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    if not path.is_file():
        raise ExplainError(f"no advice table at {path}; give a CSV or Parquet file with one row per case")
    if path.suffix.lower() == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a file that is not Parquet
            raise ExplainError(f"{path} is not a Parquet file pandas can read ({error}); save it as CSV") from None
        return [str(c) for c in frame.columns], frame.to_dict(orient="records")
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ExplainError(f"{path} is not a UTF-8 CSV file ({error}); save the table as CSV (UTF-8)") from None
    return [c.strip() for c in reader.fieldnames or []], [{k.strip(): v for k, v in r.items() if k} for r in rows]


def _id_lookup(dataset: ImageDataset, column: str, path: Path) -> dict[str, str]:
    """Given id -> case id: case ids as they are, or DICOM SOP Instance UIDs through the dataset's metadata."""
    lookup: dict[str, str] = {}
    for split in dataset.splits.values():
        if column == "case_id":
            lookup.update({case_id: case_id for case_id in split.case_ids})
        elif "sop_instance_uid" in split.metadata:
            lookup.update({str(uid): case_id for uid, case_id in zip(split.metadata["sop_instance_uid"],
                                                                       split.case_ids, strict=True)})
        else:
            raise ExplainError(f"{path} identifies cases by sop_instance_uid but dataset '{dataset.name}' was not "
                               "imported from DICOM files; give a case_id column instead")
    return lookup


def _probability(value: Any, path: Path, number: int) -> float:
    try:
        probability = float(value)
    except (TypeError, ValueError):
        raise ExplainError(f"{path} row {number}: probability {value!r} is not a number; give P(finding) in "
                           "[0, 1]") from None
    if not math.isfinite(probability) or not 0.0 <= probability <= 1.0:
        raise ExplainError(f"{path} row {number}: probability {value!r} is outside [0, 1]; give P(finding) as a "
                           "probability, not a percentage or a score")
    return probability


def _decision(value: Any, class_names: list[str], path: Path, number: int) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text in class_names:
        return class_names.index(text)
    if text in {str(i) for i in range(len(class_names))}:
        return int(text)
    raise ExplainError(f"{path} row {number}: decision {text!r} is not a class of the dataset; use one of "
                       f"{', '.join(class_names)} (or its index)")


def read_vendor_map(path: Path, image_size: tuple[int, int]) -> VendorMap:
    """One map file (greyscale PNG, NPY, or NPZ with one array) at the image's resolution."""
    array = _map_array(path)
    if array.ndim != 2 or min(array.shape) < 1:
        raise ExplainError(f"{path} holds an array of shape {array.shape}, not one 2-D map; save one (H, W) "
                           "array per case")
    if not np.isfinite(array).all():
        raise ExplainError(f"{path} holds NaN or infinite values; save finite map values")
    height, width = image_size
    aspect, image_aspect = array.shape[0] / array.shape[1], height / width
    if abs(aspect - image_aspect) > ASPECT_TOLERANCE * image_aspect:
        raise ExplainError(f"{path} is {array.shape[1]} x {array.shape[0]} (width x height), whose aspect ratio "
                           f"differs from the image's {width} x {height}; give maps of the whole image, uncropped")
    if array.shape == (height, width):
        return VendorMap(array.astype(np.float32), None)
    resized = transforms.resize(torch.from_numpy(array.astype(np.float32))[None], [height, width], antialias=True)
    return VendorMap(resized[0].numpy(), (int(array.shape[0]), int(array.shape[1])))


def _map_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            picture = Image.open(path)
            if picture.mode not in ("L", "I", "I;16", "F"):
                raise ExplainError(f"{path} is a {picture.mode} picture; give the map as a greyscale PNG (brighter = "
                                   "more influence) or its values as .npy: colours cannot be read back as values")
            return np.asarray(picture, dtype=np.float32)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if len(archive.files) != 1:
                    raise ExplainError(f"{path} holds {len(archive.files)} arrays; save one map per file")
                return np.asarray(archive[archive.files[0]], dtype=np.float32)
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (OSError, ValueError) as error:
        raise ExplainError(f"{path} cannot be read as a map ({error}); save a greyscale PNG or a .npy array") from None


def find_maps(folder: Path, case_ids: list[str]) -> dict[str, Path]:
    """case id -> its map file in `folder` (named by case id, any of `MAP_SUFFIXES`); others are refused."""
    if not folder.is_dir():
        raise ExplainError(f"no map folder at {folder}; give a folder of <case id>.png / .npy / .npz files")
    found = [path for path in sorted(folder.iterdir()) if path.suffix.lower() in MAP_SUFFIXES]
    twice = sorted(stem for stem, count in Counter(path.stem for path in found).items() if count > 1)
    if twice:
        raise ExplainError(f"{folder}: case(s) {listed_ids(twice)} have more than one map file; keep one per case")
    files = {path.stem: path for path in found}
    stray = sorted(set(files) - set(case_ids))
    if stray:
        raise ExplainError(f"{folder}: map(s) {listed_ids(stray)} have no row in the table; name each map by its "
                           "case id, or add the rows")
    return {case_id: files[case_id] for case_id in case_ids if case_id in files}


def listed_ids(items: list[str]) -> str:
    """The first five ids and how many in all: a refusal names them without flooding the line."""
    return ", ".join(items[:5]) + (f" ... ({len(items)} in all)" if len(items) > 5 else "")


# ------------------------------------------------------------------ writing an advice set


@dataclass(frozen=True)
class AdviceImport:
    table: Path
    dataset: ImageDataset
    name: str
    maps: Path | None = None
    threshold: float = 0.5  # the vendor's operating point on P(finding) where the table gives no decision
    overwrite: bool = False


def import_advice(request: AdviceImport) -> Path:
    """Check everything, then write the advice set's folder and cache; nothing is written on a refusal."""
    dataset = request.dataset
    if len(dataset.class_names) != 2:
        raise ExplainError(f"dataset '{dataset.name}' has {len(dataset.class_names)} classes; vendor advice is one "
                           "probability of the finding, so it needs a two-class dataset")
    if not 0.0 <= request.threshold <= 1.0:
        raise ExplainError(f"--threshold {request.threshold} is not a probability; give the operating point on "
                           "P(finding) in [0, 1]")
    folder = model_dir(request.name)
    if folder.exists() and not request.overwrite:
        raise ExplainError(f"{folder} already exists; choose another --name or pass --overwrite")
    rows = read_advice_table(request.table, dataset)
    files = find_maps(request.maps, [row.case_id for row in rows]) if request.maps else {}
    size = tuple(dataset.card.image_size)
    maps = {case_id: read_vendor_map(path, size) for case_id, path in files.items()}
    predictions = _predictions(rows, dataset, request.threshold)
    digest = _digest(request.table, files)
    card = _card(request, rows, maps, predictions, digest)
    cache_root = explanation_cache_dir(request.name)
    cache_root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{request.name}.", dir=cache_root.parent))
    try:
        _fill_cache(ExplanationCache(staging, ModelCard.from_json(card)), dataset, predictions, maps)
        _write(folder, card, request.table)
        shutil.rmtree(cache_root, ignore_errors=True)  # an earlier import of this name: its entries are not these
        staging.rename(cache_root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _fill_cache(cache: ExplanationCache, dataset: ImageDataset, predictions: dict[str, CachedPrediction],
                maps: dict[str, VendorMap]) -> None:
    cache.claim(dataset.name, dataset.card.content_sha256)
    for prediction in predictions.values():
        cache.save_prediction(prediction)
    for case_id, vendor_map in maps.items():
        explanation = CachedExplanation(case_id, VENDOR_MAP, predictions[case_id].predicted, vendor_map.attribution,
                                        vendor_map_request().settings())
        cache.save_explanation(explanation, vendor_map_request())


def _predictions(rows: list[AdviceRow], dataset: ImageDataset, threshold: float) -> dict[str, CachedPrediction]:
    labels = {case_id: int(split.labels[i]) for split in dataset.splits.values()
              for i, case_id in enumerate(split.case_ids)}
    def decided(row: AdviceRow) -> int:
        return row.decision if row.decision is not None else int(row.probability >= threshold)
    return {row.case_id: CachedPrediction(row.case_id, labels[row.case_id], decided(row),
                                          [1.0 - row.probability, row.probability]) for row in rows}


def _digest(table: Path, maps: dict[str, Path]) -> str:
    """SHA-256 over the table and every map file: the advice set's identity (its 'weights')."""
    digest = hashlib.sha256(table.read_bytes())
    for case_id in sorted(maps):
        digest.update(case_id.encode() + b"\0" + maps[case_id].read_bytes())
    return digest.hexdigest()


def _card(request: AdviceImport, rows: list[AdviceRow], maps: dict[str, VendorMap],
          predictions: dict[str, CachedPrediction], digest: str) -> dict[str, Any]:
    from xai_lab.version import __version__

    dataset = request.dataset
    resized = sorted({f"{m.resized_from[1]} x {m.resized_from[0]}" for m in maps.values() if m.resized_from})
    decisions = sum(row.decision is not None for row in rows)
    return {
        "name": request.name, "card_version": CARD_VERSION, "created_at": datetime.now(UTC).isoformat(),
        "dataset": {"name": dataset.name, "content_sha256": dataset.card.content_sha256,
                    "class_names": list(dataset.class_names), "channels": dataset.card.channels,
                    "image_size": list(dataset.card.image_size), "license": dataset.card.license},
        "architecture": {"type": ADVICE_SET, "source": str(request.table), "table_sha256": _sha256(request.table),
                         "rows": len(rows), "maps": len(maps), "maps_folder": str(request.maps or ""),
                         "maps_resized": (f"{sum(m.resized_from is not None for m in maps.values())} map(s) resized "
                                          f"from {', '.join(resized)} to the image's {dataset.card.image_size[1]} x "
                                          f"{dataset.card.image_size[0]} (bilinear, antialiased)") if resized
                         else "no map resized", "decisions": "the vendor's own" if decisions == len(rows) else
                         f"P(finding) >= {request.threshold} where the table gives none ({len(rows) - decisions} rows)",
                         "randomisation_check": NO_RANDOMISATION_CHECK},
        "preprocessing": {"input_size": int(dataset.card.image_size[0]), "mean": [], "std": [],
                          "resize": "none: the vendor's outputs are given per case", "input": "vendor outputs"},
        "decision": {"rule": "vendor", "threshold": request.threshold,
                     "applies_to": "P(finding), where the table gives no decision"},
        "metrics": _metrics(predictions, dataset),
        "calibration": {"probabilities": "the vendor's own, not recalibrated"},
        "training": {"provenance": "not trained by xai-lab: a vendor's outputs imported with 'xai-lab advice import'"},
        "warnings": [NO_RANDOMISATION_CHECK],
        "versions": {"xai_lab": __version__}, "intended_use": NOT_FOR_CLINICAL_USE, "not_for_clinical_use": True,
        "weights_sha256": digest, "explanations": {"default_method": VENDOR_MAP} if maps else None,
    }


def _metrics(predictions: dict[str, CachedPrediction], dataset: ImageDataset) -> dict[str, dict[str, Any]]:
    """Per split, on the cases the table covers (at least one of each class): what the quality gate reads."""
    metrics = {}
    for name, split in dataset.splits.items():
        covered = [predictions[case_id] for case_id in split.case_ids if case_id in predictions]
        labels = np.array([p.label for p in covered])
        if len(set(labels.tolist())) < 2:
            continue
        probabilities = np.array([p.probabilities for p in covered])
        decided = np.array([p.predicted for p in covered])
        metrics[name] = {**classification_metrics(probabilities, decided, labels), "covered": len(covered),
                         "of": len(split)}
    return metrics


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(folder: Path, card: dict[str, Any], table: Path) -> None:
    """The card and the table, atomically."""
    def fill(staging: Path) -> None:
        shutil.copyfile(table, staging / ("advice.parquet" if table.suffix.lower() == ".parquet" else "advice.csv"))
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2, default=_plain) + "\n")
    write_model_folder(folder, fill)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def describe_advice_set(card: ModelCard, folder: Path) -> list[str]:
    """What `xai-lab advice import` prints: where it is, what it holds, how it did, what it cannot show."""
    architecture = card.architecture
    lines = [f"advice set '{card.name}' in {folder} (not a model: a vendor's outputs, not run by xai-lab)",
             f"  source: {architecture['source']} (sha256 {architecture['table_sha256'][:16]}...), "
             f"{architecture['rows']} rows, {architecture['maps']} maps; {architecture['maps_resized']}",
             f"  decisions: {architecture['decisions']}"]
    for split, metrics in card.metrics.items():
        ci = metrics.get("auroc_ci") or [float("nan")] * 2
        lines.append(f"  {split} ({metrics['covered']} of {metrics['of']} cases): AUROC {metrics['auroc']:.3f} "
                     f"[{ci[0]:.3f}, {ci[1]:.3f}], accuracy {metrics['accuracy']:.3f}")
    lines.append(f"  {architecture['randomisation_check']}")
    return lines
