"""`evaluate_explanations`: every saliency method measured on the same images, with CIs.

Protocol (the same for every method, fixed in code, written into the report):
- images: `n` test-split images drawn at random with `seed`;
- explained class: the model's decision for faithfulness, randomisation and repeatability
  (what a clinician would see explained); the true class for localisation, on the images
  that have a lesion mask;
- faithfulness (deletion/insertion) only on images whose decision the blurred reference
  changes (e.g. "lesion" images whose blurred copy the model calls normal): where the
  reference already shows the explained class (a "normal" decision, blur keeps it normal)
  both curves stay flat whatever the map, and would only dilute the comparison;
- randomisation: cascading re-initialisation (`xai_lab.explain.randomisation`) on the first
  `randomisation_n` of the images; the a-priori pass rule is in that module;
- repeatability: maps of a second model trained with another seed, same images and classes;
- runtime: wall-clock seconds per image of the `attribute` call, batched as configured;
- shortcut indicators: `border_mass`, the share of positive attribution in the outer eighth
  of the image on every side (where radiographs carry side markers and text; a map spread
  evenly would put 44% there), and, on synthetic sets made with a shortcut cue,
  `marker_mass`, the share inside the marker's square on the images that carry it, and
  `marker_pointing`, how often the map's peak falls on (within the pointing tolerance of) it.

Means come with 95% confidence intervals over images: Wilson intervals for the pointing game
(a proportion), Student-t intervals for the other means.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

from xai_lab.data.records import ImageDataset, Split
from xai_lab.errors import ExplainError
from xai_lab.explain.attribution import attribute, resolve_method
from xai_lab.explain.methods import blurred_baseline
from xai_lab.explain.metrics import (
    deletion_insertion,
    pointing_game,
    relevance_mass,
    relevance_rank,
    spearman_similarity,
    ssim_similarity,
)
from xai_lab.explain.randomisation import PASS_BELOW, cascading_randomisation, passes
from xai_lab.model.network import ImageClassifier

METRICS = ("pointing_game", "relevance_mass", "relevance_rank", "deletion_auc", "insertion_auc", "mprt_spearman",
           "mprt_ssim", "repeatability_spearman", "seconds_per_image", "border_mass", "marker_mass", "marker_pointing")
BORDER_FRACTION = 0.125  # outer band where radiographs carry side markers and text
# The trust criteria of Arun et al. (2021) besides randomisation, each ranked across methods.
SELECTION_CRITERIA = ("pointing_game", "relevance_mass", "insertion_minus_deletion", "repeatability_spearman")
SELECTION_RULE = ("among methods that pass the randomisation check, the best mean rank over the measured criteria "
                  "(pointing game, relevance mass, insertion minus deletion AUC, repeatability; each ranked across "
                  "the eligible methods, higher is better), ties to the faster method")


@dataclass(frozen=True)
class Estimate:
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


@dataclass
class MethodEvaluation:
    """One method's results: per-metric estimates, the randomisation curve and pass verdict."""

    method: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    mprt_pass: bool | None = None
    mprt_curve: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Metric -> mean (the JSON contract), plus `<metric>_ci` and the pass verdict."""
        row: dict[str, Any] = {}
        for name in METRICS:
            estimate = self.estimates.get(name)
            row[name] = None if estimate is None else estimate.mean
            row[f"{name}_ci"] = None if estimate is None or estimate.ci_low is None else [estimate.ci_low,
                                                                                         estimate.ci_high]
        row["mprt_pass"] = self.mprt_pass
        return row


@dataclass
class ExplanationReport:
    model_name: str
    dataset: str
    n_images: int
    n_localisation: int
    n_faithfulness: int
    randomisation_n: int
    seed: int
    methods: dict[str, MethodEvaluation]
    repeat_model: str | None
    default_method: str | None
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"methods": {name: result.summary() for name, result in self.methods.items()},
                "n_images": self.n_images, "n_localisation": self.n_localisation,
                "n_faithfulness": self.n_faithfulness,
                "randomisation_n": self.randomisation_n, "model": self.model_name, "dataset": self.dataset,
                "seed": self.seed, "repeat_model": self.repeat_model, "default_method": self.default_method,
                "selection_rule": SELECTION_RULE, "selection_mean_ranks": selection_ranks(self),
                "mprt_pass_rule": f"upper 95% CI of mean Spearman and SSIM after full randomisation both below "
                                  f"{PASS_BELOW}",
                "mprt_curves": {name: result.mprt_curve for name, result in self.methods.items()},
                "notes": self.notes}


@dataclass(frozen=True)
class EvaluationConfig:
    methods: tuple[str, ...]
    n: int = 200
    randomisation_n: int = 50
    seed: int = 0
    batch_size: int | None = None  # None: each method's measured default

    def validate(self) -> None:
        for method in self.methods:
            resolve_method(method)
        if self.n < 2 or self.randomisation_n < 2:
            raise ExplainError(f"--n and the randomisation sample need at least 2 images, got {self.n} and "
                               f"{self.randomisation_n}")


def evaluate_explanations(model: ImageClassifier, dataset: ImageDataset, config: EvaluationConfig, *,
                          model_name: str = "model", repeat_model: ImageClassifier | None = None,
                          repeat_name: str | None = None, progress=None) -> ExplanationReport:
    """Measure each configured method on `config.n` test images of `dataset`."""
    config.validate()
    split = dataset["test"]
    chosen = _sample(split, config.n, config.seed)
    images = split.images[chosen]
    decided = model.decide(model.predict_proba(images))
    masks, labels, localise = _localisation_subset(split, chosen)
    markers = _marker_masks(split, chosen)
    faithful = decided != model.decide(model.predict_proba(blurred_baseline(images)))
    notes = _notes(split, len(chosen), int(localise.sum()), int(faithful.sum()))
    results = {}
    for method in config.methods:
        if progress:
            progress(method)
        results[method] = _evaluate_method(model, method, images, decided, masks, labels, localise, faithful,
                                           markers, config, repeat_model)
    report = ExplanationReport(model_name, dataset.name, len(chosen), int(localise.sum()), int(faithful.sum()),
                               min(config.randomisation_n, len(chosen)), config.seed, results, repeat_name,
                               None, notes)
    report.default_method = choose_default(report)
    return report


def _sample(split: Split, n: int, seed: int) -> torch.Tensor:
    if len(split) == 0:
        raise ExplainError("the dataset's test split is empty; import or generate a dataset with a test split")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return order[:min(n, len(split))].sort().values


def _localisation_subset(split: Split, chosen: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, np.ndarray]:
    labels = split.labels[chosen]
    if split.masks is None:
        return None, labels, np.zeros(len(chosen), dtype=bool)
    masks = split.masks[chosen]
    return masks, labels, masks.flatten(1).any(dim=1).numpy()


def _marker_masks(split: Split, chosen: torch.Tensor) -> torch.Tensor | None:
    """Boxes of the synthetic shortcut marker on the chosen images (all False where absent)."""
    flags = split.metadata.get("marker")
    if flags is None or not np.any(flags[chosen.numpy()] > 0):
        return None
    from xai_lab.data.synth import marker_box

    side = split.images.shape[-1]
    top, left, width = marker_box(side)
    masks = torch.zeros(len(chosen), side, side, dtype=torch.bool)
    masks[:, top:top + width, left:left + width] = True
    return masks & torch.from_numpy(flags[chosen.numpy()] > 0).view(-1, 1, 1)


def _shortcut_indicators(result: MethodEvaluation, maps: torch.Tensor, markers: torch.Tensor | None) -> None:
    side = maps.shape[-1]
    band = max(1, round(BORDER_FRACTION * side))
    border = torch.ones(len(maps), side, side, dtype=torch.bool)
    border[:, band:side - band, band:side - band] = False
    result.estimates["border_mass"] = _mean_ci(relevance_mass(maps, border))
    if markers is not None:
        carrying = markers.flatten(1).any(dim=1)
        result.estimates["marker_mass"] = _mean_ci(relevance_mass(maps[carrying], markers[carrying]))
        result.estimates["marker_pointing"] = _proportion_ci(pointing_game(maps[carrying], markers[carrying]))


def _notes(split: Split, n: int, n_localisation: int, n_faithful: int) -> list[str]:
    notes = [f"{n} test images", f"deletion/insertion on the {n_faithful} images whose decision the reference (the "
             "image blurred with sigma = 5% of its side) changes"]
    if split.masks is None:
        notes.append("no lesion masks in this dataset: localisation metrics are not measured")
    else:
        notes.append(f"localisation on the {n_localisation} images with a lesion mask, explaining the true class")
    return notes


def _evaluate_method(model: ImageClassifier, method: str, images: torch.Tensor, decided: torch.Tensor,
                     masks: torch.Tensor | None, labels: torch.Tensor, localise: np.ndarray, faithful: torch.Tensor,
                     markers: torch.Tensor | None, config: EvaluationConfig,
                     repeat_model: ImageClassifier | None) -> MethodEvaluation:
    result = MethodEvaluation(method)
    started = time.perf_counter()
    maps = attribute(model, images, decided, method, seed=config.seed, batch_size=config.batch_size)
    # one wall-clock figure for the whole batch: a mean without a per-image spread
    result.estimates["seconds_per_image"] = Estimate((time.perf_counter() - started) / len(images), None, None,
                                                     len(images))
    _shortcut_indicators(result, maps, markers)
    if faithful.any():
        deletion, insertion = deletion_insertion(model, images[faithful], maps[faithful], decided[faithful],
                                                 seed=config.seed)
        result.estimates["deletion_auc"] = _mean_ci(deletion)
        result.estimates["insertion_auc"] = _mean_ci(insertion)
    if masks is not None and localise.any():
        _localisation(result, model, method, images, maps, decided, masks, labels, localise, config)
    _randomisation(result, model, method, images, maps, decided, config)
    if repeat_model is not None:
        repeated = attribute(repeat_model, images, decided, method, seed=config.seed, batch_size=config.batch_size)
        result.estimates["repeatability_spearman"] = _mean_ci(spearman_similarity(maps, repeated))
    return result


def _localisation(result: MethodEvaluation, model: ImageClassifier, method: str, images: torch.Tensor,
                  maps: torch.Tensor, decided: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                  localise: np.ndarray, config: EvaluationConfig) -> None:
    """Maps of the true class on masked images; reuse the decision maps where they agree."""
    rows = torch.from_numpy(np.flatnonzero(localise))
    true_maps = maps[rows].clone()
    differs = (decided[rows] != labels[rows]).nonzero().flatten()
    if len(differs):
        true_maps[differs] = attribute(model, images[rows[differs]], labels[rows[differs]], method,
                                       seed=config.seed, batch_size=config.batch_size)
    hits = pointing_game(true_maps, masks[rows])
    result.estimates["pointing_game"] = _proportion_ci(hits)
    result.estimates["relevance_mass"] = _mean_ci(relevance_mass(true_maps, masks[rows]))
    result.estimates["relevance_rank"] = _mean_ci(relevance_rank(true_maps, masks[rows]))


def _randomisation(result: MethodEvaluation, model: ImageClassifier, method: str, images: torch.Tensor,
                   maps: torch.Tensor, decided: torch.Tensor, config: EvaluationConfig) -> None:
    count = min(config.randomisation_n, len(images))
    subset, original, targets = images[:count], maps[:count], decided[:count]
    spearman = ssim = np.full(count, np.nan)
    for block, randomised in cascading_randomisation(model, seed=config.seed):
        random_maps = attribute(randomised, subset, targets, method, seed=config.seed, batch_size=config.batch_size)
        spearman, ssim = spearman_similarity(original, random_maps), ssim_similarity(original, random_maps)
        result.mprt_curve.append({"randomised_down_to": block, "spearman": _nanmean(spearman),
                                  "ssim": _nanmean(ssim)})
    result.estimates["mprt_spearman"] = _mean_ci(spearman)
    result.estimates["mprt_ssim"] = _mean_ci(ssim)
    upper_spearman, upper_ssim = result.estimates["mprt_spearman"].ci_high, result.estimates["mprt_ssim"].ci_high
    if upper_spearman is not None and upper_ssim is not None:
        result.mprt_pass = passes(upper_spearman, upper_ssim)


def selection_ranks(report: ExplanationReport) -> dict[str, float]:
    """Mean rank (1 = best) of each method that passed the randomisation check, per `SELECTION_RULE`.

    A mean rank rather than one metric: a map clinicians see should localise, move the model
    when its pixels move, and not depend on the training seed; no single measure covers that.
    Criteria not measured (no masks, no second model) are left out for every method alike.
    """
    eligible = [result for result in report.methods.values() if result.mprt_pass]
    ranks: dict[str, list[int]] = {result.method: [] for result in eligible}
    for criterion in SELECTION_CRITERIA:
        values = {result.method: _criterion(result, criterion) for result in eligible}
        if all(value is None for value in values.values()):
            continue
        ordered = sorted(values, key=lambda name: -math.inf if values[name] is None else values[name], reverse=True)
        for position, name in enumerate(ordered, start=1):
            ranks[name].append(position)
    return {name: float(np.mean(positions)) if positions else 0.0 for name, positions in ranks.items()}


def choose_default(report: ExplanationReport) -> str | None:
    """The study default by `SELECTION_RULE`; None when no method passed the randomisation check."""
    ranks = selection_ranks(report)
    if not ranks:
        return None
    cost = {name: _criterion(report.methods[name], "seconds_per_image") or math.inf for name in ranks}
    return min(ranks, key=lambda name: (ranks[name], cost[name]))


def _criterion(result: MethodEvaluation, name: str) -> float | None:
    if name == "insertion_minus_deletion":
        insertion, deletion = _criterion(result, "insertion_auc"), _criterion(result, "deletion_auc")
        return None if insertion is None or deletion is None else insertion - deletion
    estimate = result.estimates.get(name)
    return None if estimate is None else estimate.mean


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _mean_ci(values: np.ndarray) -> Estimate:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return Estimate(None, None, None, 0)
    mean = float(finite.mean())
    if len(finite) < 2:
        return Estimate(mean, None, None, 1)
    if finite.std() == 0:  # every image agrees: the t interval would be NaN
        return Estimate(mean, mean, mean, len(finite))
    low, high = stats.t.interval(0.95, len(finite) - 1, loc=mean, scale=stats.sem(finite))
    return Estimate(mean, float(low), float(high), len(finite))


def _proportion_ci(hits: np.ndarray) -> Estimate:
    finite = hits[np.isfinite(hits)]
    if len(finite) == 0:
        return Estimate(None, None, None, 0)
    interval = stats.binomtest(int(finite.sum()), len(finite)).proportion_ci(method="wilson")
    return Estimate(float(finite.mean()), float(interval.low), float(interval.high), len(finite))
