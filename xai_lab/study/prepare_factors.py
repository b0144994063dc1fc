"""What a factor design needs beyond its one model: the advice of every model an `advice_model` factor
names, on the same cases, and every map its explanation levels show (the advising model's own, a fully
parameter-randomised copy's, another model's), precomputed into each model's explanation cache under
the request the case set records (`CaseSet.map_request`), so participants never wait for a map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from xai_lab.data.records import ImageDataset
from xai_lab.errors import ConfigError, ModelError
from xai_lab.explain.cache import ExplanationCache
from xai_lab.explain.precompute import locate_cases, precompute, predict_cases
from xai_lab.explain.randomisation import fully_randomised
from xai_lab.model.card import ModelCard, resolve_model_dir
from xai_lab.model.network import ImageClassifier
from xai_lab.model.storage import check_model_fits, load_model
from xai_lab.paths import explanation_cache_dir, model_dir
from xai_lab.study.cases import CaseSet, StudyCase, model_advice
from xai_lab.study.design import StudyDesign
from xai_lab.study.factors import OWN_MAP, models_needed

Loaded = tuple[ImageClassifier, ModelCard]


def prepare_factor_models(design: StudyDesign, dataset: ImageDataset, study_model: Loaded, case_set: CaseSet,
                          say: Callable[[str], None]) -> CaseSet:
    models = {design.data.model: study_model}
    for name in sorted(models_needed(design.factors) - {design.data.model}):
        models[name] = _load_named(design, name, dataset)
    chosen = case_set.cases + case_set.practice
    others = {name: loaded for name, loaded in models.items() if name != design.data.model}
    if others:
        case_set = replace(case_set, advice_by_model={name: _advice_of(loaded, dataset, chosen) for name, loaded in
                                                      others.items()},
                           other_models={name: _provenance(card) for name, (_, card) in others.items()})
    randomised: dict[str, ImageClassifier] = {}  # one randomised copy per model: a copy per case would dominate
    for advising in _advising_models(design):
        for source in _map_sources(design):
            computed = _precompute_maps(case_set, models, randomised, dataset, advising, source, chosen)
            say(f"maps of {source} for {advising}'s advice: {computed} computed")
    return case_set


def _load_named(design: StudyDesign, name: str, dataset: ImageDataset) -> Loaded:
    try:
        resolve_model_dir(model_dir(name))
    except ModelError:
        raise ConfigError(f"{design.source}: [factors] name model {name!r}, which does not exist under "
                          f"$XAI_LAB_HOME/models; train it ('xai-lab train --data DATASET --out {name}') or fix the "
                          "name") from None
    model, card = load_model(model_dir(name))
    # a second model may come from other data (a biased model, another site's): same classes and channels
    # suffice, and its advice on this study's cases is what participants see (its card says where it came from)
    check_model_fits(card, dataset, external=True)
    return model, card


def _advice_of(loaded: Loaded, dataset: ImageDataset, cases: tuple[StudyCase, ...]) -> dict[str, StudyCase]:
    model, card = loaded
    ids = [case.case_id for case in cases]
    by_split: dict[str, list[tuple[str, int]]] = {}
    for case_id, (split, index) in zip(ids, locate_cases(dataset, ids), strict=True):
        by_split.setdefault(split, []).append((case_id, index))
    advice = {}
    for split, members in by_split.items():  # one batch per split, not one forward pass per case
        indices = [index for _, index in members]
        predictions = predict_cases(model, dataset[split].images[indices],
                                    [int(dataset[split].labels[i]) for i in indices], [c for c, _ in members])
        advice.update({p.case_id: model_advice(p, list(dataset.class_names), card.decision.threshold)
                       for p in predictions})
    return advice


def _provenance(card: ModelCard) -> dict:
    claim = (card.calibration.get("claim") or {}).get("supported")
    return {"sha256": card.weights_sha256 or "", "threshold": card.decision.threshold,
            "calibration_claim": None if claim is None else bool(claim)}


def _advising_models(design: StudyDesign) -> list[str | None]:
    factor = next((f for f in design.factors if f.sets == "advice_model"), None)
    return [None] if factor is None else [factor.model(level) for level in factor.levels]


def _map_sources(design: StudyDesign) -> list[str]:
    factor = next((f for f in design.factors if f.sets == "explanation"), None)
    sources = {OWN_MAP} if factor is None else {factor.map_source(level) for level in factor.levels
                                                if factor.look(level) is not None}
    return sorted(sources | {OWN_MAP})  # the advising model's own first: it caches that model's predictions


def _precompute_maps(case_set: CaseSet, models: dict[str, Loaded], randomised: dict[str, ImageClassifier],
                     dataset: ImageDataset, advising: str | None, source: str, cases: tuple[StudyCase, ...]) -> int:
    computed = 0
    caches: dict[str, ExplanationCache] = {}  # opened once per model, not per case (each opening reads a manifest)
    for case in cases:
        holder, request = case_set.map_request(case, advising, source)
        model, card = models[holder]
        if request.source is not None:
            if holder not in randomised:
                randomised[holder] = fully_randomised(model)
            model = randomised[holder]
        if holder not in caches:
            caches[holder] = ExplanationCache(explanation_cache_dir(holder), card)
        cache = caches[holder]
        target = request.target
        summary = precompute(model, dataset, cache, [case.case_id], [request.for_target(None)],
                             targets={} if target is None else {case.case_id: target})
        computed += summary.computed
    return computed
