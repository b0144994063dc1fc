"""Debrief: what the study was about, then Finish (which completes participation); no answer fields."""

from __future__ import annotations

from typing import Any, TypedDict

from xai_lab.study.flow import StepKey
from xai_lab.study.steps.base import StepContext, StepKind


class DebriefContent(TypedDict):
    text: str


class Debrief(StepKind):
    kind = "debrief"

    def content(self, context: StepContext, row: Any, key: StepKey) -> DebriefContent:
        return {"text": context.design.debrief_text}
