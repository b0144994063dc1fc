"""A study in the database: registered once (design and case set), refused when changed after
enrolment (except an amendment of its consent text or analysis plan, recorded as a study event), and
its derived tables rebuilt from the event log."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from xai_lab.errors import StudyError
from xai_lab.store import repository as repo
from xai_lab.store.schema import DERIVED, events, participants, studies
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign, without_amendable
from xai_lab.study.events import apply_event

STUDY_EVENT = ""  # the participant id of an event about the whole study (an amendment)


def register_study(engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
    """Record the design and case set in the database (once); refuse a changed design under the same id."""
    fingerprint = design.fingerprint()
    with engine.begin() as connection:
        existing = connection.execute(select(studies.c.design_sha256, studies.c.design, studies.c.case_set)
                                      .where(studies.c.study_id == design.id).with_for_update()).first()
        if existing is None:
            connection.execute(studies.insert().values(
                study_id=design.id, title=design.title, design_sha256=fingerprint, design=design.to_json(),
                case_set=case_set.to_json(), allocation_secret=secrets.token_hex(32), created_at=repo.now_iso()))
            return
        if _same_registration(existing, design, case_set):
            return
        amendment = _amendment(existing, design, case_set)
        if amendment is None:
            _refuse_if_enrolled(connection, design)
        elif _enrolled(connection, design):
            repo.append_event(connection, design.id, STUDY_EVENT, "design_amended", amendment)
        connection.execute(update(studies).where(studies.c.study_id == design.id).values(
            title=design.title, design_sha256=fingerprint, design=design.to_json(), case_set=case_set.to_json()))


def check_registration(engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
    """Raise the `StudyError` that `register_study` would, without writing anything: `prepare`
    calls it before it replaces the prepared case set, so a refused design changes no file."""
    with engine.connect() as connection:
        existing = connection.execute(select(studies.c.design_sha256, studies.c.design, studies.c.case_set)
                                      .where(studies.c.study_id == design.id)).first()
        if existing is not None and not _same_registration(existing, design, case_set) and \
                _amendment(existing, design, case_set) is None:
            _refuse_if_enrolled(connection, design)


def _same_registration(existing, design: StudyDesign, case_set: CaseSet) -> bool:
    # Fingerprints, not stored JSON: the JSON of a study registered by an earlier release lacks what
    # later releases add at their defaults (tests/test_upgrade.py).
    return existing.design_sha256 == design.fingerprint() and \
        CaseSet.from_json(existing.case_set).fingerprint() == case_set.fingerprint()


def _amendment(existing, design: StudyDesign, case_set: CaseSet) -> dict[str, Any] | None:
    """What changed, when only what may change after enrolment changed (`AMENDABLE`: the consent text,
    the analysis plan); else None. The old consent text travels along: the export keeps every version."""
    stored = StudyDesign.from_json(existing.design)
    if CaseSet.from_json(existing.case_set).fingerprint() != case_set.fingerprint() or \
            without_amendable(stored).fingerprint() != without_amendable(design).fingerprint():
        return None
    change: dict[str, Any] = {"design_from": existing.design_sha256, "design_to": design.fingerprint(),
                              "changed": []}
    if stored.consent_text != design.consent_text:
        change["changed"].append("consent")
        change.update(consent_from=stored.consent_version, consent_to=design.consent_version,
                      consent_text_from=stored.consent_text)
    if stored.recruitment != design.recruitment:
        change["changed"].append("recruitment")
    if stored.analysis != design.analysis:
        change["changed"].append("analysis")
        change.update(analysis_from=asdict(stored.analysis), analysis_to=asdict(design.analysis))
    return change


def _enrolled(connection: Connection, design: StudyDesign) -> bool:
    return connection.execute(select(participants.c.participant_id)
                              .where(participants.c.study_id == design.id).limit(1)).first() is not None


def _refuse_if_enrolled(connection: Connection, design: StudyDesign) -> None:
    if _enrolled(connection, design):
        raise StudyError(f"study {design.id!r} already has participants under a different design or case set; "
                         "give the changed design a new id (the recorded data stay with the old one). Only the "
                         "consent text and the [analysis] section may change once participants have enrolled")


def amendments(connection: Connection, study_id: str) -> list[dict[str, Any]]:
    """The study's recorded amendments, oldest first, each with the time it was registered (`at`)."""
    rows = connection.execute(select(events.c.payload, events.c.created_at).where(
        events.c.study_id == study_id, events.c.kind == "design_amended").order_by(events.c.event_id)).all()
    return [{**payload, "at": at} for payload, at in rows]


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
