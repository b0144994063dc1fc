"""Database operations the study service composes inside its transactions.

Each function takes an open `Connection` inside a transaction (the caller's ``engine.begin()``),
so a submit - event, derived rows, cursor - commits or rolls back as one.
Locks: ``with_for_update`` takes row locks on PostgreSQL; SQLite ignores it, and relies on
the ``BEGIN IMMEDIATE`` every transaction starts with (xai_lab.store.database).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from xai_lab.store.schema import allocation_slots, events, participants, rating_load, strata


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def insert_ignoring_duplicates(connection: Connection, table, values: dict[str, Any]) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())


def append_event(connection: Connection, study_id: str, participant_id: str, kind: str, payload: dict[str, Any],
                 step_key: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
    row = {"study_id": study_id, "participant_id": participant_id, "kind": kind, "step_key": step_key,
           "idempotency_key": idempotency_key, "payload": payload, "created_at": now_iso()}
    result = connection.execute(events.insert().values(**row))
    return {**row, "event_id": result.inserted_primary_key[0]}


def has_event(connection: Connection, participant_id: str, idempotency_key: str) -> bool:
    query = select(events.c.event_id).where(events.c.participant_id == participant_id,
                                            events.c.idempotency_key == idempotency_key)
    return connection.execute(query).first() is not None


def count_step_events(connection: Connection, participant_id: str, step_key: str, kind: str) -> int:
    """Events of one kind a participant has on one step (served by the participant index)."""
    return connection.execute(select(func.count()).select_from(events).where(
        events.c.participant_id == participant_id, events.c.step_key == step_key, events.c.kind == kind)).scalar_one()


def lock_participant(connection: Connection, token_sha256: str):
    query = select(participants).where(participants.c.token_sha256 == token_sha256).with_for_update()
    return connection.execute(query).mappings().first()


def allocate(connection: Connection, study_id: str, stratum: str, participant_id: str,
             next_block: Callable[[int], list[str]]) -> tuple[str, int]:
    """Give the participant the stratum's next slot: a released one first, else the next in sequence.

    The stratum row is locked for the whole transaction, so concurrent enrolments queue here
    and no two participants can take the same slot (the slot's participant column is unique too).
    """
    insert_ignoring_duplicates(connection, strata, {"study_id": study_id, "stratum": stratum, "next_slot": 0})
    locked = connection.execute(select(strata.c.next_slot).where(strata.c.study_id == study_id,
                                                                 strata.c.stratum == stratum).with_for_update())
    next_slot = locked.scalar_one()
    in_stratum = (allocation_slots.c.study_id == study_id) & (allocation_slots.c.stratum == stratum)
    released = connection.execute(select(func.min(allocation_slots.c.slot)).where(
        in_stratum, allocation_slots.c.participant_id.is_(None), allocation_slots.c.slot < next_slot)).scalar()
    slot = released if released is not None else next_slot
    if released is None:
        _ensure_slot(connection, study_id, stratum, slot, next_block)
        connection.execute(update(strata).where(strata.c.study_id == study_id, strata.c.stratum == stratum)
                           .values(next_slot=slot + 1))
    connection.execute(update(allocation_slots).where(in_stratum, allocation_slots.c.slot == slot)
                       .values(participant_id=participant_id))
    arm = connection.execute(select(allocation_slots.c.arm).where(in_stratum, allocation_slots.c.slot == slot))
    return arm.scalar_one(), slot


def _ensure_slot(connection: Connection, study_id: str, stratum: str, slot: int,
                 next_block: Callable[[int], list[str]]) -> None:
    in_stratum = (allocation_slots.c.study_id == study_id) & (allocation_slots.c.stratum == stratum)
    last = connection.execute(select(func.max(allocation_slots.c.slot), func.max(allocation_slots.c.block))
                              .where(in_stratum)).first()
    last_slot, last_block = (-1, -1) if last[0] is None else (last[0], last[1])
    while last_slot < slot:
        last_block += 1
        members = next_block(last_block)
        connection.execute(allocation_slots.insert(), [
            {"study_id": study_id, "stratum": stratum, "slot": last_slot + 1 + i, "block": last_block,
             "block_size": len(members), "arm": arm, "participant_id": None} for i, arm in enumerate(members)])
        last_slot += len(members)


def release_slot(connection: Connection, participant_id: str) -> None:
    connection.execute(update(allocation_slots).where(allocation_slots.c.participant_id == participant_id)
                       .values(participant_id=None))


def bump_rating_load(connection: Connection, study_id: str, target_ids: list[str]) -> None:
    for target_id in target_ids:
        insert_ignoring_duplicates(connection, rating_load, {"study_id": study_id, "target_id": target_id,
                                                             "assigned": 0})
        connection.execute(update(rating_load).where(rating_load.c.study_id == study_id,
                                                     rating_load.c.target_id == target_id)
                           .values(assigned=rating_load.c.assigned + 1))


def rating_loads(connection: Connection, study_id: str) -> dict[str, int]:
    rows = connection.execute(select(rating_load.c.target_id, rating_load.c.assigned)
                              .where(rating_load.c.study_id == study_id))
    return dict(rows.all())
