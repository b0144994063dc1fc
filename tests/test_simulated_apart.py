"""Simulated participants stay apart from people: refused beside them without --pilot, marked in the
export, left out of the analysis (and counted) unless it is a rehearsal."""

from __future__ import annotations

import html
import json
import random
import uuid

import pandas as pd
import pytest
from conftest import run_cli, use_lab, write_study

from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.export import table_file
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig


def people(design_path, n: int, seed: int = 7) -> list[str]:
    """N participants who arrive through the study's code link and answer every step (as people would,
    here with the simulator's answers); returns their tokens."""
    design = load_design(design_path)
    service = StudyService.open(design, load_case_set(design))
    config = SimulationConfig(participants=n, seed=seed, dropout=0.0)
    tokens = []
    for number in range(n):
        token = service.enrol(via="code")
        clinician = SimulatedClinician(config, 1000 + number, service)
        step = service.resume(token)
        while step.status == "in_progress":
            step = service.submit(token, step.key, clinician.answer(step), idempotency_key=uuid.uuid4().hex)
        tokens.append(token)
    return tokens


@pytest.fixture
def demo_like(study_home, monkeypatch):
    """A verify-vs-rely study like the demo (peer records, with vignettes, a control one among them, as
    the fallback), prepared in the module's lab."""
    use_lab(study_home, monkeypatch)
    name = f"d{random.randrange(10**6)}"
    design = write_study(study_home, study_id=name, arms='["verify", "rely"]', n=4, blocks="[2]")
    assert run_cli("study", "prepare", design).code == 0
    return study_home, name, design


def test_simulate_beside_real_participants_needs_pilot_and_analyze_leaves_them_out(demo_like, tmp_path):
    """The demo's course: 40 simulated pilots seed peer rating, then people take part."""
    home, name, design = demo_like
    piloted = run_cli("simulate", "--design", design, "--participants", "40", "--pilot", "--dropout", "0",
                      "--concurrency", "4")
    assert piloted.code == 0, piloted.err
    people(design, 12)
    refused = run_cli("simulate", "--design", design, "--participants", "3", "--seed", "9")
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1
    assert f"study {name!r} already has 12 real participant(s)" in refused.err and "--pilot" in refused.err
    out = tmp_path / "report"
    result = run_cli("analyze", "--study", name, "--out", out, "--resamples", "200", "--no-mixed")
    assert result.code == 0, result.err
    assert "40 pilot participant(s) left out of every estimate" not in result.err  # they are simulated pilots:
    assert "40 simulated participant(s) left out of every estimate" in result.err  # counted once, as simulated
    export = pd.read_csv(table_file(out / "export", "participants"))
    assert export["enrolled_via"].value_counts().to_dict() == {"simulation": 40, "code": 12}
    assert "`enrolled_via`" in (out / "export" / "codebook.md").read_text()
    written = json.loads((out / "summary.json").read_text())
    assert sum(written["n_participants"].values()) == 12 and written["left_out"] == {"simulated": 40}
    # the demo's acceptance: no "control" group in a verify-vs-rely report, though a control vignette exists
    report = html.unescape((out / "report.html").read_text())
    competence = report[report.index("<h2>Peer-rated competence</h2>"):report.index("<h2>Methods</h2>")]
    assert "control" not in competence and "competence (peer records)" in competence
    for item in written["competence_items"]:
        assert set(item["means"]) <= {"verify", "rely"}, item
    rehearsal = run_cli("analyze", "--study", name, "--out", tmp_path / "rehearsal", "--resamples", "200",
                        "--no-mixed", "--rehearsal")
    assert rehearsal.code == 0
    assert "Rehearsal: simulated and pilot participants are included (40 simulated" in rehearsal.err
    assert sum(json.loads((tmp_path / "rehearsal" / "summary.json").read_text())["n_participants"].values()) == 52


def test_simulating_an_empty_study_needs_no_pilot_flag_and_is_a_rehearsal(demo_like, tmp_path):
    home, name, design = demo_like
    assert run_cli("simulate", "--design", design, "--participants", "6", "--dropout", "0").code == 0
    refused = run_cli("analyze", "--study", name, "--out", tmp_path / "r", "--resamples", "200", "--no-mixed")
    assert refused.code == 2 and "every participant in the export is simulated or a pilot (6 simulated)" in refused.err
    assert not (tmp_path / "r" / "report.html").exists()
    # the first raters had no peers' records yet: the fallback vignettes keep to the design's arms
    ratings = pd.read_csv(table_file(tmp_path / "r" / "export", "ratings"))
    fallback = ratings[ratings["target_source"] == "fallback_vignette"]
    assert len(fallback) and set(fallback["target_arm"]) <= {"verify", "rely"}
