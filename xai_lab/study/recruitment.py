"""Recruitment panels (Prolific, MTurk, SONA or a custom one): who arrives with which panel id.

A panel sends participants to the study link with its own URL parameters (Prolific: ``PROLIFIC_PID``,
``STUDY_ID``, ``SESSION_ID``) and expects them back at a completion URL with a code. Here:

- `panel_arrival` reads the parameters the design's `[recruitment]` names from the page's URL;
- one panel id is one participant: the participation token is derived from the id and the study's
  secret (HMAC), so a second visit, in any browser, resumes the same participant and never enrols
  anew, with no token stored anywhere;
- the ids live in `panel_entries`, apart from every answer: not in the event log, not in any data
  export, only in the payment file (`payment_rows`), which names no participant id, so the
  pseudonymous data cannot be joined to the panel's people through it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from xai_lab.store.repository import now_iso
from xai_lab.store.schema import panel_entries, participants, studies
from xai_lab.study.design import StudyDesign

MAX_VALUE_CHARS = 128


@dataclass(frozen=True)
class PanelArrival:
    panel_id: str
    parameters: dict[str, str]  # every captured parameter, the id included


def panel_arrival(design: StudyDesign, query: Mapping[str, str]) -> PanelArrival | None:
    """The panel parameters of a study link, when the design recruits through a panel and the link
    carries a usable participant id; None otherwise (then the link is an ordinary one)."""
    spec = design.recruitment
    if spec.id_parameter is None:
        return None
    values = {name: query.get(name) for name in spec.parameters}
    panel_id = values[spec.id_parameter]
    if not _usable(panel_id):
        return None
    return PanelArrival(panel_id, {name: value for name, value in values.items() if _usable(value)})


def _usable(value: str | None) -> bool:
    # Panels' ids are short printable strings; an unfilled placeholder ({{%PROLIFIC_PID%}}) is refused too.
    return bool(value) and len(value) <= MAX_VALUE_CHARS and value.isprintable() and "{" not in value \
        and "%" not in value


def panel_token(connection: Connection, study_id: str, panel_id: str) -> str:
    """The participation token of a panel id: HMAC of the id under the study's secret allocation key."""
    secret = connection.execute(select(studies.c.allocation_secret).where(studies.c.study_id == study_id)).scalar_one()
    digest = hmac.new(bytes.fromhex(secret), f"panel|{study_id}|{panel_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def seen_again(connection: Connection, study_id: str, panel_id: str) -> bool:
    """Whether this panel id has a participant already; if so, count the visit."""
    where = (panel_entries.c.study_id == study_id) & (panel_entries.c.panel_id == panel_id)
    found = connection.execute(select(panel_entries.c.visits).where(where).with_for_update()).scalar()
    if found is None:
        return False
    connection.execute(update(panel_entries).where(where).values(visits=found + 1, last_seen_at=now_iso()))
    return True


def record_entry(connection: Connection, study_id: str, participant_id: str, panel: str,
                 arrival: PanelArrival) -> None:
    now = now_iso()
    connection.execute(panel_entries.insert().values(
        participant_id=participant_id, study_id=study_id, panel=panel, panel_id=arrival.panel_id,
        parameters=arrival.parameters, entered_at=now, visits=1, last_seen_at=now))


def has_panel_entry(connection: Connection, participant_id: str) -> bool:
    return connection.execute(select(panel_entries.c.participant_id)
                              .where(panel_entries.c.participant_id == participant_id)).first() is not None


def forget_panel_id(connection: Connection, participant_id: str) -> None:
    """Erasure with deletion: the panel id goes too (a later visit with it is a new participant)."""
    connection.execute(delete(panel_entries).where(panel_entries.c.participant_id == participant_id))


def payment_rows(connection: Connection, design: StudyDesign) -> list[dict[str, Any]]:
    """One row per panel participant for paying them: the captured parameters, how the participation
    ended and when, and the completion code they were given; no participant id, no answers."""
    query = (select(panel_entries.c.panel, panel_entries.c.parameters, panel_entries.c.entered_at,
                    panel_entries.c.visits, participants.c.status, participants.c.completed_at,
                    participants.c.withdrawn_at)
             .join(participants, participants.c.participant_id == panel_entries.c.participant_id)
             .where(panel_entries.c.study_id == design.id).order_by(panel_entries.c.panel_id))
    rows = []
    for row in connection.execute(query).mappings():
        status = "declined" if row["status"] == "declined" else row["status"]
        rows.append({"panel": row["panel"], **{name: row["parameters"].get(name, "")
                                               for name in design.recruitment.parameters},
                     "status": status, "entered_at": row["entered_at"], "completed_at": row["completed_at"] or "",
                     "withdrawn_at": row["withdrawn_at"] or "", "visits": row["visits"],
                     "completion_code": design.recruitment.completion_code if status == "completed" else ""})
    return rows
