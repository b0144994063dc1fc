"""Instructions: the arm's text, shown before its first practice or trial; no answer fields."""

from __future__ import annotations

from typing import Any, TypedDict

from xai_lab.study.flow import StepKey
from xai_lab.study.steps.base import StepContext, StepKind


class InstructionsContent(TypedDict):
    text: str
    arm: str


class Instructions(StepKind):
    kind = "instructions"
    key_fields = ("name",)

    def content(self, context: StepContext, row: Any, key: StepKey) -> InstructionsContent:
        return {"text": context.design.instructions[key.name], "arm": key.name}
