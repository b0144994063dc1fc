"""Which studies a server offers: the prepared designs named by ``xai-lab serve --study FILE``.

`xai-lab serve` passes the design files to the app process in ``XAI_LAB_STUDIES`` (paths
joined with the OS path separator); `open_catalogue` loads each design with its prepared case
set and opens one `StudyService` per study on the shared database engine. A design that was
not prepared is refused with the command that prepares it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from xai_lab.errors import ConfigError
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign, load_design
from xai_lab.study.prepare import load_case_set
from xai_lab.study.service import StudyService

STUDIES_ENV = "XAI_LAB_STUDIES"


@dataclass(frozen=True)
class ServedStudy:
    design: StudyDesign
    case_set: CaseSet
    service: StudyService


def served_design_files() -> list[Path]:
    raw = os.environ.get(STUDIES_ENV, "")
    return [Path(part) for part in raw.split(os.pathsep) if part.strip()]


def open_catalogue(engine: Engine, files: list[Path] | None = None) -> dict[str, ServedStudy]:
    catalogue: dict[str, ServedStudy] = {}
    for path in served_design_files() if files is None else files:
        design = load_design(path)
        if design.id in catalogue:
            raise ConfigError(f"two served designs share the id {design.id!r} ({catalogue[design.id].design.source} "
                              f"and {path}); give each study its own id")
        case_set = load_case_set(design)  # a ConfigError naming 'xai-lab study prepare' when unprepared
        catalogue[design.id] = ServedStudy(design, case_set, StudyService.open(design, case_set, engine=engine))
    return catalogue
