"""Erasure on request (GDPR art. 17): a researcher ends a participant's participation for them.

A participant can withdraw on the study page; one who writes to the study team instead is erased
here, by `xai-lab erase` or the researcher page. What happens to their answers is what the consent
text promised for withdrawal (the design's `withdrawal`: ``delete`` or ``keep``), and an audit event
records when, by whom and why, with no answer content. A participant is erased once: a second
request for the same id is refused with the date of the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from xai_lab.errors import ConfigError, StudyError
from xai_lab.store.schema import events, participants, studies
from xai_lab.study.design import StudyDesign
from xai_lab.study.events import end_participation
from xai_lab.study.recruitment import forget_panel_id

MAX_REASON_CHARS = 500


class AlreadyErased(StudyError):
    """The participant was erased before: nothing changed."""


@dataclass(frozen=True)
class Erasure:
    study_id: str
    participant_id: str
    deleted: bool  # the answers were deleted (policy `delete`), else kept (policy `keep`)
    by: str
    reason: str
    at: str


def erase_participant(engine: Engine, study_id: str, participant_id: str, reason: str, by: str) -> Erasure:
    """End the participation and delete or keep the answers as the design's withdrawal policy says."""
    reason, by = _checked_text(reason, "--reason"), _checked_text(by, "--by")
    with engine.begin() as connection:
        stored = _registered_design(connection, study_id)
        row = connection.execute(select(participants).where(participants.c.participant_id == participant_id,
                                                            participants.c.study_id == study_id)
                                 .with_for_update()).mappings().first()
        if row is None:
            raise ConfigError(f"no participant {participant_id!r} in study {study_id!r}; the id (p and 12 characters) "
                              "is on the participant's last page and in the export's participants table")
        earlier = connection.execute(select(events.c.created_at).where(events.c.participant_id == participant_id,
                                                                       events.c.kind == "erased")).scalar()
        if earlier is not None:
            raise AlreadyErased(f"participant {participant_id} was already erased at {earlier}; nothing changed")
        deleted = StudyDesign.from_json(stored).withdrawal == "delete"
        event = end_participation(connection, study_id, row, deleted, kind="erased",
                                  extra={"by": by, "reason": reason})
        if deleted:
            forget_panel_id(connection, participant_id)
    return Erasure(study_id, participant_id, deleted, by, reason, event["created_at"])


def erasures(engine: Engine, study_id: str) -> list[Erasure]:
    """The audit trail: every erasure of the study, oldest first."""
    with engine.connect() as connection:
        _registered_design(connection, study_id)
        rows = connection.execute(select(events.c.participant_id, events.c.payload, events.c.created_at)
                                  .where(events.c.study_id == study_id, events.c.kind == "erased")
                                  .order_by(events.c.event_id)).all()
    return [Erasure(study_id, pid, bool(p.get("deleted")), p.get("by", ""), p.get("reason", ""), at)
            for pid, p, at in rows]


def _registered_design(connection: Connection, study_id: str) -> dict:
    stored = connection.execute(select(studies.c.design).where(studies.c.study_id == study_id)).scalar()
    if stored is None:
        raise ConfigError(f"no study {study_id!r} in the database; check --study (the id in the design file)")
    return stored


def _checked_text(text: str, option: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ConfigError(f"{option} is empty; say it in a few words (e.g. --reason \"e-mail request 2026-12-01\")")
    if len(text) > MAX_REASON_CHARS or any(ord(ch) < 32 for ch in text):
        raise ConfigError(f"{option} must be one line of at most {MAX_REASON_CHARS} characters")
    return text
