"""Study engine: designs, lifecycle, allocation, storage (SQLite and PostgreSQL), simulation, export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli, use_lab, write_study
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.checks import integrity_ok, largest_block

from xai_lab.errors import ConfigError
from xai_lab.store.database import SCHEMA_VERSION, database_url, open_database
from xai_lab.store.schema import allocation_slots, events, participants, strata, trials
from xai_lab.study.allocation import block
from xai_lab.study.cases import load_case_set, mirrored_probability
from xai_lab.study.design_file import load_design
from xai_lab.study.export import COLUMNS, export_study, table_file
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.service import NotCurrentStep, ReplayedSubmit, StudyService, UnknownToken
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig, simulate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_study_home(study_home, monkeypatch):
    return use_lab(study_home, monkeypatch)


def service_for(home: Path, url: str | None = None, **study) -> StudyService:
    design = load_design(write_study(home, **study)) if study else load_design(home / "t.toml")
    if study:
        assert run_cli("study", "prepare", str(home / f"{design.id}.toml")).code == 0
    return StudyService.open(design, load_case_set(design), url=url or f"sqlite:///{home}/{uuid.uuid4().hex}.db")


def key() -> str:
    return uuid.uuid4().hex


def event_count(service: StudyService) -> int:
    with service.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(events)).scalar()


def walk_to(service: StudyService, token: str, kind: str, role: str = "nurse"):
    """Answer steps as a careful reader until a step of `kind` is current."""
    clinician = SimulatedClinician(SimulationConfig(participants=1), 0, service)
    step = service.resume(token)
    while step.kind != kind and step.status == "in_progress":
        answer = clinician.answer(step)
        if step.kind == "profile":
            answer["role"] = role
        step = service.submit(token, step.key, answer, key())
    return step


# ---------------------------------------------------------------- designs


def test_shipped_designs_validate():
    for name in ("demo", "verify_vs_rely", "competence_vignettes"):
        result = run_cli("study", "validate", str(REPO / "studies" / f"{name}.toml"))
        assert result.code == 0, result.err
    assert load_design(REPO / "studies" / "demo.toml").id == "demo"
    vignettes = load_design(REPO / "studies" / "competence_vignettes.toml")
    assert vignettes.peer_rating.assignment == "by_arm" and not vignettes.has_trials


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('title = "Test study"', 'title = "x"\ncolour = "red"'), "unknown key colour"),
    (lambda t: t.replace("ai_wrong_share = 0.34", "ai_wrong_share = 1.5"), "cases.ai_wrong_share must be a number"),
    (lambda t: t.replace("block_sizes = [3, 6]", "block_sizes = [4]"), "allocation.block_sizes must list 1-8 "
                                                                        "multiples of 3"),
    (lambda t: t.replace("block_sizes = [3, 6]", "block_sizes = 6"), "allocation.block_sizes must list"),
    (lambda t: t.replace('arms = ["verify", "rely", "control"]', 'arms = ["verify", "trust"]'), "unknown arm"),
    (lambda t: t.replace('method = "gradcam"', 'method = "lime"'), "explanation.method"),
    (lambda t: t.replace('method = "gradcam"', 'method = "gradcam"\n[explanation.look]\nrely = "glow"'),
     "explanation.look.rely must be one of 'contour', 'side_by_side', 'heatmap'"),
    (lambda t: t.replace('method = "gradcam"', 'method = "gradcam"\n[explanation.look]\ncontrol = "contour"'),
     "unknown key explanation.look.control"),
    (lambda t: t.replace('method = "gradcam"', 'method = "gradcam"\nnormal_advice = "hide"'),
     "explanation.normal_advice must be one of 'withhold', 'explain'"),
    (lambda t: t.replace('method = "gradcam"', 'method = "occlusion"\n[explanation.parameters]\nsize = 3'),
     "unknown key explanation.parameters.size; the keys allowed here are: baseline, perturbations_per_eval"),
    (lambda t: t.replace('method = "gradcam"', 'method = "occlusion"\n[explanation.parameters]\nbaseline = "x"'),
     "explanation.parameters.baseline must be one of blurred, black"),
    (lambda t: t.replace('method = "gradcam"', 'method = "occlusion"\n[explanation.parameters]\n'
                                               'window_fraction = "big"'),
     "explanation.parameters.window_fraction must be float like its default 0.125"),
    (lambda t: t.replace('method = "gradcam"', 'method = "default"\n[explanation.parameters]\nbaseline = "black"'),
     "explanation.parameters needs a named method"),
    (lambda t: t.replace('id = "t"', 'id = "../x"'), "id"),
    (lambda t: t.replace("[instructions]\n", "[instructions]\nextra = 'x'\n"), "unknown key instructions.extra"),
    (lambda t: t + "\n[[questionnaire.items]]\nid = \"reliable\"\ntext = \"again\"\n", "repeats the id"),
    (lambda t: t.replace("n = 6", "n = 6\n[cases]"), "not valid TOML"),
    (lambda t: t.replace('id = "reliable"', 'id = "has space"'), "questionnaire[0].items[0].id must be 1-48"),
])
def test_bad_designs_name_the_key_and_fix(tmp_path, edit, message):
    path = write_study(tmp_path)
    path.write_text(edit(path.read_text()))
    result = run_cli("study", "validate", str(path))
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


def test_impossible_ratio_without_planting_is_refused(in_study_home, tmp_path):
    path = write_study(tmp_path, study_id="ratio")
    path.write_text(path.read_text().replace('advice = "planted"', 'advice = "model"')
                    .replace("ai_wrong_share = 0.34", "ai_wrong_share = 1.0").replace("n = 6", "n = 40"))
    result = run_cli("study", "prepare", str(path))
    assert result.code == 2 and "AI-wrong cases but the model makes only" in result.err
    assert "cases.advice = \"planted\"" in result.err


def test_missing_design_and_unprepared_study(in_study_home, tmp_path):
    assert "no study design" in run_cli("study", "validate", str(tmp_path / "none.toml")).err
    path = write_study(tmp_path, study_id="unprepared")
    result = run_cli("simulate", "--design", str(path), "--participants", "2")
    assert result.code == 2 and "study prepare" in result.err


def test_postgres_urls_map_to_the_declared_driver():
    assert database_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    with pytest.raises(ConfigError, match="unsupported database"):
        database_url("mysql://u@h/db")


# ---------------------------------------------------------------- lifecycle


def test_verify_trial_flow_and_timing(in_study_home):
    service = service_for(in_study_home)
    token = service.enrol()
    assert len(token) >= 32  # 24 random bytes, url-safe base64
    step = walk_to(service, token, "trial")
    # find a verify participant (allocation is random): enrol until one lands in verify
    while step.content["arm"] != "verify":
        token = service.enrol()
        step = walk_to(service, token, "trial")
    assert step.content["phase"] == "initial" and not step.content["show_ai"] and "ai" not in step.content
    step = service.submit(token, step.key, {"label": "lesion", "confidence": 40, "slider_moved": True}, key())
    assert step.content["phase"] == "final" and step.content["show_ai"]
    assert step.content["initial"] == {"label": "lesion", "confidence": 40, "score": 40}
    ai = step.content["ai"]
    assert ai["label"] in ("normal", "lesion")
    if ai["label"] == "normal":  # withheld by default: a map for "normal" marks normal anatomy
        assert ai["overlay"] is None and ai["no_finding"]
    else:
        assert ai["overlay"]["method"] == "gradcam" and ai["overlay"]["look"] == "contour"
    service.record_toggle(token, step.key, False, key())
    service.submit(token, step.key, {"label": "normal", "confidence": 90, "slider_moved": True}, key())
    with service.engine.connect() as connection:
        row = connection.execute(select(trials)).mappings().one()
    assert row["initial_label"] == "lesion" and row["final_label"] == "normal" and row["overlay_toggles"] == 1
    assert row["rt_initial_ms"] >= 0 and row["rt_final_ms"] >= 0 and row["arm"] == "verify"


def test_advice_never_contradicts_its_own_number(in_study_home):
    """Two classes: "lesion" comes with P(lesion) at or above the model's threshold, "normal" below
    it, for the model's own advice and for planted advice (mirrored across the threshold)."""
    case_set = load_case_set(load_design(in_study_home / "t.toml"))
    threshold = case_set.decision_threshold
    assert threshold is not None and 0 < threshold <= 1  # this tiny model's is 1.0: an edge case too
    cases = case_set.cases + case_set.practice + case_set.attention
    assert any(case.advice_source == "planted" for case in cases)
    for case in cases:
        p_lesion = case.ai_confidence if case.ai_label == "lesion" else 1 - case.ai_confidence
        assert (p_lesion >= threshold) == (case.ai_label == "lesion"), case


