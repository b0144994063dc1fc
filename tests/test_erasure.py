"""Erasure on request (`xai-lab erase`): answers deleted or kept as the design's withdrawal policy
says, an audit event without answer content, counted in the export's flow and the report, once."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import run_cli, use_lab, write_study
from sqlalchemy import func, select

from xai_lab.store.schema import events, participants, questionnaire_answers, ratings, trials
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig


@pytest.fixture
def home(study_home, monkeypatch):
    home = use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_DATABASE_URL", f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    return home


def service(home, study_id: str = "t", **study) -> StudyService:
    path = write_study(home, study_id=study_id, **study) if study else home / "t.toml"
    if study:
        assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    return StudyService.open(design, load_case_set(design))


def through_trials(service: StudyService) -> str:
    """A participant who answered every main trial and waits at the first rating; their id."""
    token = service.enrol()
    reader = SimulatedClinician(SimulationConfig(participants=1), 0, service)
    step = service.resume(token)
    while step.kind != "rating":
        step = service.submit(token, step.key, reader.answer(step), uuid.uuid4().hex)
    return step.participant_id


def rows_of(service: StudyService, participant_id: str) -> dict[str, int]:
    with service.engine.connect() as connection:
        return {table.name: connection.execute(select(func.count()).select_from(table).where(
            (table.c.rater_id if table is ratings else table.c.participant_id) == participant_id)).scalar_one()
            for table in (trials, questionnaire_answers, ratings, events)}


def test_erasure_deletes_answers_keeps_an_audit_and_is_counted_once(home, tmp_path):
    study = service(home)
    erased, other = through_trials(study), through_trials(study)
    assert rows_of(study, erased)["trials"] == 6

    result = run_cli("erase", "--study", "t", "--participant", erased, "--reason", "e-mail request of 2026-12-01",
                     "--by", "dr. audit")
    assert result.code == 0, result.err
    assert "deleted" in result.out
    left = rows_of(study, erased)
    assert left["trials"] == left["questionnaire_answers"] == left["ratings"] == 0
    with study.engine.connect() as connection:
        kinds = [row[0] for row in connection.execute(select(events.c.kind).where(events.c.participant_id == erased))]
        audit = connection.execute(select(events.c.payload).where(events.c.kind == "erased")).scalar_one()
        status = connection.execute(select(participants.c.status).where(
            participants.c.participant_id == erased)).scalar_one()
    assert sorted(kinds) == ["enrolled", "erased"] and status == "withdrawn"
    assert audit["by"] == "dr. audit" and audit["reason"] == "e-mail request of 2026-12-01" and audit["deleted"]
    assert set(audit) == {"by", "reason", "deleted", "arm", "stratum", "completed_at",
                          "consent_version"}  # no answer content
    assert rows_of(study, other)["trials"] == 6  # nobody else's answers moved

    again = run_cli("erase", "--study", "t", "--participant", erased, "--reason", "again")
    assert again.code == 2 and "already erased" in again.err and len(again.err.strip().splitlines()) == 1

    # the export's flow counts it, and a rebuild from the event log gives the same ending
    assert run_cli("export", "--study", "t", "--out", str(tmp_path / "export")).code == 0
    flow = json.loads((tmp_path / "export" / "flow.json").read_text())
    assert flow["erased"] == 1 and sum(arm["erased"] for arm in flow["by_arm"].values()) == 1
    # and so does the report's participant flow (two readers cannot estimate much: partial is allowed)
    analysed = run_cli("analyze", str(tmp_path / "export"), "--out", str(tmp_path / "report"), "--allow-partial")
    assert analysed.code == 0, analysed.err
    assert "erased on request 1" in (tmp_path / "report" / "report.html").read_text()
    rebuild_derived(study.engine, "t")
    with study.engine.connect() as connection:
        assert connection.execute(select(participants.c.status).where(
            participants.c.participant_id == erased)).scalar_one() == "withdrawn"
    listed = run_cli("erase", "--study", "t", "--list")
    assert erased in listed.out and "dr. audit" in listed.out
    unknown = run_cli("erase", "--study", "nosuch", "--list")
    assert unknown.code == 2 and "no study 'nosuch'" in unknown.err and len(unknown.err.strip().splitlines()) == 1


def test_erasure_keeps_answers_when_the_withdrawal_policy_says_keep(home):
    study = service(home, study_id="keeper", withdrawal="keep")
    participant = through_trials(study)
    assert run_cli("erase", "--study", "keeper", "--list").out.strip() == "no erasures in study 'keeper'"
    result = run_cli("erase", "--study", "keeper", "--participant", participant, "--reason", "phone call")
    assert result.code == 0 and "kept" in result.out
    assert rows_of(study, participant)["trials"] == 6


def test_erasure_after_a_withdrawal_and_bad_requests(home):
    study = service(home)
    token = study.enrol()
    participant = study.resume(token).participant_id
    study.withdraw(token)
    assert run_cli("erase", "--study", "t", "--participant", participant, "--reason", "letter").code == 0
    for args, words in ((("--participant", "p000000000000", "--reason", "x"), "no participant"),
                        (("--participant", participant, "--reason", "  "), "--reason is empty"),
                        (("--participant", participant), "needs --participant ID and --reason")):
        result = run_cli("erase", "--study", "t", *args)
        assert result.code == 2 and words in result.err and len(result.err.strip().splitlines()) == 1
    unknown = run_cli("erase", "--study", "nope", "--participant", participant, "--reason", "x")
    assert unknown.code == 2 and "no study 'nope'" in unknown.err
