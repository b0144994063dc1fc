"""`prepare_study`: make a design runnable - dataset, model, case set, precomputed overlays.

Builds what the design names if it is missing (the synthetic default, or an import of the
design's `data.build` file), trains the model if there is none, selects the cases from the
model's real predictions (`xai_lab.study.cases`), precomputes the overlays the study will show
into the model's explanation cache, and writes the case set to
``$XAI_LAB_HOME/prepared/<study id>/case_set.json``. Re-running reuses everything that exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from xai_lab.data.records import ImageDataset
from xai_lab.data.storage import load_dataset, resolve_dataset_dir
from xai_lab.data.synth import SynthConfig
from xai_lab.errors import ConfigError, DataError, ModelError
from xai_lab.explain.cache import ExplanationCache
from xai_lab.explain.precompute import precompute, predict_cases
from xai_lab.explain.request import ExplanationRequest
from xai_lab.model.calibration import calibration_claim
from xai_lab.model.card import ModelCard, resolve_model_dir
from xai_lab.model.storage import check_model_fits, load_model
from xai_lab.paths import explanation_cache_dir, model_dir
from xai_lab.private_files import write_private_text
from xai_lab.study.cases import CaseSet, empty_case_set, prepared_path, select_cases
from xai_lab.study.design import StudyDesign
from xai_lab.study.prepare_advice import prepare_imported_advice
from xai_lab.study.prepare_factors import prepare_factor_models
from xai_lab.study.registration import check_registration, register_study
from xai_lab.study.serve_setup import gate_fix, model_quality


def prepare_study(design: StudyDesign, engine: Engine | None = None,
                  say: Callable[[str], None] = print) -> CaseSet:
    """Build what the design needs and write its case set; with `engine`, also register the study.

    The registration check runs before the prepared case set is replaced: a design changed after
    participants enrolled is refused with the file (and so the served study) untouched.
    """
    if design.data is None:
        return _save_and_register(design, empty_case_set(design), engine)
    dataset = _ensure_dataset(design, say)
    if design.cases.imported_advice:
        return _save_and_register(design, prepare_imported_advice(design, dataset, say), engine)
    model, card = _ensure_model(design, dataset, say)
    method = _method(design, card)
    if design.attention.count and design.attention.answer not in dataset.class_names:
        raise ConfigError(f"{design.source}: attention.answer is {design.attention.answer!r}, not a class of dataset "
                          f"{dataset.name!r}; use one of {', '.join(dataset.class_names)}")
    split = dataset[design.cases.split]
    predictions = predict_cases(model, split.images, split.labels.tolist(), list(split.case_ids))
    provenance = {"dataset": dataset.name, "dataset_sha256": dataset.card.content_sha256,
                  "model": design.data.model, "model_sha256": card.weights_sha256 or ""}
    request = ExplanationRequest.create(method, dict(design.explanation.parameters))
    case_set = select_cases(design, predictions, list(dataset.class_names), request, provenance,
                            threshold=card.decision.threshold,
                            calibration_claim=_calibration_claim(card))
    chosen = case_set.cases + case_set.practice
    planted = {case.case_id: case.target for case in chosen if case.advice_source == "planted"}
    summary = precompute(model, dataset, ExplanationCache(explanation_cache_dir(design.data.model), card),
                         [case.case_id for case in chosen], [request], targets=planted)
    say(f"overlays ({method}): {summary.computed} computed, {summary.reused} reused")
    if design.factors:
        case_set = prepare_factor_models(design, dataset, (model, card), case_set, say)
    return _save_and_register(design, case_set, engine)


def _calibration_claim(card: ModelCard) -> bool:
    """The card's verdict on the calibration sentence; cards from before the verdict was kept
    are judged from their test metrics (without an ECE interval: no claim)."""
    recorded = card.calibration.get("claim")
    return bool((recorded or calibration_claim(card.split_metrics("test")))["supported"])


def _save_and_register(design: StudyDesign, case_set: CaseSet, engine: Engine | None) -> CaseSet:
    if engine is not None:
        check_registration(engine, design, case_set)
        _refuse_to_replace_another_databases(design, case_set, engine)
    case_set.save(prepared_path(design.id))
    if engine is not None:
        register_study(engine, design, case_set)
        _note_registration(design.id, case_set, engine)
    return case_set


def _registrations_path(study_id: str) -> Path:
    return prepared_path(study_id).with_name("registered_in.json")


def _database_name(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _registrations(study_id: str) -> dict:
    """Which databases registered the case set now in the prepared file: {"case_set_sha256", "databases"}."""
    try:
        return json.loads(_registrations_path(study_id).read_text())
    except (FileNotFoundError, ValueError):
        return {"case_set_sha256": "", "databases": []}


def _refuse_to_replace_another_databases(design: StudyDesign, case_set: CaseSet, engine: Engine) -> None:
    """The prepared file is what `serve` checks a registration against: a preparation for one database
    never replaces the file another database registered (its `serve` would then refuse it)."""
    known = _registrations(design.id)
    others = [name for name in known["databases"] if name != _database_name(engine)]
    if others and known["case_set_sha256"] != case_set.fingerprint():
        raise ConfigError(f"{prepared_path(design.id)} holds the cases study {design.id!r} registered in {others[0]}, "
                          f"and this preparation for {_database_name(engine)} selected different ones (the data or "
                          "model changed since); give this study a new id, or prepare it for that database again")


def _note_registration(study_id: str, case_set: CaseSet, engine: Engine) -> None:
    known, digest = _registrations(study_id), case_set.fingerprint()
    databases = known["databases"] if known["case_set_sha256"] == digest else []
    names = sorted({*databases, _database_name(engine)})
    write_private_text(_registrations_path(study_id), json.dumps({"case_set_sha256": digest, "databases": names},
                                                                 indent=1) + "\n")


def _ensure_dataset(design: StudyDesign, say: Callable[[str], None]) -> ImageDataset:
    name = design.data.dataset
    try:
        resolve_dataset_dir(name)
    except DataError:
        _build_dataset(design, say)
    return load_dataset(name)


def _build_dataset(design: StudyDesign, say: Callable[[str], None]) -> None:
    name, build = design.data.dataset, design.data.build
    if build == "synthetic":
        from xai_lab.workflows import synthesize_dataset

        say(f"generating the synthetic dataset {name!r}")
        synthesize_dataset(name, SynthConfig())
        return
    source = Path(build)
    if not source.is_absolute():
        source = Path(design.source).parent / source
    if not source.exists():
        raise ConfigError(f"{design.source}: data.build names {build!r}, which does not exist at {source}; "
                          f"import the data with 'xai-lab data import PATH --name {name}' or fix the path")
    from xai_lab.data.importers import import_dataset

    say(f"importing {source} as dataset {name!r}")
    import_dataset(source, name)


def _ensure_model(design: StudyDesign, dataset: ImageDataset, say: Callable[[str], None]):
    folder = model_dir(design.data.model)
    try:
        resolve_model_dir(folder)
    except ModelError:
        from xai_lab.workflows import train_and_save

        say(f"training model {design.data.model!r} on {dataset.name!r}")
        train_and_save(dataset.name, folder, progress=False)
    model, card = load_model(folder)
    check_model_fits(card, dataset)
    model_quality(design, card).require(gate_fix(design))
    return model, card


def _method(design: StudyDesign, card: ModelCard) -> str:
    if design.explanation.method != "default":
        return design.explanation.method
    chosen = (card.explanations or {}).get("default_method")
    if not chosen:
        raise ConfigError(f"{design.source}: explanation.method = \"default\" but model {card.name!r} has no "
                          "evaluated default; run 'xai-lab explain evaluate' on it, or name a method")
    return chosen
