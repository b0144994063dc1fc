"""Which studies a server offers, read from the one place a registered study lives: its database row.

`xai-lab serve --study FILE` reads each design file, checks it was prepared and that its model passes
the quality gate (`xai_lab.model.quality`), registers it (design
and case set, `registration.register_study`) and passes only the study ids to the app process in
``XAI_LAB_STUDIES`` (comma-separated). The app opens each study from the ``studies`` table
(`open_catalogue`), so the pages show exactly what was registered, with no file read twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.store.schema import participants, studies
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign
from xai_lab.study.design_file import load_design
from xai_lab.study.prepare import gate_fix, load_case_set, served_model_quality
from xai_lab.study.registration import register_study
from xai_lab.study.service import StudyService

STUDIES_ENV = "XAI_LAB_STUDIES"


@dataclass(frozen=True)
class ServedStudy:
    design: StudyDesign
    case_set: CaseSet
    service: StudyService


def served_study_ids() -> tuple[str, ...]:
    raw = os.environ.get(STUDIES_ENV, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def register_design_files(engine: Engine, files: list[Path], say: Callable[[str], None] = print) -> list[str]:
    """Read, check and register each prepared design; its study id, in order."""
    sources: dict[str, Path] = {}
    for path in files:
        design = load_design(path)
        if design.id in sources:
            raise ConfigError(f"two served designs share the id {design.id!r} ({sources[design.id]} and {path}); "
                              "give each study its own id")
        case_set = load_case_set(design)  # unprepared: a ConfigError naming 'study prepare'
        _check_model(engine, design, say)
        register_study(engine, design, case_set)
        sources[design.id] = path
    return list(sources)


def _check_model(engine: Engine, design: StudyDesign, say: Callable[[str], None]) -> None:
    """A model below the quality gate is never shown to a study's first participant. A study that already
    has participants (prepared by a release without the gate) is served on, with a warning: refusing it
    would stop a running study, and its model cannot change without a new design id anyway."""
    verdict = served_model_quality(design)
    if verdict is None or verdict.passed:
        return
    with engine.connect() as connection:
        running = connection.execute(select(participants.c.participant_id)
                                     .where(participants.c.study_id == design.id).limit(1)).first() is not None
    if not running:
        verdict.require(gate_fix(design))
    say(f"warning: {verdict.sentence}; study {design.id!r} already has participants, so it is served on - "
        "report the model's quality with its results")


def open_catalogue(engine: Engine, study_ids: tuple[str, ...] | None = None) -> dict[str, ServedStudy]:
    """The served studies as registered in the database (`XAI_LAB_STUDIES` unless ids are given)."""
    catalogue: dict[str, ServedStudy] = {}
    for study_id in served_study_ids() if study_ids is None else study_ids:
        with engine.connect() as connection:
            row = connection.execute(select(studies.c.design, studies.c.case_set)
                                     .where(studies.c.study_id == study_id)).first()
        if row is None:
            raise ConfigError(f"study {study_id!r} is not registered in the database "
                              f"{engine.url.render_as_string()}; serve it with 'xai-lab serve --study FILE'")
        design, case_set = StudyDesign.from_json(row.design), CaseSet.from_json(row.case_set)
        catalogue[study_id] = ServedStudy(design, case_set, StudyService(engine, design, case_set))
    return catalogue
