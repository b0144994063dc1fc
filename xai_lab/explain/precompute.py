"""`precompute`: fill an `ExplanationCache` for study cases (decision, confidence, maps, overlays)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xai_lab.data.records import ImageDataset
from xai_lab.errors import ExplainError
from xai_lab.explain.attribution import attribute, resolve_method
from xai_lab.explain.cache import CachedExplanation, CachedPrediction, ExplanationCache
from xai_lab.explain.overlay import render_overlay
from xai_lab.model.network import ImageClassifier

DEFAULT_OVERLAY = {"display_size": 512, "alpha": 0.6, "clip_percentile": 99.0, "mode": "positive",
                   "top_k_percent": None}


def cache_settings(method: str, seed: int = 0, overlay: dict[str, Any] | None = None,
                   target: int | None = None) -> dict[str, Any]:
    """What keys a cached explanation besides model and case: seed, method parameters, overlay look,
    and the explained class when it is not the model's decision (planted advice explains the
    planted label).

    Readers (the study UI) call this with the same arguments as `precompute` to find an entry.
    """
    settings = {"seed": seed, **resolve_method(method).defaults(), "overlay": {**DEFAULT_OVERLAY, **(overlay or {})}}
    if target is not None:
        settings["target"] = int(target)
    return settings


@dataclass
class PrecomputeSummary:
    cases: int
    computed: int  # explanations written (new or replacing damaged entries)
    reused: int  # valid entries found and left alone

    def to_dict(self) -> dict[str, int]:
        return self.__dict__.copy()


def locate_cases(dataset: ImageDataset, case_ids: list[str]) -> list[tuple[str, int]]:
    """(split, index) of each case id, in the order given; unknown ids are refused together."""
    where = {case_id: (name, index) for name, split in dataset.splits.items()
             for index, case_id in enumerate(split.case_ids)}
    missing = [case_id for case_id in case_ids if case_id not in where]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ExplainError(f"{len(missing)} case id(s) are not in dataset '{dataset.name}': {shown}; "
                           f"list its cases with 'xai-lab data show {dataset.name}'")
    return [where[case_id] for case_id in case_ids]


def read_case_file(path: Path) -> list[str]:
    """Case ids from a text file (one per line) or a CSV with a `case_id` column."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ExplainError(f"cannot read the case file {path} ({error}); give a text file with one case id "
                           "per line") from None
    if lines and "," in lines[0]:
        header = [cell.strip() for cell in lines[0].split(",")]
        if "case_id" not in header:
            raise ExplainError(f"the CSV case file {path} has no case_id column; its columns: {', '.join(header)}")
        column = header.index("case_id")
        lines = [line.split(",")[column].strip() for line in lines[1:]]
    if not lines:
        raise ExplainError(f"the case file {path} lists no cases; put one case id per line")
    return list(dict.fromkeys(lines))


def default_cases(dataset: ImageDataset, n: int, seed: int = 0) -> list[str]:
    """`n` test-split case ids in a seeded random order (held-out images only)."""
    test = dataset["test"]
    if n < 1:
        raise ExplainError(f"--n must be at least 1, got {n}")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    return [test.case_ids[i] for i in order.tolist()]


def precompute(model: ImageClassifier, dataset: ImageDataset, cache: ExplanationCache, case_ids: list[str],
               methods: list[str], overlay: dict[str, Any] | None = None, seed: int = 0,
               progress: Callable[[str], None] | None = None,
               targets: dict[str, int] | None = None) -> PrecomputeSummary:
    """Compute what is missing or damaged; leave valid entries alone.

    targets: case id -> class to explain instead of the model's decision (planted advice).
    """
    targets = targets or {}
    for method in methods:
        resolve_method(method)
    cache.claim(dataset.name, dataset.card.content_sha256)
    summary = PrecomputeSummary(cases=len(case_ids), computed=0, reused=0)
    for case_id, (split_name, index) in zip(case_ids, locate_cases(dataset, case_ids), strict=True):
        if progress:
            progress(case_id)
        split = dataset[split_name]
        image = split.images[index:index + 1]
        prediction = cache.load_prediction(case_id)
        if prediction is None:
            prediction = predict_cases(model, image, [int(split.labels[index])], [case_id])[0]
            cache.save_prediction(prediction)
        for method in methods:
            settings = cache_settings(method, seed, overlay, targets.get(case_id))
            if cache.load_explanation(case_id, method, settings) is not None:
                summary.reused += 1
                continue
            cache.save_explanation(_explain(model, case_id, image, prediction, method, settings, seed))
            summary.computed += 1
    return summary


def predict_cases(model: ImageClassifier, images: torch.Tensor, labels: list[int],
                  case_ids: list[str]) -> list[CachedPrediction]:
    """The model's calibrated decision on each case, in batches (what the cache stores per case)."""
    probabilities = model.predict_proba(images)
    decided = model.decide(probabilities).tolist()
    return [CachedPrediction(case_id, int(label), int(choice), [float(p) for p in row])
            for case_id, label, choice, row in zip(case_ids, labels, decided, probabilities.tolist(), strict=True)]


def _explain(model: ImageClassifier, case_id: str, image: torch.Tensor, prediction: CachedPrediction, method: str,
             settings: dict[str, Any], seed: int) -> CachedExplanation:
    target = settings.get("target", prediction.predicted)
    attribution = attribute(model, image, target, method, seed=seed)[0].numpy()
    picture = render_overlay(image[0], attribution, **settings["overlay"])
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return CachedExplanation(case_id, method, target, attribution.astype(np.float32),
                             buffer.getvalue(), settings)
