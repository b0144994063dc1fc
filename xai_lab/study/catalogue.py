"""Which studies a server offers, read from the one place a registered study lives: its database row.

`xai-lab serve` registers each design file (`xai_lab.study.serve_setup`) and passes only the study ids
to the app process in ``XAI_LAB_STUDIES`` (comma-separated). The app opens each study from the
``studies`` table (`open_catalogue`), so the pages show exactly what was registered, with no file read
twice. This module is on every served page's import path, so it imports no model code: reading a
database row must not load PyTorch or Captum (tests/test_architecture.py guards it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.store.schema import studies
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign
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


def open_catalogue(engine: Engine, study_ids: tuple[str, ...] | None = None) -> dict[str, ServedStudy]:
    """The served studies as registered in the database (`XAI_LAB_STUDIES` unless ids are given)."""
    catalogue: dict[str, ServedStudy] = {}
    for study_id in served_study_ids() if study_ids is None else study_ids:
        with engine.connect() as connection:
            row = connection.execute(select(studies.c.design, studies.c.case_set)
                                     .where(studies.c.study_id == study_id)).first()
        if row is None:
            raise ConfigError(f"study {study_id!r} is not registered in the database "
                              f"{engine.url.render_as_string()}; serve it with 'xai-lab serve --design FILE'")
        design, case_set = StudyDesign.from_json(row.design), CaseSet.from_json(row.case_set)
        catalogue[study_id] = ServedStudy(design, case_set, StudyService(engine, design, case_set))
    return catalogue
