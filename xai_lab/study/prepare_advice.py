"""A study whose advice is a vendor's (`[cases] advice = "imported:NAME"`): the case set from the advice
set's own predictions and maps (`xai_lab.explain.vendor`), which `xai-lab advice import` wrote into its
explanation cache. Nothing is computed here: the vendor's probability, decision and map of each case are
what participants see, and a case the vendor gave no row (or, where a map is shown, no map) is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from xai_lab.data.records import ImageDataset
from xai_lab.errors import ConfigError, ModelError
from xai_lab.explain.cache import ExplanationCache
from xai_lab.explain.request import VENDOR_MAP, vendor_map_request
from xai_lab.explain.vendor import listed_ids
from xai_lab.model.card import ModelCard, is_advice_set, read_model_card, resolve_model_dir
from xai_lab.model.storage import check_model_fits
from xai_lab.paths import explanation_cache_dir, model_dir
from xai_lab.study.cases import CaseSet, select_cases
from xai_lab.study.design import StudyDesign
from xai_lab.study.factors import OTHER_MODEL_MAP, OWN_MAP, models_needed
from xai_lab.study.serve_setup import model_quality


def prepare_imported_advice(design: StudyDesign, dataset: ImageDataset, say: Callable[[str], None]) -> CaseSet:
    name = design.cases.imported_advice
    card = _advice_card(design, name, dataset)
    _refuse_what_needs_a_model(design, name)
    cache = ExplanationCache(explanation_cache_dir(name), card)
    split = dataset[design.cases.split]
    predictions = {case_id: cache.load_prediction(case_id) for case_id in split.case_ids}
    missing = [case_id for case_id, prediction in predictions.items() if prediction is None]
    if missing:
        raise ConfigError(f"{design.source}: advice set {name!r} has no row for {len(missing)} of the "
                          f"{len(split)} {design.cases.split} cases: {listed_ids(missing)}; add their rows to the "
                          f"vendor's table and import it again ('xai-lab advice import TABLE --data {dataset.name} "
                          f"--name {name} --overwrite')")
    provenance = {"dataset": dataset.name, "dataset_sha256": dataset.card.content_sha256, "model": name,
                  "model_sha256": card.weights_sha256 or ""}
    case_set = select_cases(design, list(predictions.values()), list(dataset.class_names), vendor_map_request(),
                            provenance, threshold=card.decision.threshold, calibration_claim=False)
    _refuse_missing_maps(design, case_set, cache, name)
    say(f"advice and maps: the vendor's, from advice set {name!r} ({len(case_set.cases)} cases)")
    return case_set


def _advice_card(design: StudyDesign, name: str, dataset: ImageDataset) -> ModelCard:
    try:
        folder = resolve_model_dir(model_dir(name))
    except ModelError:
        raise ConfigError(f"{design.source}: [cases] advice names advice set {name!r}, which has not been imported; "
                          f"run 'xai-lab advice import TABLE --data {dataset.name} --name {name}' first") from None
    if not is_advice_set(folder):
        raise ConfigError(f"{design.source}: {name!r} is a model, not a vendor's advice set; use [data] model = "
                          f"\"{name}\" with [cases] advice = \"model\"")
    card = read_model_card(folder)
    if card.dataset.name != dataset.name:
        raise ConfigError(f"{design.source}: advice set {name!r} was imported for dataset {card.dataset.name!r}, not "
                          f"{dataset.name!r}; import the vendor's table with --data {dataset.name}")
    check_model_fits(card, dataset)
    model_quality(design, card).require(
        f"add the vendor's outputs on the validation split of {dataset.name!r} to the table and import it again "
        f"(--overwrite): the gate reads the validation AUROC, measured on those rows; if the floor does not suit "
        f"these data, set [data] min_val_auroc in {design.source}")
    return card


def _refuse_what_needs_a_model(design: StudyDesign, name: str) -> None:
    """Maps of a randomised copy or of another model, and other advising models, need networks to run."""
    if design.explanation.method not in ("default", VENDOR_MAP):
        raise ConfigError(f"{design.source}: explanation.method is {design.explanation.method!r}, but advice set "
                          f"{name!r} explains only with the vendor's maps; leave explanation.method out")
    sources = {f.map_source(level) for f in design.factors if f.sets == "explanation" for level in f.levels
               if f.look(level) is not None}
    if models_needed(design.factors) - {name} or sources - {OWN_MAP}:
        raise ConfigError(f"{design.source}: [factors] ask for other models' advice or maps (or a randomised map), "
                          f"which a vendor's advice set {name!r} cannot give (only models run); use models "
                          f"imported with 'xai-lab model import' for such factors ({OTHER_MODEL_MAP}NAME levels)")


def _refuse_missing_maps(design: StudyDesign, case_set: CaseSet, cache: ExplanationCache, name: str) -> None:
    shows_maps = any(design.explanation.overlay.values()) or any(f.sets == "explanation" for f in design.factors)
    if not shows_maps:
        return
    shown = case_set.cases + case_set.practice
    missing = [case.case_id for case in shown
               if cache.load_explanation(case.case_id, case_set.explanation_request(case)) is None]
    if missing:
        raise ConfigError(f"{design.source}: advice set {name!r} has no map for {len(missing)} case(s) the study "
                          f"shows with a map: {listed_ids(missing)}; add their maps (--maps DIR) and import it again")
