"""Debrief: what the study was about, then Finish (which completes participation); no answer fields."""

from __future__ import annotations

from typing import Any

from xai_lab.study.flow import StepKey
from xai_lab.study.steps.base import StepContext, StepKind


class Debrief(StepKind):
    kind = "debrief"

    def content(self, context: StepContext, row: Any, key: StepKey) -> dict[str, Any]:
        return {"text": context.design.debrief_text}
