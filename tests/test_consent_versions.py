"""Consent versions: the consent text's hash is its version; an amended text is a new version that
participants already taking part agree to on their next page, answers kept; the export says who agreed
to which. Only the consent text and [analysis] may change once participants have enrolled."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import run_cli, use_lab
from sqlalchemy import func, select

from xai_lab.errors import StudyError
from xai_lab.store.schema import participants, trials
from xai_lab.study.cases import load_case_set
from xai_lab.study.design import consent_version
from xai_lab.study.design_file import load_design
from xai_lab.study.export import table_file
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.service import NotCurrentStep, StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

AMENDED = "Amended after the ethics committee's review: your answers are kept for ten years."


@pytest.fixture
def home(study_home, monkeypatch):
    home = use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_DATABASE_URL", f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    return home


def amended_design(home, edit):
    path = home / f"amended-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(edit((home / "t.toml").read_text()))
    return load_design(path)


def with_consent(text: str):
    def edit(toml: str) -> str:
        start = toml.index("consent = ")
        end = toml.index("\n", start)
        return toml[:start] + f"consent = {json.dumps(text)}" + toml[end:]
    return edit


def walk(service: StudyService, token: str, kind: str):
    reader = SimulatedClinician(SimulationConfig(participants=1), 0, service)
    step = service.resume(token)
    while step.kind != kind:
        step = service.submit(token, step.key, reader.answer(step), uuid.uuid4().hex)
    return step


def test_an_amended_consent_is_agreed_to_on_the_next_page_without_losing_answers(home, tmp_path):
    first = load_design(home / "t.toml")
    service = StudyService.open(first, load_case_set(first))
    staying, leaving, before = service.enrol(), service.enrol(), service.enrol()
    at_trial = walk(service, staying, "trial")
    at_trial = service.submit(staying, at_trial.key, SimulatedClinician(SimulationConfig(participants=1), 0, service)
                              .answer(at_trial), uuid.uuid4().hex)  # one trial phase answered
    walk(service, leaving, "instructions")
    with service.engine.connect() as connection:
        recorded = connection.execute(select(func.count()).select_from(trials)).scalar_one()

    second = amended_design(home, with_consent(AMENDED))
    assert second.consent_version != first.consent_version == consent_version(first.consent_text)
    amended = StudyService.open(second, load_case_set(second))  # registered over the running study: an amendment

    step = amended.resume(staying)
    assert step.kind == "reconsent" and step.content["text"] == AMENDED
    assert step.content["previous"] == first.consent_version
    with pytest.raises(NotCurrentStep):  # the old page, submitted from a tab left open, is refused
        amended.submit(staying, at_trial.key, {"label": "x"}, uuid.uuid4().hex)
    resumed = amended.submit(staying, step.key, {"agree": True}, uuid.uuid4().hex)
    assert resumed.key == at_trial.key  # back where they were, the first phase's answer kept
    assert amended.resume(leaving).kind == "reconsent"
    assert amended.submit(leaving, amended.resume(leaving).key, {"agree": False}, uuid.uuid4().hex).status == \
        "withdrawn"
    assert amended.resume(before).kind == "consent"  # not yet consented: the new text is their first
    amended.submit(before, "consent", {"agree": True}, uuid.uuid4().hex)
    with amended.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(trials)).scalar_one() == recorded

    assert run_cli("export", "--study", "t", "--out", str(tmp_path / "export")).code == 0
    people = {row["participant_id"]: row for row in _csv(table_file(tmp_path / "export", "participants"))}
    ids = {token: amended.resume(token).participant_id for token in (staying, before)}
    v1, v2 = first.consent_version, second.consent_version
    assert people[ids[staying]]["consent_versions"] == f"{v1}>{v2}" and people[ids[staying]]["consent_version"] == v2
    assert people[ids[before]]["consent_versions"] == v2
    texts = json.loads((tmp_path / "export" / "consent_versions.json").read_text())
    assert texts == {v1: first.consent_text, v2: AMENDED}

    with amended.engine.connect() as connection:
        before_rebuild = dict(connection.execute(select(participants.c.participant_id,
                                                        participants.c.consent_version)).all())
    rebuild_derived(amended.engine, "t")
    with amended.engine.connect() as connection:
        assert dict(connection.execute(select(participants.c.participant_id,
                                              participants.c.consent_version)).all()) == before_rebuild


def test_other_changes_of_a_running_study_are_still_refused(home):
    first = load_design(home / "t.toml")
    service = StudyService.open(first, load_case_set(first))
    service.enrol()
    changed = amended_design(home, lambda toml: toml.replace("ai_wrong_share = 0.34", "ai_wrong_share = 0.4"))
    assert changed.cases.ai_wrong_share == 0.4
    with pytest.raises(StudyError, match="Only the consent text and the \\[analysis\\] section may change"):
        StudyService.open(changed, load_case_set(first))


def _csv(path):
    import pandas as pd
    return pd.read_csv(path, dtype=str).fillna("").to_dict("records")
