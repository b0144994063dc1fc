"""Simulated participants that go through the same `StudyService` API as people do.

Used by tests, benchmarks and the power analysis. Each simulated clinician has a skill (chance
an unaided read is right), a reliance (chance of taking the AI's label when it differs from
their own), a dropout rate (they stop answering at a random step and stay `in_progress`)
and a withdrawal rate. Their choices are a function of (seed, participant number, step), so a
run killed half-way and started again continues each participant exactly where it stopped.

Tokens are appended to ``$XAI_LAB_HOME/simulations/<study>-<database hash>.tokens`` (fsync'd) as soon as
each participant is enrolled; only this simulator writes them anywhere.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from xai_lab.errors import ConfigError
from xai_lab.paths import lab_home
from xai_lab.private_files import open_private
from xai_lab.store.schema import participants
from xai_lab.study.peer import USE_OF_AI
from xai_lab.study.service import Step, StudyService
from xai_lab.study.steps import STEP_KINDS

# Competence ratings by target arm in Yang, Dai et al. 2025 (1-7): the simulator's default truth.
RATING_MEANS = {"control": 5.93, "rely": 3.79, "verify": 4.99}
MAX_CONCURRENCY = 64  # threads, each with a database connection


@dataclass(frozen=True)
class SimulationConfig:
    participants: int
    concurrency: int = 1
    seed: int = 0
    skill: float = 0.75
    reliance: float = 0.6
    dropout: float = 0.1
    withdraw: float = 0.0
    pilot: bool = False
    # Planted effects of conditions (designs with [factors]): the reliance of a trial read at a factor's
    # level, e.g. (("explanation", "contour", 0.4),); a trial matching several takes the last listed.
    reliance_at: tuple[tuple[str, str, float], ...] = ()
    ask_ai: float = 0.7  # on_demand workflow: the chance a reader asks for the AI on a case

    def __post_init__(self) -> None:
        """The ranges every caller gets (CLI, tests, power analysis), each refused in one line."""
        if isinstance(self.participants, bool) or not isinstance(self.participants, int) or self.participants < 1:
            raise ConfigError(f"participants must be a whole number of at least 1 (--participants), "
                              f"got {self.participants!r}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"concurrency must be from 1 to {MAX_CONCURRENCY} (--concurrency), "
                              f"got {self.concurrency}")
        for name in ("skill", "reliance", "dropout", "withdraw", "ask_ai"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability from 0 to 1 (--{name.replace('_', '-')}), "
                                  f"got {value}")
        for factor, level, value in self.reliance_at:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"the reliance at {factor}={level} must be a probability from 0 to 1 "
                                  f"(--reliance-at {factor}={level}:P), got {value}")


@dataclass
class SimulationSummary:
    enrolled: int = 0
    resumed: int = 0
    completed: int = 0
    dropped_out: int = 0
    withdrawn: int = 0
    declined: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def tokens_path(service: StudyService) -> Path:
    """Per study and database, so runs against different databases never mix participants."""
    database = hashlib.sha256(service.engine.url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    return lab_home() / "simulations" / f"{service.design.id}-{database}.tokens"


def simulate(service: StudyService, config: SimulationConfig) -> SimulationSummary:
    """Run participants 0..N-1, resuming any an earlier (interrupted) run already enrolled.

    On a study that already has real participants, simulated ones must be pilots: every simulated
    participant is marked `enrolled_via = simulation` and left out of the analysis, but a pilot flag
    also keeps them out of the researcher's counts and says, in every export, that they are not data.
    """
    _check_levels(service, config)
    real = real_participants(service)
    if real and not config.pilot:
        raise ConfigError(f"study {service.design.id!r} already has {real} real participant(s); simulated ones "
                          "would be enrolled beside them: pass --pilot to mark them as pilots, or simulate "
                          "against another database (--database)")
    known = _read_tokens(tokens_path(service))
    summary = SimulationSummary()
    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        outcomes = list(pool.map(lambda n: _run_one(service, config, n, known.get(n)), range(config.participants)))
    for outcome, resumed in outcomes:
        summary.resumed += resumed
        summary.enrolled += not resumed
        setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary


def _check_levels(service: StudyService, config: SimulationConfig) -> None:
    """A planted effect must name a level the design has: a misspelt one would plant nothing, silently."""
    levels = {(f.name, level) for f in service.design.factors for level in f.levels}
    for factor, level, _ in config.reliance_at:
        if (factor, level) not in levels:
            known = ", ".join(f"{f}={lv}" for f, lv in sorted(levels)) or "none (the design declares no [factors])"
            raise ConfigError(f"--reliance-at names {factor}={level}, which is not a level of study "
                              f"{service.design.id!r}; its levels: {known}")


def real_participants(service: StudyService) -> int:
    """People (not simulations, not pilots) enrolled in the service's study, whatever their status."""
    with service.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(participants).where(
            participants.c.study_id == service.design.id, participants.c.pilot.is_(False),
            or_(participants.c.enrolled_via.is_(None), participants.c.enrolled_via != "simulation"))).scalar_one()


