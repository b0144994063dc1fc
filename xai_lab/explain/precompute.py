"""`precompute`: fill an `ExplanationCache` for study cases (decision, confidence, attribution maps)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xai_lab.data.records import ImageDataset
from xai_lab.errors import ExplainError
from xai_lab.explain.attribution import attribute, resolve_method
from xai_lab.explain.cache import CachedExplanation, CachedPrediction, ExplanationCache
from xai_lab.explain.request import ExplanationRequest
from xai_lab.model.network import ImageClassifier


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
               requests: list[ExplanationRequest], progress: Callable[[str], None] | None = None,
               targets: dict[str, int] | None = None) -> PrecomputeSummary:
    """Compute what is missing or damaged; leave valid entries alone.

    requests: the maps wanted for every case (method, parameters, seed; see `ExplanationRequest`).
    targets: case id -> class to explain instead of the model's decision (planted advice).
    """
    targets = targets or {}
    for request in requests:
        resolve_method(request.method)
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
        for request in requests:
            wanted = request.for_target(targets.get(case_id))
            if cache.load_explanation(case_id, wanted) is not None:
                summary.reused += 1
                continue
            cache.save_explanation(_explain(model, case_id, image, prediction, wanted), wanted)
            summary.computed += 1
    return summary


def predict_cases(model: ImageClassifier, images: torch.Tensor, labels: list[int],
                  case_ids: list[str]) -> list[CachedPrediction]:
    """The model's calibrated decision on each case, in batches (what the cache stores per case)."""
    probabilities = model.predict_proba(images)
    decided = model.decide(probabilities).tolist()
    return [CachedPrediction(case_id, int(label), int(choice), [float(p) for p in row])
            for case_id, label, choice, row in zip(case_ids, labels, decided, probabilities.tolist(), strict=True)]


def _explain(model: ImageClassifier, case_id: str, image: torch.Tensor, prediction: CachedPrediction,
             request: ExplanationRequest) -> CachedExplanation:
    target = prediction.predicted if request.target is None else request.target
    attribution = attribute(model, image, target, request.method, seed=request.seed, **request.parameters)[0]
    return CachedExplanation(case_id, request.method, target, attribution.numpy().astype(np.float32),
                             request.settings())
