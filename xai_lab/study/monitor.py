"""`monitor_study`: what a researcher watches while a study runs. Read-only; no Streamlit here.

    status = monitor_study(engine, "demo")
    status.by_arm          # enrolled / in progress / completed / withdrawn per arm and stratum
    status.flow            # CONSORT-style counts (the same numbers as the export's flow.json)
    status.flags           # per participant: attention failures, confidence never moved, too fast

Data-quality rules, and why:
- *confidence never moved*: every final confidence of a participant with at least
  `MIN_TRIALS_FOR_FLAGS` trials is the same number - the slider was set once and then left,
  so confidence carries no information for that person.
- *implausibly fast*: the participant's median final answer came in under `FAST_MEDIAN_MS`.
  Reading a radiograph and weighing advice takes seconds; a median under 1.5 s means
  clicking through (the threshold is a conservative guess; the rule and its value are
  reported with every flag so a researcher can argue with it).
Flags are advice for the researcher, never exclusions: the analysis decides what to exclude.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.store.schema import participants, studies, trials
from xai_lab.study.export import consort_flow

MIN_TRIALS_FOR_FLAGS = 3
FAST_MEDIAN_MS = 1500
STATUSES = ("in_progress", "completed", "withdrawn")


@dataclass(frozen=True)
class QualityFlag:
    participant_id: str
    arm: str | None
    flag: str  # attention_failed | confidence_never_moved | implausibly_fast
    detail: str


@dataclass
class StudyStatus:
    study_id: str
    title: str
    flow: dict[str, Any]
    by_arm: list[dict[str, Any]]  # one row per (arm, stratum): enrolled and each status
    trials: int
    median_rt_final_ms: float | None
    median_rt_initial_ms: float | None
    flags: list[QualityFlag] = field(default_factory=list)


def list_study_ids(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(select(studies.c.study_id).order_by(studies.c.study_id))]


def monitor_study(engine: Engine, study_id: str) -> StudyStatus:
    with engine.connect() as connection:
        title = connection.execute(select(studies.c.title).where(studies.c.study_id == study_id)).scalar()
        if title is None:
            raise ConfigError(f"no study {study_id!r} in the database; prepare it with 'xai-lab study prepare FILE'")
        people = connection.execute(select(participants.c.participant_id, participants.c.arm, participants.c.stratum,
                                           participants.c.status, participants.c.attention_failures)
                                    .where(participants.c.study_id == study_id)).mappings().all()
        rows = connection.execute(select(trials.c.participant_id, trials.c.final_confidence, trials.c.rt_final_ms,
                                         trials.c.rt_initial_ms).where(trials.c.study_id == study_id)).all()
        flow = consort_flow(connection, study_id)
    initial = [r.rt_initial_ms for r in rows if r.rt_initial_ms is not None]
    return StudyStatus(study_id, title, flow, _by_arm(people), len(rows),
                       statistics.median([r.rt_final_ms for r in rows]) if rows else None,
                       statistics.median(initial) if initial else None, _flags(people, rows))


def _by_arm(people) -> list[dict[str, Any]]:
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for person in people:
        if person["arm"] is None:
            continue  # not yet allocated (consent or profile pending) or declined: in the flow, not here
        row = table.setdefault((person["arm"], person["stratum"]),
                               {"arm": person["arm"], "stratum": person["stratum"], "enrolled": 0,
                                **dict.fromkeys(STATUSES, 0)})
        row["enrolled"] += 1
        row[person["status"]] = row.get(person["status"], 0) + 1
    return [table[key] for key in sorted(table)]


def _flags(people, rows) -> list[QualityFlag]:
    arms = {p["participant_id"]: p["arm"] for p in people}
    flags = [QualityFlag(p["participant_id"], p["arm"], "attention_failed",
                         f"{p['attention_failures']} attention check(s) answered wrongly")
             for p in people if p["attention_failures"]]
    by_person: dict[str, list] = {}
    for row in rows:
        by_person.setdefault(row.participant_id, []).append(row)
    for participant_id, own in sorted(by_person.items()):
        if len(own) < MIN_TRIALS_FOR_FLAGS:
            continue
        if len({r.final_confidence for r in own}) == 1:
            flags.append(QualityFlag(participant_id, arms.get(participant_id), "confidence_never_moved",
                                     f"final confidence {own[0].final_confidence} on all {len(own)} trials"))
        median = statistics.median(r.rt_final_ms for r in own)
        if median < FAST_MEDIAN_MS:
            flags.append(QualityFlag(participant_id, arms.get(participant_id), "implausibly_fast",
                                     f"median final answer {median:.0f} ms (< {FAST_MEDIAN_MS} ms) over "
                                     f"{len(own)} trials"))
    return flags