@pytest.mark.parametrize("p_finding", [0.001, 0.2, 0.4269, 0.427, 0.42705, 0.5, 0.9, 0.99999])
def test_mirrored_probability_lands_strictly_on_the_other_side(p_finding):
    mirrored = mirrored_probability(p_finding, 0.427)
    assert (mirrored >= 0.427) != (p_finding >= 0.427) and mirrored == round(mirrored, 4)
    assert mirrored_probability(0.2, 0.5) == 0.8  # with a threshold of one half, simply 1 - p
    assert mirrored_probability(1.0, 1.0) < 1.0 <= mirrored_probability(0.3, 1.0)


def test_looks_are_chosen_per_arm_logged_per_trial_and_normal_maps_withheld(in_study_home):
    path = write_study(in_study_home, study_id="looks")
    path.write_text(path.read_text().replace('method = "gradcam"', 'method = "gradcam"\n[explanation.look]\n'
                                                                    'rely = "side_by_side"'))
    assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{in_study_home}/{key()}.db")
    simulate(service, SimulationConfig(participants=18, seed=2, dropout=0.0))
    with service.engine.connect() as connection:
        rows = pd.DataFrame(connection.execute(select(trials)).mappings().all())
    ai_rows = rows[rows["arm"] != "control"]
    shown = ai_rows[ai_rows["overlay_shown"].astype(bool)]
    assert shown.groupby("arm")["overlay_look"].unique().map(list).to_dict() == {"verify": ["contour"],
                                                                                  "rely": ["side_by_side"]}
    # a "normal" suggestion gets no map by default; every other AI trial has one
    assert set(ai_rows.loc[ai_rows["ai_label"] == "normal", "overlay_shown"].astype(bool)) == {False}
    assert ai_rows.loc[ai_rows["ai_label"] == "lesion", "overlay_shown"].astype(bool).all()
    assert rows.loc[~rows["overlay_shown"].fillna(False).astype(bool), "overlay_look"].isna().all()


