"""What `xai-lab serve` does before the server starts: read each design file, check it was prepared
and that its model passes the quality gate (`xai_lab.model.quality`), and register it (design and
case set, `registration.register_study`). Kept apart from `catalogue`, which every page imports; like
it, this module loads no PyTorch or Captum (the gate reads the model card as JSON), so `serve` starts
without them (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.model.card import ModelCard, read_model_card, resolve_model_dir
from xai_lab.model.quality import QualityVerdict, quality_verdict
from xai_lab.paths import model_dir
from xai_lab.store.schema import participants
from xai_lab.study.cases import load_case_set
from xai_lab.study.design import StudyDesign
from xai_lab.study.design_file import load_design
from xai_lab.study.registration import register_study


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


def model_quality(design: StudyDesign, card: ModelCard) -> QualityVerdict:
    """The quality gate's verdict on the design's model (the design's floor, else its dataset's)."""
    return quality_verdict(card, design.data.min_val_auroc, f"{design.source} [data] min_val_auroc")


def gate_fix(design: StudyDesign) -> str:
    return (f"retrain it (xai-lab train --data {design.data.dataset} --out {model_dir(design.data.model)}) or name "
            f"a better model in {design.source} [data]; if the floor does not suit these data, set [data] "
            "min_val_auroc there")


def served_model_quality(design: StudyDesign) -> QualityVerdict | None:
    """The gate's verdict on the model a prepared design serves (reads the card only); None without data."""
    if design.data is None:
        return None
    return model_quality(design, read_model_card(resolve_model_dir(model_dir(design.data.model))))
