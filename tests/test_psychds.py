"""The export is a Psych-DS dataset: dataset_description.json (schema.org Dataset, variableMeasured
from the codebook), keyword-named data files under data/, accepted by the validator's rules
(tests/support/psychds.py); `analyze` reads this layout and the flat one of earlier exports."""

from __future__ import annotations

import json
import shutil
import uuid

from conftest import run_cli, use_lab
from support.psychds import psychds_problems

from xai_lab.analysis.load import load_export
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.export import COLUMNS, table_file
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulationConfig, simulate


def test_the_export_is_a_valid_psychds_dataset_and_analyze_reads_both_layouts(study_home, monkeypatch, tmp_path):
    home = use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_DATABASE_URL", f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    design = load_design(home / "t.toml")
    service = StudyService.open(design, load_case_set(design))
    simulate(service, SimulationConfig(participants=6, seed=2, dropout=0.0))
    out = tmp_path / "export"
    assert run_cli("export", "--study", "t", "--out", str(out)).code == 0

    errors, warnings = psychds_problems(out)
    assert errors == [] and warnings == []
    meta = json.loads((out / "dataset_description.json").read_text())
    assert meta["@type"] == "Dataset" and meta["name"] == design.title
    described = {item["name"]: item["description"] for item in meta["variableMeasured"]}
    assert described["final_label"] == COLUMNS["trials"]["final_label"]  # the codebook's meaning
    assert table_file(out, "trials").name == "study-t_description-trials_data.csv"
    assert {p.name for p in (out / "data").iterdir()} == {f"study-t_description-{name}_data.csv" for name in COLUMNS}

    # the rules can fail: an undescribed column and a file without keyword names are both errors
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    meta["variableMeasured"] = [item for item in meta["variableMeasured"] if item["name"] != "final_label"]
    (broken / "dataset_description.json").write_text(json.dumps(meta))
    (broken / "data" / "trials_data.csv").write_text("a\n1\n")
    errors, _ = psychds_problems(broken)
    assert any("CSV_COLUMN_MISSING_FROM_METADATA" in e and "final_label" in e for e in errors)
    assert any("FILENAME_KEYWORD_FORMATTING_ERROR" in e for e in errors)

    flat = tmp_path / "flat"  # an export written before the Psych-DS layout
    flat.mkdir()
    for name in COLUMNS:
        shutil.copy(table_file(out, name), flat / f"{name}.csv")
    shutil.copy(out / "design.json", flat / "design.json")
    assert len(load_export(flat, rehearsal=True).trials) == len(load_export(out, rehearsal=True).trials) == 36
