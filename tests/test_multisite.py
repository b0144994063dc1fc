"""Two app servers, one PostgreSQL database: participants enrol through both at once.

The multi-site deployment of docs/deploy.md in miniature: two `xai-lab serve` processes (as
behind a reverse proxy) share one PostgreSQL database. Participants arrive through both
servers concurrently and are allocated through the app's own pages (Streamlit's websocket
protocol, `ProtocolClient`); the allocation must stay balanced per block and nothing may be
duplicated.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli, served_app, use_lab, write_study
from sqlalchemy import func, select
from support.protocol_client import ProtocolClient

from xai_lab.store.database import open_database
from xai_lab.store.schema import allocation_slots, events, participants
from xai_lab.study.access import enrolment_code

pytestmark = [pytest.mark.postgres, pytest.mark.served]

PER_SERVER = 8
PROFILE = {"role": "nurse", "specialty": "radiology", "experience_years": "3-5", "prior_ai_use": "never"}


def enrol_and_allocate(port: int, code: str) -> str:
    """Open the invitation link, consent, fill the profile: the server allocates. Returns the token."""
    with ProtocolClient("127.0.0.1", port, f"study=m&code={code}") as client:
        client.click("agree:consent")
        for name, value in PROFILE.items():
            client.set_value(f"profile:{name}", value)
        client.click("go:profile")
        assert client.keys("go:instructions"), client.screen.text()[:300]
        # the page offers the personal link under "Continue later" (and puts it in the address bar)
        return re.search(r"token=([A-Za-z0-9_-]+)", client.screen.text()).group(1)


@pytest.mark.slow  # two served apps on one PostgreSQL, driven over websockets
def test_two_servers_share_one_postgres_allocation(study_home: Path, postgres_url: str, monkeypatch):
    use_lab(study_home, monkeypatch)
    design = write_study(study_home, study_id="m", arms='["verify", "rely"]', n=3, blocks="[2, 4]")
    assert run_cli("study", "prepare", str(design), "--database", postgres_url).code == 0
    engine = open_database(postgres_url)
    code = enrolment_code(engine, "m")
    tokens: list[str] = []
    errors: list[BaseException] = []
    with served_app(design, study_home, database=postgres_url) as first, \
            served_app(design, study_home, database=postgres_url) as second:
        def arrive(port: int) -> None:
            try:
                tokens.append(enrol_and_allocate(port, code))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=arrive, args=(port,)) for port in [first, second] * PER_SERVER]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    assert len(set(tokens)) == 2 * PER_SERVER

    with engine.connect() as connection:
        people = connection.execute(select(participants.c.participant_id, participants.c.arm, participants.c.stratum)
                                    .where(participants.c.study_id == "m")).all()
        slots = connection.execute(select(allocation_slots.c.slot, allocation_slots.c.block,
                                          allocation_slots.c.block_size, allocation_slots.c.arm,
                                          allocation_slots.c.participant_id)
                                   .where(allocation_slots.c.study_id == "m", allocation_slots.c.participant_id
                                          .is_not(None)).order_by(allocation_slots.c.slot)).all()
        allocated_events = connection.execute(select(events.c.participant_id, func.count())
                                              .where(events.c.study_id == "m", events.c.kind == "allocated")
                                              .group_by(events.c.participant_id)).all()
    assert len(people) == 2 * PER_SERVER and {p.stratum for p in people} == {"role=nurse"}
    # one slot each, taken in order without gaps, and the arm recorded is the slot's arm
    assert [s.slot for s in slots] == list(range(2 * PER_SERVER))
    assert {s.participant_id: s.arm for s in slots} == {p.participant_id: p.arm for p in people}
    assert all(count == 1 for _, count in allocated_events) and len(allocated_events) == 2 * PER_SERVER
    # every completed block holds each arm equally; overall within half the largest block
    blocks: dict[int, Counter] = {}
    for s in slots:
        blocks.setdefault(s.block, Counter())[s.arm] += 1
    for block, counts in blocks.items():
        size = next(s.block_size for s in slots if s.block == block)
        if sum(counts.values()) == size:
            assert counts["verify"] == counts["rely"] == size // 2
    arms = Counter(p.arm for p in people)
    assert abs(arms["verify"] - arms["rely"]) <= 2