def _run_one(service: StudyService, config: SimulationConfig, number: int, token: str | None) -> tuple[str, bool]:
    resumed = token is not None
    if token is None:
        token = service.enrol(pilot=config.pilot, via="simulation")
        _append_token(tokens_path(service), number, token)
    rng = random.Random(f"{config.seed}:{number}")
    stop_after = rng.randrange(2, 40) if rng.random() < config.dropout else None
    withdraw_after = rng.randrange(2, 40) if rng.random() < config.withdraw else None
    clinician = SimulatedClinician(config, number, service)
    step = service.resume(token)
    while step.status == "in_progress":
        if stop_after is not None and step.done >= stop_after:
            return "dropped_out", resumed
        if withdraw_after is not None and step.done >= withdraw_after:
            service.withdraw(token)
            return "withdrawn", resumed
        if step.content.get("on_demand") and not step.content.get("ai_requested") and clinician.asks_ai(step):
            step = service.request_ai(token, step.key, idempotency_key=str(uuid.uuid4()))
        step = service.submit(token, step.key, clinician.answer(step), idempotency_key=str(uuid.uuid4()))
    return {"completed": "completed", "declined": "declined", "withdrawn": "withdrawn"}[step.status], resumed


class SimulatedClinician:
    """Answers like a reader of the given skill and reliance.

    A simulator may know what participants cannot: the true labels (from the case set) and the
    arm behind a rating target (from the design's vignettes, or the record's use of AI).
    """

    def __init__(self, config: SimulationConfig, number: int, service: StudyService) -> None:
        self.config, self.number = config, number
        self.skill, self.reliance, self.rating_means = config.skill, config.reliance, RATING_MEANS
        case_set = service.case_set
        self.truth = {case.case_id: case.true_label
                      for case in case_set.cases + case_set.practice + case_set.attention}
        self.arm_of_text = {v.text: v.target_arm for v in service.design.peer_rating.vignettes}
        self.arm_of_text.update({phrase: arm for arm, phrase in USE_OF_AI.items()})
        self.attention_answer = service.design.attention.answer

    def reliance_on(self, levels: dict[str, str]) -> float:
        """The chance of taking differing advice on a trial read at these factor levels."""
        matching = [value for factor, level, value in self.config.reliance_at if levels.get(factor) == level]
        return matching[-1] if matching else self.reliance

    def asks_ai(self, step: Step) -> bool:
        return random.Random(f"{self.config.seed}:{self.number}:{step.key}:ask").random() < self.config.ask_ai

    def answer(self, step: Step) -> dict[str, Any]:
        rng = random.Random(f"{self.config.seed}:{self.number}:{step.key}")
        return STEP_KINDS[step.kind].simulated_answer(self, rng, step.content)


def _read_tokens(path: Path) -> dict[int, str]:
    if not path.exists():
        return {}
    tokens = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].isdigit():  # a line cut short by a kill is ignored
            tokens[int(parts[0])] = parts[1]
    return tokens


def _append_token(path: Path, number: int, token: str) -> None:
    with open_private(path, "a") as handle:  # tokens resume participants: owner-only
        handle.write(f"{number}\t{token}\n")
        handle.flush()
        os.fsync(handle.fileno())