def test_an_unchanged_design_keeps_its_fingerprint_when_look_defaults_are_spelt_out(tmp_path):
    path = write_study(tmp_path)
    before = load_design(path).fingerprint()
    path.write_text(path.read_text().replace('method = "gradcam"', 'method = "gradcam"\nnormal_advice = "withhold"\n'
                                             '[explanation.look]\nverify = "contour"'))
    assert load_design(path).fingerprint() == before
    path.write_text(path.read_text().replace('verify = "contour"', 'verify = "heatmap"'))
    assert load_design(path).fingerprint() != before


def test_rely_and_control_trials_have_one_phase(in_study_home):
    service = service_for(in_study_home)
    seen = {}
    while len(seen) < 3:
        token = service.enrol()
        step = walk_to(service, token, "trial")
        seen[step.content["arm"]] = step
    assert seen["rely"].content["phase"] == "final" and seen["rely"].content["show_ai"]
    assert seen["control"].content["phase"] == "final" and not seen["control"].content["show_ai"]
    assert "ai" not in seen["control"].content


def test_bad_answers_are_refused_and_the_log_is_unchanged(in_study_home):
    service = service_for(in_study_home)
    token = service.enrol()
    step = walk_to(service, token, "trial")
    before = event_count(service)
    cases = [({"label": "lesion", "confidence": 101, "slider_moved": True}, InvalidAnswer, "0 to 100"),
             ({"label": "lesion", "confidence": -1, "slider_moved": True}, InvalidAnswer, "0 to 100"),
             ({"label": "lesion", "confidence": 50.5, "slider_moved": True}, InvalidAnswer, "whole number"),
             ({"label": "tumour", "confidence": 50, "slider_moved": True}, InvalidAnswer,
              "label must be one of normal, lesion")]
    for answer, error, message in cases:
        with pytest.raises(error, match=message):
            service.submit(token, step.key, answer, key())
    with pytest.raises(NotCurrentStep, match="not the current step"):
        service.submit(token, "consent", {"agree": True}, key())
    with pytest.raises(UnknownToken, match="not recognised"):
        service.submit("forged-" + token[7:], step.key, {"label": "lesion", "confidence": 50, "slider_moved": True},
                       key())
    with pytest.raises(UnknownToken):
        service.resume("")
    assert event_count(service) == before
    used = key()
    service.submit(token, step.key, {"label": "lesion", "confidence": 50, "slider_moved": True}, used)
    after = event_count(service)
    with pytest.raises(ReplayedSubmit, match="already recorded"):
        service.submit(token, step.key, {"label": "lesion", "confidence": 50, "slider_moved": True}, used)
    assert event_count(service) == after


