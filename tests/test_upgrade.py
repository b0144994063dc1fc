"""An upgrade never refuses or corrupts a running study.

- The shipped designs' fingerprints are pinned: a change to how designs are read, stored or
  fingerprinted that moves one fails here, before a researcher's study is refused by `serve`.
- A setting added later (`Setting.since` above schema 1) counts in the fingerprint only when set.
- `tests/data/release_lab.tar.gz` is a lab written by release c134d95 (see make_release_lab.py): its
  database holds participants left at every kind of step. This release registers its designs as
  `serve` does, and every participant resumes exactly where they were, then finishes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import use_lab
from sqlalchemy import select

from xai_lab.errors import ConfigError
from xai_lab.store.database import open_database
from xai_lab.store.schema import participants
from xai_lab.study import flow
from xai_lab.study.cases import CaseSet
from xai_lab.study.catalogue import open_catalogue
from xai_lab.study.design import StudyDesign
from xai_lab.study.design_fields import setting, without_later_defaults
from xai_lab.study.design_file import load_design
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.serve_setup import register_design_files
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

ROOT = Path(__file__).resolve().parents[1]
RELEASE_LAB = ROOT / "tests" / "data" / "release_lab.tar.gz"

# Pinned on 2026-12-04 (release c134d95; demo.toml's is the one the seams issue quotes). Never update
# one of these to make a test pass: a moved fingerprint refuses every study registered under it.
SHIPPED_FINGERPRINTS = {
    "biased_ai.toml": "65c0d9edc202355b2f0b7d826bff23a33d3a13ea4698cb98515bd3c84bee7f1d",
    "competence_vignettes.toml": "72474c88f29c7a45f08ad898bc848ee6e699e0c2ecf813573fdb9de519201863",
    "demo.toml": "064b3c41afb283c604973ac87f5331823e51d8c71352f06b763799b86a4c199e",
    "explanation_2x2.toml": "650e438e8584f3efebc85fda6d3b056a05dc2ccc7b10b64d61ccf78917d2d37f",
    "verify_vs_rely.toml": "d9923fba188ae4c524c482f5e429fe3f97250edb0815ab2fba344e0187bf6791",
}
# The plans a participant of each shipped design gets (every allocation unit's steps, case order and
# arms, for one participant id), as the release before [factors] (c134d95 and 34667c2) made them: an
# upgrade that moved a plan would put a resumed participant on other cases than those they had begun.
SHIPPED_PLANS = {
    "biased_ai.toml": "fb196d22badd45ae02d813acd243812b4b782a9d3a55335f3c953aedf4eacb78",
    "competence_vignettes.toml": "bdcb40d49787b9724cd3e8770705a64c7bc6ea923890a2da1930f392d994bc17",
    "demo.toml": "c0e16f8a5de748968a9816c1e84d3bd565d2f399d93e1d9cba85c4aa7eea8ebe",
    "explanation_2x2.toml": "68ccd338bb827f590ab42fd29da1b78eac55cb71e6b72a46dc74d971579e1bd4",
    "verify_vs_rely.toml": "051f161cfb004cdf0ebe4718c7beb4205291f6baa1aaf5e3156fb3caa6710779",
}


def plan_digest(design: StudyDesign) -> str:
    plans = {unit: {"plan": flow.build_plan(design, unit),
                    "cases": [case for case, _ in flow.trial_cases(design, unit, "p-0001")],
                    "arms": flow.trial_arms(design, unit)} for unit in design.orders}
    return hashlib.sha256(json.dumps(plans, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(SHIPPED_PLANS))
def test_the_shipped_designs_keep_their_plans(name):
    assert plan_digest(load_design(ROOT / "studies" / name)) == SHIPPED_PLANS[name]


@pytest.mark.parametrize("name", sorted(SHIPPED_FINGERPRINTS))
def test_the_shipped_designs_keep_their_fingerprints(name):
    assert load_design(ROOT / "studies" / name).fingerprint() == SHIPPED_FINGERPRINTS[name]


def test_every_shipped_design_is_pinned():
    assert {path.name for path in (ROOT / "studies").glob("*.toml")} == set(SHIPPED_FINGERPRINTS) == set(SHIPPED_PLANS)


@dataclasses.dataclass(frozen=True)
class _Section:
    kept: int = setting(1, help="a schema-1 setting")
    added: int = setting(0, since=2, help="a setting a later release adds")


def test_a_setting_added_later_counts_only_when_set():
    assert without_later_defaults(_Section, {"kept": 1, "added": 0}) == {"kept": 1}
    assert without_later_defaults(_Section, {"kept": 1, "added": 3}) == {"kept": 1, "added": 3}
    assert without_later_defaults(_Section, {"kept": 1, "added": 0}, schema=2) == {"kept": 1, "added": 0}


def test_a_design_or_case_set_from_a_newer_release_is_refused_not_misread():
    raw = load_design(ROOT / "studies" / "demo.toml").to_json()
    with pytest.raises(ConfigError, match="newer xai-lab .*upgrade xai-lab"):
        StudyDesign.from_json({**raw, "schema": raw["schema"] + 1})
    case_set = {"study_id": "x", "dataset": "", "dataset_sha256": "", "model": "", "model_sha256": "",
                "class_names": [], "explanation_method": "", "cases": [], "practice": [], "attention": [],
                "schema": 99}
    with pytest.raises(ConfigError, match="newer xai-lab"):
        CaseSet.from_json(case_set)


@pytest.fixture
def release_lab(tmp_path, monkeypatch) -> tuple[Path, dict]:
    with tarfile.open(RELEASE_LAB) as archive:
        archive.extractall(tmp_path, filter="data")
    use_lab(tmp_path, monkeypatch)
    monkeypatch.delenv("XAI_LAB_DATABASE_URL", raising=False)
    return tmp_path, json.loads((tmp_path / "manifest.json").read_text())


def test_the_release_database_is_what_the_fixture_says(release_lab):
    home, manifest = release_lab
    with sqlite3.connect(home / "xai_lab.db") as connection:
        stored = dict(connection.execute("select study_id, design_sha256 from studies"))
        assert "schema" not in json.loads(connection.execute("select design from studies").fetchone()[0])
    assert stored == {study_id: entry["fingerprint"] for study_id, entry in manifest["studies"].items()}


def test_participants_of_a_release_database_resume_where_they_were_and_finish(release_lab):
    home, manifest = release_lab
    engine = open_database()
    files = [home / entry["design_file"] for entry in manifest["studies"].values()]
    said: list[str] = []
    assert register_design_files(engine, files, say=said.append) == list(manifest["studies"])  # as serve does
    catalogue = open_catalogue(engine, tuple(manifest["studies"]))
    for study_id, entry in manifest["studies"].items():
        service = catalogue[study_id].service
        with engine.connect() as connection:  # the upgrade gave everyone who consented the text they agreed to
            versions = connection.execute(select(participants.c.consent_version).where(
                participants.c.study_id == study_id, participants.c.step_key != "consent",
                participants.c.status != "declined")).scalars().all()
        assert versions and set(versions) == {service.design.consent_version}
        for left in entry["participants"]:
            step = service.resume(left["token"])
            assert (step.key, step.status, step.done, step.total) == \
                (left["step_key"], left["status"], left["done"], left["total"]), (study_id, left["number"])
            clinician = SimulatedClinician(SimulationConfig(participants=1, seed=7), left["number"], service)
            while step.status == "in_progress":
                step = service.submit(left["token"], step.key, clinician.answer(step), uuid.uuid4().hex)
            assert step.status == "completed"
        rebuild_derived(engine, study_id)  # the old events and the new replay into the same state
        for left in entry["participants"]:
            assert service.resume(left["token"]).status == "completed"
    engine.dispose()


@pytest.mark.served
def test_the_release_lab_is_served_and_its_participants_see_their_step(release_lab):
    from support.local_server import served_app
    from support.protocol_client import ProtocolClient

    home, manifest = release_lab
    files = [home / entry["design_file"] for entry in manifest["studies"].values()]
    with served_app(files, home) as port:
        for study_id, entry in manifest["studies"].items():
            for left in entry["participants"]:
                if left["status"] != "in_progress" or left["step_key"] in ("consent", "profile"):
                    continue
                with ProtocolClient("127.0.0.1", port, f"study={study_id}&token={left['token']}") as client:
                    keys = " ".join(client.keys())
                    assert left["step_key"] in keys, (study_id, left["step_key"], keys[:300])


def test_a_model_card_from_the_release_reads_as_a_typed_record_and_writes_back_whole(release_lab):
    from xai_lab.errors import ModelError
    from xai_lab.model.card import CARD_VERSION, ModelCard, read_model_card

    home, _ = release_lab
    raw = json.loads((home / "models" / "tiny" / "model_card.json").read_text())
    card = read_model_card(home / "models" / "tiny")  # written before cards had a version: version 1
    assert card.card_version == 1 and card.name == "tiny" and card.dataset.class_names == ["normal", "lesion"]
    assert card.decision.threshold == raw["decision"]["threshold"] and card.preprocessing.input_size == 32
    assert card.split_metrics("val")["auroc"] == raw["metrics"]["val"]["auroc"]
    written = card.to_json()
    assert {key: written[key] for key in raw} == raw  # nothing the release wrote is lost or changed
    later = ModelCard.from_json({**raw, "vendor": {"source": "a later release's section"}})
    assert later.to_json()["vendor"] == {"source": "a later release's section"}  # kept for the release that wrote it
    with pytest.raises(ModelError, match="newer than this xai-lab reads"):
        ModelCard.from_json({**raw, "card_version": CARD_VERSION + 1})
    with pytest.raises(ModelError, match="lacks what a model card needs"):
        ModelCard.from_json({key: value for key, value in raw.items() if key != "decision"})
