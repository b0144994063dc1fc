"""A study in the database: registered once (design and case set), refused when changed after
enrolment, and its derived tables rebuilt from the event log."""

from __future__ import annotations

import secrets

from sqlalchemy import Connection, Engine, delete, select, update

from xai_lab.errors import StudyError
from xai_lab.store import repository as repo
from xai_lab.store.schema import DERIVED, events, participants, studies
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign
from xai_lab.study.events import apply_event


def register_study(engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
    """Record the design and case set in the database (once); refuse a changed design under the same id."""
    fingerprint = design.fingerprint()
    with engine.begin() as connection:
        existing = connection.execute(select(studies.c.design_sha256, studies.c.case_set)
                                      .where(studies.c.study_id == design.id).with_for_update()).first()
        if existing is None:
            connection.execute(studies.insert().values(
                study_id=design.id, title=design.title, design_sha256=fingerprint, design=design.to_json(),
                case_set=case_set.to_json(), allocation_secret=secrets.token_hex(32), created_at=repo.now_iso()))
            return
        if _same_registration(existing, design, case_set):
            return
        _refuse_if_enrolled(connection, design)
        connection.execute(update(studies).where(studies.c.study_id == design.id).values(
            title=design.title, design_sha256=fingerprint, design=design.to_json(), case_set=case_set.to_json()))


def check_registration(engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
    """Raise the `StudyError` that `register_study` would, without writing anything: `prepare`
    calls it before it replaces the prepared case set, so a refused design changes no file."""
    with engine.connect() as connection:
        existing = connection.execute(select(studies.c.design_sha256, studies.c.case_set)
                                      .where(studies.c.study_id == design.id)).first()
        if existing is not None and not _same_registration(existing, design, case_set):
            _refuse_if_enrolled(connection, design)


def _same_registration(existing, design: StudyDesign, case_set: CaseSet) -> bool:
    # Fingerprints, not stored JSON: the JSON of a study registered by an earlier release lacks what
    # later releases add at their defaults (tests/test_upgrade.py).
    return existing.design_sha256 == design.fingerprint() and \
        CaseSet.from_json(existing.case_set).fingerprint() == case_set.fingerprint()


def _refuse_if_enrolled(connection: Connection, design: StudyDesign) -> None:
    enrolled = connection.execute(select(participants.c.participant_id)
                                  .where(participants.c.study_id == design.id).limit(1)).first()
    if enrolled is not None:
        raise StudyError(f"study {design.id!r} already has participants under a different design or case set; "
                         "give the changed design a new id (the recorded data stay with the old one)")


def rebuild_derived(engine: Engine, study_id: str) -> int:
    """Recompute participants and every derived table of a study by replaying its events."""
    with engine.begin() as connection:
        for table in DERIVED:
            connection.execute(delete(table).where(table.c.study_id == study_id))
        connection.execute(delete(participants).where(participants.c.study_id == study_id))
        rows = connection.execute(select(events).where(events.c.study_id == study_id)
                                  .order_by(events.c.event_id)).mappings().all()
        for row in rows:
            apply_event(connection, dict(row))
    return len(rows)
