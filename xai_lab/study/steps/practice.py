"""Practice: a trial read like the first arm's trials, on a practice case, not exported as a trial."""

from __future__ import annotations

from typing import Any

from xai_lab.study.cases import StudyCase
from xai_lab.study.flow import StepKey
from xai_lab.study.steps.base import StepContext
from xai_lab.study.steps.trial import Trial


class Practice(Trial):
    kind = "practice"

    def case_and_arm(self, context: StepContext, row: Any, key: StepKey) -> tuple[StudyCase, str]:
        arm = StepKey.parse(row["plan"][2]).name  # the first instructions step names the first arm
        return context.case_set.practice[key.index], arm

    def trial_count(self, context: StepContext) -> int:
        return context.design.cases.practice

    def final_fields(self, context: StepContext, row: Any, key: StepKey, label: str, confidence: int, score: int,
                     rt_ms: int, answered_at: str) -> dict[str, Any]:
        return {"practice": True}