def test_resume_is_exact_from_a_new_process(in_study_home):
    service = service_for(in_study_home)
    token = service.enrol()
    step = walk_to(service, token, "rating")
    # a fresh engine, as after a server restart or a second tab
    again = StudyService.open(service.design, service.case_set, engine=open_database(str(service.engine.url)))
    resumed = again.resume(token)
    assert resumed.key == step.key and resumed.content == step.content and resumed.done == step.done


def test_consent_decline_ends_and_stores_nothing_else(in_study_home):
    service = service_for(in_study_home)
    token = service.enrol()
    step = service.resume(token)
    assert step.kind == "consent" and "Consent text" in step.content["text"]
    assert service.submit(token, step.key, {"agree": False}, key()).status == "declined"
    with service.engine.connect() as connection:
        row = connection.execute(select(participants)).mappings().one()
    assert row["profile"] is None and row["arm"] is None
    with pytest.raises(NotCurrentStep, match="ended"):
        service.submit(token, "profile", {}, key())


def test_withdrawal_deletes_data_and_frees_the_slot(in_study_home):
    service = service_for(in_study_home)
    token = service.enrol()
    walk_to(service, token, "rating")
    assert service.withdraw(token).status == "withdrawn"
    with service.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(trials)).scalar() == 0
        kinds = {row[0] for row in connection.execute(select(events.c.kind))}
        row = connection.execute(select(participants)).mappings().one()
    assert kinds == {"enrolled", "withdrawn"} and row["profile"] is None and row["arm"] is not None
    # the next participant in the stratum takes the freed slot (same arm)
    other = service.enrol()
    assert walk_to(service, other, "trial").content["arm"] == row["arm"]


def test_withdrawal_keeps_data_when_the_consent_says_so(in_study_home, tmp_path):
    service = service_for(in_study_home, study_id="keep", withdrawal="keep")
    token = service.enrol()
    walk_to(service, token, "rating")
    service.withdraw(token)
    with service.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(trials)).scalar() == 6


def test_within_design_crosses_over_in_counterbalanced_order(in_study_home):
    service = service_for(in_study_home, study_id="within", arms='["verify", "rely"]', kind="within",
                          blocks="[2]", n=6)
    orders = Counter()
    for _ in range(4):
        token = service.enrol()
        step = walk_to(service, token, "rating")
        assert step.status == "in_progress"
    with service.engine.connect() as connection:
        rows = connection.execute(select(trials.c.participant_id, trials.c.trial_index, trials.c.arm)
                                  .order_by(trials.c.participant_id, trials.c.trial_index)).all()
    per_person: dict[str, list[str]] = {}
    for participant_id, _, arm in rows:
        per_person.setdefault(participant_id, []).append(arm)
    for arms in per_person.values():
        assert arms[:3] == [arms[0]] * 3 and arms[3:] == [arms[3]] * 3 and arms[0] != arms[3]
        orders[arms[0]] += 1
    assert orders["verify"] == orders["rely"] == 2  # blocks of 2 orders, 2 per stratum (all nurses)


