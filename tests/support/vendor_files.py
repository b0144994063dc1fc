"""A vendor's files made from a lab model's own outputs: the table (case_id, probability, decision) for the
val and test splits, and the model's maps of a prepared study's shown cases as .npy (exact) and greyscale
.png (rounded to 256 levels). `xai-lab advice import` of these must reproduce the study on the model."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class VendorFiles:
    table: Path
    exact_maps: Path  # .npy
    rounded_maps: Path  # .png
    threshold: float  # the model's operating point, so the screens' threshold is the same
    model_errors: int  # the model's errors on the test split


def vendor_files(model_name: str, dataset_name: str, case_set, folder: Path) -> VendorFiles:
    """From model `model_name` in the current lab; `case_set` is a study prepared on that model."""
    from xai_lab.data.storage import load_dataset
    from xai_lab.explain.cache import ExplanationCache
    from xai_lab.explain.precompute import predict_cases
    from xai_lab.model.storage import load_model
    from xai_lab.paths import explanation_cache_dir

    dataset = load_dataset(dataset_name)
    model, card = load_model(model_name)
    rows = []
    for split in ("val", "test"):
        part = dataset[split]
        rows += predict_cases(model, part.images, part.labels.tolist(), list(part.case_ids))
    test_ids = set(dataset["test"].case_ids)
    table = folder / "outputs.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "probability", "decision"])
        writer.writerows((p.case_id, repr(p.probabilities[1]), dataset.class_names[p.predicted]) for p in rows)
    exact, rounded = folder / "npy", folder / "png"
    exact.mkdir()
    rounded.mkdir()
    cache = ExplanationCache(explanation_cache_dir(model_name), card)
    for case in case_set.cases + case_set.practice:
        attribution = cache.load_explanation(case.case_id, case_set.explanation_request(case)).attribution
        np.save(exact / f"{case.case_id}.npy", attribution)
        scaled = np.round(attribution / attribution.max() * 255).astype(np.uint8)  # Grad-CAM maps are >= 0
        Image.fromarray(scaled, mode="L").save(rounded / f"{case.case_id}.png")
    errors = sum(p.predicted != p.label for p in rows if p.case_id in test_ids)
    return VendorFiles(table, exact, rounded, float(card.decision.threshold), errors)
