"""The event fold: each event applied to the derived tables, the only code that writes them.

The same function runs live (in the transaction that appends the event) and in a rebuild
(`registration.rebuild_derived` replays a study's events in order), so derived rows are always
what the event log says. Lifecycle events (enrolled, shown, consent, allocated, withdrawn and the
logs made on a trial step) are folded here; an answered step's own rows are written by its kind
(`xai_lab.study.steps`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from xai_lab.store import repository as repo
from xai_lab.store.schema import events, participants, questionnaire_answers, ratings, studies, trials
from xai_lab.study import flow
from xai_lab.study.design import consent_version
from xai_lab.study.steps import STEP_KINDS, kind_of

# Events that end a participation from outside its steps: the participant's own withdrawal, and a
# researcher's erasure on request (`xai_lab.study.erasure`), whose payload adds who and why.
ENDINGS = ("withdrawn", "erased")
# The events a deletion keeps: none holds an answer, and a rebuild needs them to know the participant
# enrolled, ended and (for the audit) was erased.
TOMBSTONES = ("enrolled", *ENDINGS)

# Events a step kind lets participants log on its steps (`StepKind.logs`), e.g. overlay toggles on trials.
LOGGED = frozenset(log for step_kind in STEP_KINDS.values() for log in step_kind.logs)


def apply_event(connection: Connection, event: dict[str, Any]) -> None:
    """Apply one event to the derived tables."""
    kind, payload, participant_id = event["kind"], event["payload"], event["participant_id"]
    where = participants.c.participant_id == participant_id
    if kind == "enrolled":
        connection.execute(participants.insert().values(
            participant_id=participant_id, study_id=event["study_id"], token_sha256=payload["token_sha256"],
            status="in_progress", plan=None, step_index=0, step_key="consent", pilot=payload.get("pilot", False),
            enrolled_via=payload.get("via"), enrolled_at=event["created_at"], attention_failures=0))
    elif kind == "shown":
        connection.execute(update(participants).where(where).values(
            shown_at=payload["at"], shown_ns=payload["ns"], shown_clock=payload["clock"]))
    elif kind == "consent":
        if payload["agree"]:
            version = payload.get("version") or _first_consent_version(connection, event["study_id"])
            connection.execute(update(participants).where(where).values(consent_version=version))
            _advance(connection, participant_id, event)
        else:
            connection.execute(update(participants).where(where).values(status="declined", step_key="declined"))
    elif kind == "reconsent" and payload["agree"]:
        # the step they were on is shown afresh: its response time starts after the new consent
        connection.execute(update(participants).where(where).values(
            consent_version=payload["version"], shown_at=None, shown_ns=None, shown_clock=None))
    elif kind == "allocated":
        connection.execute(update(participants).where(where).values(
            profile=payload["profile"], stratum=payload["stratum"], arm=payload["arm"], plan=payload["plan"]))
        _advance(connection, participant_id, event)
    elif kind == "answered":
        _apply_answer(connection, event)
    elif kind == "rating_targets":
        connection.execute(update(participants).where(where).values(rating_targets=payload["targets"]))
        repo.bump_rating_load(connection, event["study_id"], [t["id"] for t in payload["targets"]])
    elif event.get("step_key") and kind in LOGGED:
        _log_on_step(connection, event)
    elif kind in ENDINGS:
        _withdrawn(connection, event)


def _first_consent_version(connection: Connection, study_id: str) -> str:
    """The version of a consent event recorded before versions were (it has none): the study's text at
    the time, which is the text before its first consent amendment, else the registered text."""
    amended = connection.execute(select(events.c.payload).where(
        events.c.study_id == study_id, events.c.kind == "design_amended").order_by(events.c.event_id)).scalars()
    for payload in amended:
        if payload.get("consent_from"):
            return payload["consent_from"]
    design = connection.execute(select(studies.c.design).where(studies.c.study_id == study_id)).scalar_one()
    return consent_version(design["consent_text"])


def _pending(connection: Connection, participant_id: str) -> dict[str, Any]:
    value = connection.execute(select(participants.c.pending)
                               .where(participants.c.participant_id == participant_id)).scalar()
    return dict(value or {})


def _apply_answer(connection: Connection, event: dict[str, Any]) -> None:
    participant_id = event["participant_id"]
    pending = _pending(connection, participant_id)
    pending.pop("initial", None)  # a first reading waits only until the step after it is answered
    step_kind = kind_of(event["step_key"])
    values = {"pending": pending, **step_kind.apply(connection, event, pending)}
    connection.execute(update(participants).where(participants.c.participant_id == participant_id).values(**values))
    _advance(connection, participant_id, event)


def _log_on_step(connection: Connection, event: dict[str, Any]) -> None:
    """A logged event folds into its step's pending state, as the step's kind says."""
    participant_id = event["participant_id"]
    pending = kind_of(event["step_key"]).fold_log(connection, event, _pending(connection, participant_id))
    connection.execute(update(participants).where(participants.c.participant_id == participant_id)
                       .values(pending=pending))


def _withdrawn(connection: Connection, event: dict[str, Any]) -> None:
    payload, where = event["payload"], participants.c.participant_id == event["participant_id"]
    status = connection.execute(select(participants.c.status).where(where)).scalar()
    values: dict[str, Any] = {}
    if status not in ("withdrawn", "declined"):  # an erasure after a withdrawal (or a decline) keeps its ending
        values = {"status": "withdrawn", "step_key": "withdrawn", "withdrawn_at": event["created_at"],
                  "arm": payload.get("arm"), "stratum": payload.get("stratum")}
    if payload.get("completed_at"):
        values["completed_at"] = payload["completed_at"]
    if payload.get("consent_version"):
        values["consent_version"] = payload["consent_version"]
    if payload.get("deleted"):
        values.update(profile=None, plan=None, pending=None, rating_targets=None)
    if values:
        connection.execute(update(participants).where(where).values(**values))


def _advance(connection: Connection, participant_id: str, event: dict[str, Any]) -> None:
    where = participants.c.participant_id == participant_id
    row = connection.execute(select(participants.c.plan, participants.c.step_index).where(where)).first()
    plan = row.plan or flow.START_PLAN
    index = row.step_index + 1
    key = plan[index]
    values: dict[str, Any] = {"step_index": index, "step_key": key, "shown_at": None, "shown_ns": None,
                              "shown_clock": None}
    if key == "complete":
        values.update(status="completed", completed_at=event["created_at"])
    connection.execute(update(participants).where(where).values(**values))


def delete_participant_data(connection: Connection, participant_id: str) -> None:
    """Withdrawal with deletion: answers, ratings they gave and their events go; the tombstones stay."""
    for table in (trials, questionnaire_answers):
        connection.execute(delete(table).where(table.c.participant_id == participant_id))
    connection.execute(delete(ratings).where(ratings.c.rater_id == participant_id))
    connection.execute(delete(events).where(events.c.participant_id == participant_id,
                                            events.c.kind.not_in(TOMBSTONES)))


def end_participation(connection: Connection, study_id: str, row: Any, delete_data: bool, kind: str = "withdrawn",
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """End a participation (withdrawal, or erasure): the answers deleted or kept, the allocation slot
    released, and the ending event appended and applied. `row` is the participant's locked row.

    completed_at and the consent version travel in the tombstone: with deletion, the events that
    recorded them are gone, and a rebuild must still know them."""
    participant_id = row["participant_id"]
    if delete_data:
        delete_participant_data(connection, participant_id)
    repo.release_slot(connection, participant_id)
    event = repo.append_event(connection, study_id, participant_id, kind,
                              {"deleted": delete_data, "arm": row["arm"], "stratum": row["stratum"],
                               "completed_at": row["completed_at"], "consent_version": row["consent_version"],
                               **(extra or {})})
    apply_event(connection, event)
    return event