def test_vignette_only_design_gives_one_vignette_by_arm(lab_home):
    service = StudyService.open(load_design(REPO / "studies" / "competence_vignettes.toml"),
                                load_case_set(load_design(REPO / "studies" / "competence_vignettes.toml")),
                                url=f"sqlite:///{lab_home}/v.db")
    summary = simulate(service, SimulationConfig(participants=12, dropout=0.0))
    assert summary.completed == 12
    frames = _export(service, lab_home / "out")
    merged = frames["ratings"].merge(frames["participants"], left_on="rater_id", right_on="participant_id")
    assert (merged["target_arm"] == merged["arm"]).all() and set(merged["target_kind"]) == {"vignette"}
    assert frames["trials"].empty


# ---------------------------------------------------------------- simulation, storage, export


def _export(service: StudyService, out: Path) -> dict[str, pd.DataFrame]:
    export_study(service.engine, service.design.id, out)
    return {name: pd.read_csv(table_file(out, name)) for name in COLUMNS}


def check_simulated_study(service: StudyService, out: Path) -> dict[str, pd.DataFrame]:
    frames = _export(service, out)
    for name, columns in COLUMNS.items():
        assert list(frames[name].columns[:len(columns)]) == list(columns)
    people, rows, rated = frames["participants"], frames["trials"], frames["ratings"]
    bound = largest_block(service.design) / 2
    for _, group in people.groupby("stratum"):
        counts = group["arm"].value_counts().reindex(list(service.design.arms), fill_value=0)
        assert counts.max() - counts.min() <= bound, counts
    assert not rows.duplicated(["participant_id", "trial_index"]).any()
    verify = rows["arm"] == "verify"
    assert rows.loc[verify, ["initial_label", "initial_confidence", "rt_initial_ms"]].notna().all().all()
    assert rows.loc[~verify, ["initial_label", "initial_confidence", "rt_initial_ms"]].isna().all().all()
    assert rows.loc[rows["arm"] == "control", ["ai_label", "ai_confidence"]].isna().all().all()
    records = rows.set_index("record_id")["participant_id"]
    peer = rated[rated["target_kind"] == "peer_record"]
    assert (peer["target_id"].map(records) != peer["rater_id"]).all()  # nobody rates themselves
    complete = people[people["status"] == "completed"]
    per_person = rows.groupby("participant_id").size()
    assert (per_person.reindex(complete["participant_id"]) == service.design.cases.n).all()
    assert not (out / "codebook.md").read_text().count("token_sha256")
    return frames


@pytest.mark.slow  # load test: 200 participants, 8 writers
def test_simulate_200_participants_8_writers_sqlite(in_study_home, tmp_path):
    service = service_for(in_study_home)
    summary = simulate(service, SimulationConfig(participants=200, concurrency=8, seed=1, dropout=0.1))
    assert summary.enrolled == 200 and summary.completed + summary.dropped_out == 200
    frames = check_simulated_study(service, tmp_path / "export")
    assert len(frames["participants"]) == 200
    assert integrity_ok(service.engine)


def test_derived_tables_rebuild_from_the_event_log(in_study_home, tmp_path):
    service = service_for(in_study_home)
    simulate(service, SimulationConfig(participants=20, concurrency=2, seed=2, dropout=0.2, withdraw=0.1))
    before = _export(service, tmp_path / "before")
    internal_before = _internal_state(service)
    rebuild_derived(service.engine, service.design.id)
    after = _export(service, tmp_path / "after")
    for name in COLUMNS:
        pd.testing.assert_frame_equal(before[name], after[name])
    # what the export does not show but the next participant depends on: how often each peer record
    # was assigned (balances who is rated next) and each participant's position and pending answers
    assert len(internal_before["rating_load"]) > 0
    for name, frame in _internal_state(service).items():
        pd.testing.assert_frame_equal(internal_before[name], frame, obj=name)


