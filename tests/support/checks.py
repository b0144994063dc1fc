"""Checks the tests share: what a test knows that the lab itself never needs."""

from __future__ import annotations

from math import sqrt

from sqlalchemy import Engine, text

from xai_lab.study.design import StudyDesign
from xai_lab.study.planted import PlantedEffects, expected_rating


def integrity_ok(engine: Engine) -> bool:
    """SQLite's own consistency check (PostgreSQL keeps its own; always True there)."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as connection:
        return connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"



def largest_block(design: StudyDesign) -> int:
    """The largest allocation block: how far apart the arms' counts may drift within a stratum."""
    return max(design.allocation.block_sizes)



def observed_competence(effects: PlantedEffects, scale_min: int = 1, scale_max: int = 7,
                        with_targets: bool = True) -> dict[str, float]:
    """Observed-scale means by target arm. Peer records differ among themselves (`target_sd`);
    a vignette is the condition itself (`with_targets=False`)."""
    target_sd = effects.target_sd if with_targets else 0.0
    sd = sqrt(effects.rating_sd ** 2 + effects.rater_sd ** 2 + target_sd ** 2)
    return {arm: expected_rating(mean, sd, scale_min, scale_max) for arm, mean in effects.competence.items()}
