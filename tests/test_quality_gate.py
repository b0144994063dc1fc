"""The quality gate: a model that has not shown it learned is never prepared, demoed or served."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from conftest import run_cli, use_lab, write_study
from support.cards import a_model_card

from xai_lab.model.card import ModelCard
from xai_lab.model.quality import DEFAULT_MIN_VAL_AUROC, SYNTHETIC_MIN_VAL_AUROC, quality_verdict


def model_card(auroc: float, ci: tuple[float, float] | None, dataset: str = "nowhere") -> ModelCard:
    return a_model_card(dataset=dataset, val_auroc=auroc, val_auroc_ci=ci)


def test_the_lower_bound_must_reach_the_floor_from_the_design_the_dataset_or_the_default(lab_home):
    (lab_home / "data" / "synth").mkdir(parents=True)
    (lab_home / "data" / "synth" / "card.json").write_text(json.dumps({"source": {"kind": "synthetic"}}))
    (lab_home / "data" / "declared").mkdir(parents=True)
    (lab_home / "data" / "declared" / "card.json").write_text(json.dumps({"min_val_auroc": 0.95}))
    weak = model_card(0.606, (0.540, 0.672), "synth")  # the busy machine's demo model (issue 24)
    verdict = quality_verdict(weak)
    assert not verdict.passed and verdict.floor == SYNTHETIC_MIN_VAL_AUROC
    assert "validation AUROC 0.606 [0.540, 0.672]" in verdict.sentence and "0.85" in verdict.sentence
    assert quality_verdict(model_card(0.95, (0.92, 0.97), "synth")).passed
    # the lower bound decides, not the estimate: a lucky small validation split does not pass
    assert not quality_verdict(model_card(0.90, (0.80, 0.97), "synth")).passed
    assert not quality_verdict(model_card(0.96, (0.93, 0.98), "declared")).passed  # the card asks 0.95
    default = quality_verdict(model_card(0.75, (0.71, 0.79)))
    assert default.passed and default.floor == DEFAULT_MIN_VAL_AUROC
    designed = quality_verdict(model_card(0.75, (0.71, 0.79)), declared=0.8, declared_by="s.toml")
    assert not designed.passed and "declared by s.toml" in designed.sentence
    assert not quality_verdict(model_card(0.9, None)).passed  # no interval: nothing shown, nothing served
    with pytest.raises(Exception, match="fails the quality gate.*; retrain"):
        verdict.require("retrain it")


def test_the_synthetic_generator_declares_its_floor(lab_home):
    assert run_cli("data", "synth", "--name", "s", "--n", "60", "--size", "32").code == 0
    assert json.loads((lab_home / "data" / "s" / "card.json").read_text())["min_val_auroc"] == SYNTHETIC_MIN_VAL_AUROC


def test_a_design_may_declare_its_floor_without_changing_unchanged_designs(tmp_path):
    from xai_lab.study.design_file import load_design

    plain = write_study(tmp_path, "g")
    declared = tmp_path / "declared.toml"
    declared.write_text(plain.read_text().replace('model = "tiny"', 'model = "tiny"\nmin_val_auroc = 0.9'))
    assert load_design(declared).data.min_val_auroc == 0.9
    assert load_design(plain).data.min_val_auroc is None
    assert load_design(declared).fingerprint() != load_design(plain).fingerprint()
    bad = tmp_path / "bad.toml"
    bad.write_text(plain.read_text().replace('model = "tiny"', 'model = "tiny"\nmin_val_auroc = 0.3'))
    result = run_cli("study", "validate", bad)
    assert result.code == 2 and "data.min_val_auroc must be a number from 0.5 to 1" in result.err


def _weaken(home, model: str = "tiny") -> None:
    """What a model that did not learn has on its card (the weights are untouched, so it still loads)."""
    path = home / "models" / model / "model_card.json"
    card = json.loads(path.read_text())
    card["metrics"]["val"].update(auroc=0.606, auroc_ci=[0.540, 0.672])
    path.write_text(json.dumps(card))


def test_prepare_and_serve_refuse_a_model_below_the_gate_in_one_line(study_home, tmp_path, monkeypatch):
    home = tmp_path / "lab"
    shutil.copytree(study_home, home)
    use_lab(home, monkeypatch)
    _weaken(home)
    other = write_study(home, "g")
    prepared = run_cli("study", "prepare", other)
    assert prepared.code == 2 and len(prepared.err.strip().splitlines()) == 1, prepared.err
    assert "model 'tiny' fails the quality gate: validation AUROC 0.606 [0.540, 0.672]" in prepared.err
    assert "retrain it (xai-lab train --data tiny" in prepared.err and "min_val_auroc" in prepared.err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = run_cli("serve", "--design", home / "t.toml", "--port", port)  # prepared before the model got worse
    assert served.code == 2 and len(served.err.strip().splitlines()) == 1
    assert "fails the quality gate" in served.err


def test_a_running_study_is_served_on_with_a_warning_after_an_upgrade(study_home, tmp_path, monkeypatch):
    """An upgrade never stops a running study: one prepared before the gate, with participants, is
    registered and served as before, and the researcher is told its model's numbers."""
    from xai_lab.store.database import open_database
    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.serve_setup import register_design_files
    from xai_lab.study.service import StudyService

    home = tmp_path / "lab"
    shutil.copytree(study_home, home)
    use_lab(home, monkeypatch)
    design = load_design(home / "t.toml")
    StudyService.open(design, load_case_set(design)).enrol(via="code")
    _weaken(home)
    said: list[str] = []
    assert register_design_files(open_database(), [home / "t.toml"], say=said.append) == ["t"]
    assert len(said) == 1 and "fails the quality gate" in said[0] and "already has participants" in said[0]


def test_demo_refuses_a_default_model_below_the_gate(lab_home):
    """The embedded default, built small and then found wanting: demo stops before serving, in one line."""
    assert run_cli("data", "synth", "--name", "synthetic", "--n", "120", "--size", "32", "--seed", "2").code == 0
    assert run_cli("train", "--data", "synthetic", "--epochs", "1", "--members", "1", "--quiet").code == 0
    _weaken(lab_home, "synthetic")
    result = run_cli("demo", "--no-serve", "--quiet")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "model 'synthetic' fails the quality gate" in result.err
    assert not (lab_home / "prepared" / "demo").exists()
