"""Step kinds, whole: every registered kind walked through simulated answers, refusals and a rebuild;
its key shape and its screen checked; and a new kind (the example of docs/studies.md) that touches only
its module, its screen and the plan.

The example kind is registered for one test only; the service, event fold, rebuild and simulator
are not touched, yet a simulated study answers it, stores it, and rebuilds it from the event log.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from sqlalchemy import select

from xai_lab.store.schema import DERIVED, participants, questionnaire_answers
from xai_lab.study import flow
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig, simulate
from xai_lab.study.steps import STEP_KINDS, StepKind, UnknownStepKind, parse_step_key
from xai_lab.study.steps.questionnaire import Questionnaire
from xai_lab.ui.screens import SCREENS, MissingScreen, Screen, check_screens


class TrustCheck(StepKind):
    kind = "trust_check"

    def content(self, context, row, key):
        return {"question": "Would you use this AI in your work?", "options": ["yes", "no", "unsure"]}

    def check(self, context, row, key, answer, rt_ms, answered_at):
        if answer.get("choice") not in ("yes", "no", "unsure"):
            raise InvalidAnswer("choice must be yes, no or unsure")
        return {"questionnaire": [{"instrument": "trust_check", "item": "would_use", "response": answer["choice"],
                                   "answered_at": answered_at}]}

    def apply(self, connection, event, pending):
        return Questionnaire().apply(connection, event, pending)

    def simulated_answer(self, reader, rng, content):
        return {"choice": rng.choice(content["options"])}


def trust_check_screen(served, token, step):  # the example's screen; drawn in docs/studies.md
    raise AssertionError("not drawn in these tests")


@pytest.fixture
def with_trust_check(monkeypatch):
    monkeypatch.setitem(STEP_KINDS, "trust_check", TrustCheck())
    monkeypatch.setitem(SCREENS, "trust_check", Screen(trust_check_screen))
    plan = flow.build_plan
    monkeypatch.setattr(flow, "build_plan", lambda design, arm: plan(design, arm)[:-2] + ["trust_check"]
                        + plan(design, arm)[-2:])


def _answers(service: StudyService) -> pd.DataFrame:
    query = select(questionnaire_answers.c.participant_id, questionnaire_answers.c.response).where(
        questionnaire_answers.c.instrument == "trust_check").order_by(questionnaire_answers.c.participant_id)
    with service.engine.connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


def test_a_new_step_kind_runs_through_the_whole_lifecycle(study_home, with_trust_check):
    design = load_design(study_home / "t.toml")
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{study_home}/{uuid.uuid4().hex}.db")
    summary = simulate(service, SimulationConfig(participants=6, seed=3, dropout=0.0))
    assert summary.completed == 6
    answers = _answers(service)
    assert len(answers) == 6 and set(answers["response"]) <= {"yes", "no", "unsure"}
    rebuild_derived(service.engine, design.id)
    pd.testing.assert_frame_equal(_answers(service), answers)


def test_a_new_step_kind_refuses_an_answer_that_does_not_fit(study_home, with_trust_check):
    design = load_design(study_home / "t.toml")
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{study_home}/{uuid.uuid4().hex}.db")
    token = service.enrol()
    step = service.resume(token)
    while step.kind != "trust_check":  # answer everything before it as a simulated reader would
        step = service.submit(token, step.key, SimulatedClinician(SimulationConfig(participants=1), 0, service)
                              .answer(step), uuid.uuid4().hex)
    assert step.content["options"] == ["yes", "no", "unsure"]
    with pytest.raises(InvalidAnswer, match="choice must be yes, no or unsure"):
        service.submit(token, step.key, {"choice": "maybe"}, uuid.uuid4().hex)
    assert service.submit(token, step.key, {"choice": "yes"}, uuid.uuid4().hex).kind == "debrief"


# ------------------------------------------------------------------ every registered kind


def _derived(service: StudyService) -> dict[str, pd.DataFrame]:
    with service.engine.connect() as connection:
        frames = {table.name: pd.DataFrame(connection.execute(select(table)).mappings().all())
                  for table in (participants, *DERIVED)}
    return {name: frame.sort_values(list(frame.columns)[:3]).reset_index(drop=True) if len(frame) else frame
            for name, frame in frames.items()}


@pytest.fixture
def every_kind_in_the_plan(monkeypatch):
    """Kinds the test design does not reach (one behind a design setting, say) join its plan before the
    debrief, so every registered kind is walked whatever the shipped designs use."""
    plan = flow.build_plan

    def with_every_kind(design, arm):
        steps = plan(design, arm)
        reached = {key.split(":")[0] for key in steps} | {"consent", "profile"}
        extra = [kind for kind, step_kind in STEP_KINDS.items()
                 if kind not in reached and not step_kind.key_fields and step_kind.in_plan]
        return steps[:-2] + extra + steps[-2:]

    monkeypatch.setattr(flow, "build_plan", with_every_kind)


def test_every_registered_kind_answers_refuses_and_rebuilds(study_home, every_kind_in_the_plan):
    """Participants walk a design that uses every kind; at every step each answer the kind declares it
    must refuse is refused (and nothing is recorded), then the simulated answer goes through. A rebuild
    from the event log gives the same derived tables."""
    design = load_design(study_home / "t.toml")
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{study_home}/{uuid.uuid4().hex}.db")
    seen: set[str] = set()
    for number in range(4):  # four participants: three arms and a peer-rated record at least
        token = service.enrol()
        clinician = SimulatedClinician(SimulationConfig(participants=4, seed=9), number, service)
        step = service.resume(token)
        while step.status == "in_progress":
            seen.add(step.kind)
            assert parse_step_key(step.key).kind == step.kind
            for refused in STEP_KINDS[step.kind].refused_answers(step.content):
                with pytest.raises(InvalidAnswer):
                    service.submit(token, step.key, refused, uuid.uuid4().hex)
                assert service.resume(token).key == step.key, f"{step.kind} moved on after a refused answer"
            step = service.submit(token, step.key, clinician.answer(step), uuid.uuid4().hex)
        assert step.status == "completed"
    # kinds shown in place of a step (reconsent) are walked by their own tests (tests/test_consent_versions.py)
    planned = {kind for kind, step_kind in STEP_KINDS.items() if step_kind.in_plan}
    assert seen == planned, f"the walk never reached {sorted(planned - seen)}"
    before = _derived(service)
    rebuild_derived(service.engine, design.id)
    after = _derived(service)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, check_like=True, obj=name)


@pytest.mark.parametrize("kind", sorted(STEP_KINDS))
def test_each_kind_reads_back_the_keys_the_plan_writes(kind):
    step_kind = STEP_KINDS[kind]
    values = {"index": "3", "phase": "final", "name": "verify"}
    key = ":".join((kind, *(values[field] for field in step_kind.key_fields)))
    parsed = parse_step_key(key)
    assert parsed.kind == kind
    for field in step_kind.key_fields:
        assert str(getattr(parsed, field)) == values[field]
    with pytest.raises(ValueError, match="has the shape"):
        parse_step_key(key + ":extra")


def test_a_step_key_of_an_unknown_kind_is_one_clear_error():
    with pytest.raises(UnknownStepKind, match="names no known step kind"):
        parse_step_key("no_such_kind:2")


def test_every_kind_has_a_screen_and_a_missing_screen_stops_the_pages():
    check_screens()  # the shipped registries agree (also run when the screens load)
    for kind in STEP_KINDS:
        without = {name: screen for name, screen in SCREENS.items() if name != kind}
        with pytest.raises(MissingScreen, match=f"{kind}.* no screen"):
            check_screens(without)
    with pytest.raises(MissingScreen, match="which no step kind declares"):
        check_screens({**SCREENS, "no_such_kind": Screen(trust_check_screen)})


def test_serve_refuses_to_start_when_a_kind_has_no_screen(monkeypatch, tmp_path):
    from argparse import Namespace

    from xai_lab.cli.serve import serve

    monkeypatch.setitem(STEP_KINDS, "trust_check", TrustCheck())
    with pytest.raises(MissingScreen, match="trust_check"):  # before the port, the database or any design
        serve(Namespace(port=1, address="127.0.0.1", database=f"sqlite:///{tmp_path}/x.db", base_url=None), [],
              start=False)
    assert not (tmp_path / "x.db").exists()
