"""`xai-lab preregister` writes the OSF-template document and its lock; `analyze --preregistration`
prints the lock and flags every deviation: an [analysis] changed after the first participant, a design
changed after preregistration, exclusions not declared."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from conftest import run_cli, use_lab

from xai_lab.analysis.preregistration import Lock
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

REPO = Path(__file__).resolve().parents[1]
OSF_SECTIONS = ("Study information", "Design plan", "Sampling plan", "Variables", "Analysis plan", "Other")
AMENDED_ANALYSIS = '\n[analysis]\nprimary = "agreement"\ncontrast = "rely - verify"\n'


def test_preregister_writes_the_osf_sections_with_a_simulated_sample_size(tmp_path):
    out = tmp_path / "prereg"
    result = run_cli("preregister", "--design", str(REPO / "studies" / "verify_vs_rely.toml"), "--out", str(out),
                     "--reps", "12", "--n", "8,40", "--author", "A. Researcher", "--effect",
                     "over_reliance:rely=0.7,verify=0.25")
    assert result.code == 0, result.err
    markdown = (out / "preregistration.md").read_text()
    html = (out / "preregistration.html").read_text()
    for section in OSF_SECTIONS:
        assert f"## {section}" in markdown and f"<h2>{section}</h2>" in html
    assert "H1 (primary): over-reliance (taking wrong AI advice) differs between rely and verify" in markdown
    assert "12 simulated studies per size" in markdown and "| 40 | primary: over_reliance rely - verify |" in markdown
    assert "A. Researcher" in markdown and "torch " in markdown
    lock = Lock.read(out)
    design = load_design(REPO / "studies" / "verify_vs_rely.toml")
    assert lock.fingerprint == design.fingerprint() and lock.lock in markdown and lock.lock in html
    assert lock.analysis["primary"] == "over_reliance"
    assert "sample size: " in result.out


def test_a_lock_edited_by_hand_and_a_missing_lock_are_one_line_errors(tmp_path):
    out = tmp_path / "prereg"
    assert run_cli("preregister", "--design", str(REPO / "studies" / "demo.toml"), "--out", str(out),
                   "--no-power").code == 0
    raw = json.loads((out / "lock.json").read_text())
    raw["analysis"]["primary"] = "agreement"
    (out / "lock.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="does not match what it says it locks"):
        Lock.read(out)
    missing = run_cli("analyze", str(tmp_path), "--out", str(tmp_path / "r"), "--preregistration",
                      str(tmp_path / "nowhere"))
    assert missing.code == 2 and "no preregistration lock" in missing.err


@pytest.fixture
def home(study_home, monkeypatch):
    home = use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_DATABASE_URL", f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    return home


def take_part(service: StudyService, count: int) -> None:
    for number in range(count):
        token = service.enrol()
        reader = SimulatedClinician(SimulationConfig(participants=count, seed=5), number, service)
        step = service.resume(token)
        while step.status == "in_progress":
            step = service.submit(token, step.key, reader.answer(step), uuid.uuid4().hex)


def test_an_analysis_changed_after_enrolment_is_a_deviation_in_the_report(home, tmp_path):
    design_file = home / "t.toml"
    assert run_cli("preregister", "--design", str(design_file), "--out", str(tmp_path / "prereg"),
                   "--no-power").code == 0
    design = load_design(design_file)
    take_part(StudyService.open(design, load_case_set(design)), 6)

    followed = run_cli("analyze", "--study", "t", "--out", str(tmp_path / "before"), "--resamples", "100",
                       "--preregistration", str(tmp_path / "prereg"))
    assert followed.code == 0, followed.err
    assert "followed" in followed.out and "deviation" not in followed.err

    design_file.write_text(design_file.read_text() + AMENDED_ANALYSIS)
    assert run_cli("study", "prepare", str(design_file)).code == 0  # registered over the running study
    changed = run_cli("analyze", "--study", "t", "--out", str(tmp_path / "after"), "--resamples", "100",
                      "--preregistration", str(tmp_path / "prereg"))
    assert changed.code == 0, changed.err
    assert "2 deviation(s)" in changed.out
    assert "deviation: estimand changed after preregistration" in changed.err
    assert "after the first participant enrolled" in changed.err and "primary: (none) -> agreement" in changed.err
    report = (tmp_path / "after" / "report.html").read_text()
    assert "Deviation: [analysis] changed at" in report and "primary: (none) -&gt; agreement" in report
    summary = json.loads((tmp_path / "after" / "summary.json").read_text())
    assert len(summary["preregistration"]["deviations"]) == 2