def _internal_state(service: StudyService) -> dict[str, pd.DataFrame]:
    from xai_lab.store.schema import participants, rating_load

    queries = {
        "rating_load": select(rating_load.c.target_id, rating_load.c.assigned)
        .where(rating_load.c.study_id == service.design.id).order_by(rating_load.c.target_id),
        "participants": select(participants.c.participant_id, participants.c.status, participants.c.step_index,
                               participants.c.step_key, participants.c.attention_failures,
                               participants.c.pending, participants.c.rating_targets)
        .where(participants.c.study_id == service.design.id).order_by(participants.c.participant_id),
    }
    with service.engine.connect() as connection:
        return {name: pd.DataFrame([dict(row) for row in connection.execute(query).mappings()]).astype(str)
                for name, query in queries.items()}


@pytest.mark.slow  # load test: 200 participants, 8 writers
@pytest.mark.postgres
def test_simulate_200_participants_8_writers_postgres(in_study_home, postgres_url, tmp_path):
    service = service_for(in_study_home, url=postgres_url)
    summary = simulate(service, SimulationConfig(participants=200, concurrency=8, seed=1, dropout=0.1))
    assert summary.enrolled == 200
    frames = check_simulated_study(service, tmp_path / "export")
    assert len(frames["participants"]) == 200


def test_export_cli_formats_and_bad_study(in_study_home, tmp_path):
    service = service_for(in_study_home, study_id="exp")
    simulate(service, SimulationConfig(participants=4))
    url = str(service.engine.url)
    result = run_cli("export", "--study", "exp", "--out", str(tmp_path / "p"), "--format", "parquet",
                     "--database", url)
    assert result.code == 0, result.err
    columns = pd.read_parquet(table_file(tmp_path / "p", "trials")).columns
    assert list(columns[:3]) == ["study_id", "participant_id", "arm"]
    missing = run_cli("export", "--study", "nope", "--out", str(tmp_path / "q"), "--database", url)
    assert missing.code == 2 and "no study 'nope'" in missing.err and "exp" in missing.err
    assert run_cli("export", "--study", "exp", "--out", str(tmp_path / "q"), "--format", "xlsx").code == 2


# ---------------------------------------------------------------- properties (Hypothesis)

VIGNETTES = REPO / "studies" / "competence_vignettes.toml"
ROLES = ["nurse", "student", "other"]


