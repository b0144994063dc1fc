"""Practice: a trial read like the participant's first trial (its workflow and condition), on a practice
case, not exported as a trial."""

from __future__ import annotations

from typing import Any

from xai_lab.study import flow
from xai_lab.study.cases import StudyCase
from xai_lab.study.factors import Condition
from xai_lab.study.flow import StepKey
from xai_lab.study.steps.base import StepContext
from xai_lab.study.steps.trial import Trial, condition_of


class Practice(Trial):
    kind = "practice"
    is_practice = True

    def case_and_condition(self, context: StepContext, row: Any, key: StepKey) -> tuple[StudyCase, Condition]:
        arm = context.design.first_workflow(row["arm"])  # practice is read like the first trials
        trials = flow.trial_cases(context.design, row["arm"], row["participant_id"])
        levels = trials[0][1] if trials else {}
        return context.case_set.practice[key.index], condition_of(context, arm, levels)

    def trial_count(self, context: StepContext) -> int:
        return context.design.cases.practice

    def final_fields(self, context: StepContext, row: Any, key: StepKey, label: str, confidence: int, score: int,
                     rt_ms: int, answered_at: str) -> dict[str, Any]:
        return {"practice": True}
