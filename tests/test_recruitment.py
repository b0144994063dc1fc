"""Recruitment panels: [recruitment] read and checked; one panel id is one participant (a second visit
resumes); panel ids only in the payment file, never in the data export or the event log."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli, use_lab, write_study
from sqlalchemy import func, select
from support.panel_site import PROLIFIC_RECRUITMENT

from xai_lab.errors import ConfigError
from xai_lab.store.schema import events, panel_entries, participants
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.recruitment import panel_arrival
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig


def panel_study(home: Path, study_id: str = "panel", recruitment: str = PROLIFIC_RECRUITMENT) -> Path:
    path = write_study(home, study_id=study_id, arms='["verify", "rely"]', n=3, blocks="[2]")
    path.write_text(path.read_text() + recruitment)
    return path


def link(pid: str, **more: str) -> dict[str, str]:
    return {"study": "panel", "code": "X", "PROLIFIC_PID": pid, "STUDY_ID": "s-1", "SESSION_ID": "sess-9", **more}


def test_the_recruitment_section_is_read_and_its_mistakes_are_one_line_errors(tmp_path):
    design = load_design(panel_study(tmp_path))
    spec = design.recruitment
    assert spec.parameters == ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID") and spec.id_parameter == "PROLIFIC_PID"
    assert spec.completion_link() == "https://app.prolific.com/submissions/complete?cc=C1ABC2DE"
    plain = load_design(write_study(tmp_path, study_id="plain"))
    assert plain.recruitment.id_parameter is None and panel_arrival(plain, link("abc")) is None
    for wrong, words in (("app.prolific.com/submissions", "must be an https:// address"),
                         ("https://prolificcom/x?cc={code}", "has no valid host name"),
                         ("http://app.prolific.com/x", "must be an https:// address")):
        completion = "https://app.prolific.com/submissions/complete?cc={code}"
        path = panel_study(tmp_path, "bad", PROLIFIC_RECRUITMENT.replace(completion, wrong))
        with pytest.raises(ConfigError, match=words) as raised:
            load_design(path)
        assert "recruitment.completion_url" in str(raised.value) and "\n" not in str(raised.value)
    path = panel_study(tmp_path, "bad2", PROLIFIC_RECRUITMENT + 'parameters = ["study"]\n')
    with pytest.raises(ConfigError, match="must not be study, token or code"):
        load_design(path)
    # an unfilled placeholder is not an id: the link is then an ordinary one
    assert panel_arrival(design, link("{{%PROLIFIC_PID%}}")) is None
    assert panel_arrival(design, link("5f1a2b")).parameters == {"PROLIFIC_PID": "5f1a2b", "STUDY_ID": "s-1",
                                                                 "SESSION_ID": "sess-9"}


@pytest.fixture
def service(study_home, monkeypatch) -> StudyService:
    home = use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_DATABASE_URL", f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    path = panel_study(home)
    assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    return StudyService.open(design, load_case_set(design))


def test_one_panel_id_is_one_participant_and_ids_stay_in_the_payment_file(service, tmp_path):
    pid = "5f1a2b3c4d5e6f7a8b9c0d1e"
    arrival = panel_arrival(service.design, link(pid))
    token, new = service.enrol_from_panel(arrival)
    again, new_again = service.enrol_from_panel(arrival)  # the same id from another browser, or a reopened link
    assert new and not new_again and again == token
    other, _ = service.enrol_from_panel(panel_arrival(service.design, link("aaaabbbbccccdddd")))
    assert other != token and service.arrived_from_panel(token) and not service.arrived_from_panel(service.enrol())
    with service.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(participants)).scalar_one() == 3
        assert connection.execute(select(panel_entries.c.visits).where(panel_entries.c.panel_id == pid)).scalar_one() \
            == 2
        logged = " ".join(str(row) for row in connection.execute(select(events.c.payload)))
    assert pid not in logged  # the event log never holds a panel id

    reader = SimulatedClinician(SimulationConfig(participants=1), 0, service)
    step = service.resume(token)
    while step.status == "in_progress":
        step = service.submit(token, step.key, reader.answer(step), uuid.uuid4().hex)
    service.submit(other, service.resume(other).key, {"agree": False}, uuid.uuid4().hex)

    out = tmp_path / "export"
    assert run_cli("export", "--study", "panel", "--out", str(out)).code == 0
    for path in out.rglob("*"):
        if path.is_file():
            assert pid not in path.read_text(errors="replace"), path
    people = pd.read_csv(next((out / "data").glob("*participants_data.csv")))
    assert set(people["enrolled_via"]) == {"panel"}
    result = run_cli("export", "--study", "panel", "--payment", str(tmp_path / "pay.csv"))
    assert result.code == 0, result.err
    payment = pd.read_csv(tmp_path / "pay.csv", dtype=str).fillna("")
    assert list(payment.columns) == ["panel", "PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "status", "entered_at",
                                     "completed_at", "withdrawn_at", "visits", "completion_code"]
    paid = payment.set_index("PROLIFIC_PID")
    assert paid.loc[pid, "status"] == "completed" and paid.loc[pid, "completion_code"] == "C1ABC2DE"
    declined = paid.loc["aaaabbbbccccdddd"]
    assert declined["status"] == "declined" and declined["completion_code"] == ""
    assert "participant_id" not in payment.columns
    assert run_cli("study", "prepare", str(Path(service.design.source).with_name("t.toml"))).code == 0
    plain = run_cli("export", "--study", "t", "--payment", str(tmp_path / "none.csv"))
    assert plain.code == 2 and "recruits through no panel" in plain.err


def test_a_completion_url_can_be_corrected_while_the_study_runs(service):
    service.enrol_from_panel(panel_arrival(service.design, link("abc123")))
    fixed = Path(service.design.source)
    fixed.write_text(fixed.read_text().replace("app.prolific.com/submissions/complete?cc={code}",
                                               "app.prolific.com/submissions/complete?cc={code}&fixed=1"))
    design = load_design(fixed)
    amended = StudyService.open(design, load_case_set(design))  # not refused: recorded as an amendment
    assert amended.design.recruitment.completion_link().endswith("&fixed=1")