@settings(max_examples=60, deadline=None)
@given(secret=st.text(min_size=1, max_size=12), index=st.integers(0, 10_000))
def test_every_block_is_a_balanced_permutation(secret, index):
    design = load_design(VIGNETTES)
    members = block(secret, design.id, "role=nurse", index, design)
    assert len(members) in design.allocation.block_sizes
    assert Counter(members) == Counter({arm: len(members) // 3 for arm in design.arms})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(st.tuples(st.sampled_from(ROLES), st.booleans()), min_size=1, max_size=30))
def test_allocation_stays_balanced_with_dropouts_and_withdrawals(tmp_path_factory, operations):
    design = load_design(VIGNETTES)
    folder = tmp_path_factory.mktemp("alloc")
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{folder}/a.db")
    active: list[str] = []
    for role, withdraw_one in operations:
        token = service.enrol()
        walk_to(service, token, "instructions", role=role)
        active.append(token)
        if withdraw_one and len(active) > 1:
            service.withdraw(active.pop(0))
    bound = largest_block(design) / 2
    with service.engine.connect() as connection:
        consumed = connection.execute(
            select(allocation_slots.c.stratum, allocation_slots.c.arm, allocation_slots.c.participant_id)
            .join(strata, (strata.c.stratum == allocation_slots.c.stratum) & (strata.c.study_id == design.id))
            .where(allocation_slots.c.slot < strata.c.next_slot)).all()
        people = connection.execute(select(participants.c.participant_id, participants.c.arm, participants.c.status,
                                           participants.c.stratum)).all()
    for stratum in {row.stratum for row in consumed}:
        arms = Counter(row.arm for row in consumed if row.stratum == stratum)
        assert max(arms.get(a, 0) for a in design.arms) - min(arms.get(a, 0) for a in design.arms) <= bound
        holders = Counter(row.arm for row in consumed if row.stratum == stratum and row.participant_id)
        active_arms = Counter(p.arm for p in people if p.stratum == stratum and p.status == "in_progress")
        assert holders == active_arms  # each active participant holds exactly one slot of their arm


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.integers(0, 40), arm_seed=st.integers(0, 3))
def test_resume_after_any_step_returns_that_step(in_study_home, steps, arm_seed):
    service = service_for(in_study_home)
    token = service.enrol()
    clinician = SimulatedClinician(SimulationConfig(participants=1, seed=arm_seed), arm_seed, service)
    step = service.resume(token)
    previous = None
    for _ in range(steps):
        if step.status != "in_progress":
            break
        previous = step
        step = service.submit(token, step.key, clinician.answer(step), key())
    fresh = StudyService(open_database(str(service.engine.url)), service.design, service.case_set)
    resumed = fresh.resume(token)
    assert (resumed.key, resumed.done, resumed.status, resumed.content) == (step.key, step.done, step.status,
                                                                             step.content)
    if previous is not None:
        with pytest.raises(NotCurrentStep):
            fresh.submit(token, previous.key, clinician.answer(previous), key())


# ---------------------------------------------------------------- crash safety


@pytest.mark.slow  # fault injection: a simulation killed mid-run and resumed, in subprocesses
def test_kill_9_mid_run_then_rerun_resumes(in_study_home, tmp_path):
    database = f"sqlite:///{tmp_path}/kill.db"
    command = [sys.executable, "-m", "xai_lab.cli", "simulate", "--design", str(in_study_home / "t.toml"),
               "--participants", "300", "--concurrency", "4", "--seed", "5", "--dropout", "0",
               "--database", database]
    process = subprocess.Popen(command, env={**os.environ, "XAI_LAB_HOME": str(in_study_home)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    engine = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if Path(f"{tmp_path}/kill.db").exists():
            engine = engine or open_database(database)
            with engine.connect() as connection:
                if connection.execute(select(func.count()).select_from(trials)).scalar() > 150:
                    break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    engine.dispose()
    engine = open_database(database)  # opens: the WAL is recovered
    assert integrity_ok(engine)
    with engine.connect() as connection:
        before = {row.participant_id: row.step_index for row in connection.execute(
            select(participants.c.participant_id, participants.c.step_index, participants.c.status))
            if row.status == "in_progress"}
        # no partial trials: every verify row has its initial answer, every row its final one
        partial = connection.execute(select(func.count()).select_from(trials).where(
            (trials.c.arm == "verify") & trials.c.initial_label.is_(None))).scalar()
    assert before and partial == 0
    rerun = subprocess.run(command, env={**os.environ, "XAI_LAB_HOME": str(in_study_home)}, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert '"resumed": 0' not in rerun.stdout
    with engine.connect() as connection:
        after = {row.participant_id: (row.step_index, row.status) for row in connection.execute(
            select(participants.c.participant_id, participants.c.step_index, participants.c.status))}
        per_person = Counter(row[0] for row in connection.execute(select(trials.c.participant_id)))
    moved_on = [pid for pid, index in before.items() if after[pid][1] == "completed" and after[pid][0] > index]
    # everyone whose token the killed run had saved finished; at most one per writer was enrolled but
    # killed before its token reached the tokens file, and stays at its first step
    stuck = [pid for pid in before if after[pid][1] != "completed"]
    assert len(moved_on) >= len(before) - 4 and len(stuck) <= 4
    assert all(after[pid][0] == before[pid] for pid in stuck)
    assert all(count == 6 for pid, count in per_person.items() if after[pid][1] == "completed")


# ---------------------------------------------------------------- the main design on real radiographs


@pytest.mark.slow
def test_main_design_prepares_and_runs_on_kermany(lab_home, tmp_path):
    from conftest import shared_file

    shared_file("kermany_cxr_test_224.npz")  # skip cleanly without the shared data
    design_path = REPO / "studies" / "verify_vs_rely.toml"
    result = run_cli("study", "prepare", str(design_path))  # imports the radiographs, trains, precomputes
    assert result.code == 0, result.err
    design = load_design(design_path)
    case_set = load_case_set(design)
    assert len(case_set.cases) == 24 and case_set.class_names == ("normal", "pneumonia")
    assert sum(not case.ai_correct for case in case_set.cases) == 6  # 25% AI-wrong
    service = StudyService.open(design, case_set)
    summary = simulate(service, SimulationConfig(participants=30, concurrency=4, dropout=0.0))
    assert summary.completed == 30
    frames = check_simulated_study(service, tmp_path / "export")
    assert set(frames["trials"]["arm"]) == {"verify", "rely", "control"}
    assert set(frames["ratings"]["target_source"]) <= {"peer", "fallback_vignette"}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_first_raters_get_fallback_vignettes_on_both_databases(in_study_home, request, backend):
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    service = service_for(in_study_home, url=url)
    simulate(service, SimulationConfig(participants=3, dropout=0.0))
    frames = _export(service, in_study_home / f"fallback-{backend}")
    first = frames["ratings"][frames["ratings"]["rater_id"] == frames["participants"]["participant_id"][0]]
    assert set(first["target_source"]) == {"fallback_vignette"} and set(first["target_kind"]) == {"vignette"}
    assert set(frames["ratings"]["target_source"]) == {"fallback_vignette", "peer"}


@pytest.mark.parametrize("activity", [
    "zoomed", {"zoom_actions": -1}, {"zoom_actions": True}, {"pan_actions": 10**9}, {"max_zoom": 50},
    {"max_zoom": "2"}, {"window_changes": 1.5},
])
def test_malformed_viewer_reports_are_refused_and_nothing_is_logged(in_study_home, activity):
    """Any browser (or a hand-written websocket message) can send a viewer report: only bounded numbers pass."""
    service = service_for(in_study_home)
    token = service.enrol()
    step = walk_to(service, token, "trial")
    before = event_count(service)
    with pytest.raises(InvalidAnswer):
        service.record_viewer(token, step.key, activity, key())
    assert event_count(service) == before


def test_viewer_use_is_logged_per_trial_over_both_looks(in_study_home):
    service = service_for(in_study_home)
    step = None
    while step is None or step.content["arm"] != "verify":
        token = service.enrol()
        step = walk_to(service, token, "trial")
    service.record_viewer(token, step.key, {"zoom_actions": 2, "pan_actions": 1, "max_zoom": 1.56}, key())
    service.record_viewer(token, step.key, {"zoom_actions": 3, "pan_actions": 1, "window_changes": 1,
                                            "max_zoom": 1.95}, key())  # the later report of a look replaces
    step = service.submit(token, step.key, {"label": "lesion", "confidence": 40, "slider_moved": True}, key())
    service.record_viewer(token, step.key, {"zoom_actions": 1, "resets": 1, "max_zoom": 1.25}, key())
    service.submit(token, step.key, {"label": "lesion", "confidence": 60, "slider_moved": True}, key())
    with service.engine.connect() as connection:
        row = connection.execute(select(trials)).mappings().one()
    assert (row["viewer_max_zoom"], row["viewer_actions"], row["viewer_window_changes"]) == (1.95, 5, 1)
    with service.engine.connect() as connection:  # the next trial starts from nothing
        pending = connection.execute(select(participants.c.pending)
                                     .where(participants.c.participant_id == row["participant_id"])).scalar()
    assert "viewer" not in (pending or {})


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_version_3_database_gains_the_reading_columns(tmp_path, request, backend):
    """Databases made before looks and the viewer (schema 3) get their columns on first open; rows stay."""
    from sqlalchemy import inspect, text

    from xai_lab.store.schema import schema_version

    url = f"sqlite:///{tmp_path}/v3.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_database(url)
    added = ("overlay_look", "viewer_max_zoom", "viewer_actions", "viewer_window_changes")
    with engine.begin() as connection:  # back to schema 3, as an earlier xai-lab left it
        for name in added:
            connection.execute(text(f"ALTER TABLE trials DROP COLUMN {name}"))
        connection.execute(schema_version.update().values(version=3))
    engine.dispose()
    engine = open_database(url)
    with engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("trials")}
        assert set(added) <= columns and connection.execute(select(schema_version.c.version)).scalar() == SCHEMA_VERSION
    engine.dispose()
