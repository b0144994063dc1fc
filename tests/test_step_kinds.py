"""A new step kind is one module and its place in the plan: the example of docs/studies.md, run.

The kind below is registered for one test only; the service, event fold, rebuild and simulator
are not touched, yet a simulated study answers it, stores it, and rebuilds it from the event log.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from sqlalchemy import select

from xai_lab.store.schema import questionnaire_answers
from xai_lab.study import flow
from xai_lab.study.design_file import load_design
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.prepare import load_case_set
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig, simulate
from xai_lab.study.steps import STEP_KINDS, StepKind
from xai_lab.study.steps.questionnaire import Questionnaire


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


@pytest.fixture
def with_trust_check(monkeypatch):
    monkeypatch.setitem(STEP_KINDS, "trust_check", TrustCheck())
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
