"""Attention check: an image with a prompt naming the answer to choose; a miss is counted, not refused."""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Connection

from xai_lab.store.schema import participants
from xai_lab.study.flow import StepKey, check_label
from xai_lab.study.steps.base import StepContext, StepKind

MISS_RATE = 0.05  # simulated readers who miss the check


class AttentionContent(TypedDict):
    case_id: str
    prompt: str
    class_names: list[str]


class Attention(StepKind):
    kind = "attention"
    key_fields = ("index",)

    def content(self, context: StepContext, row: Any, key: StepKey) -> AttentionContent:
        return {"case_id": context.case_set.attention[key.index].case_id, "prompt": context.design.attention.prompt,
                "class_names": list(context.case_set.class_names)}

    def check(self, context: StepContext, row: Any, key: StepKey, answer: dict[str, Any], rt_ms: int,
              answered_at: str) -> dict[str, Any]:
        label = check_label(answer, context.case_set.class_names)
        return {"attention_failed": label != context.design.attention.answer}

    def apply(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        if event["payload"].get("attention_failed"):
            return {"attention_failures": participants.c.attention_failures + 1}
        return {}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        if rng.random() >= MISS_RATE:
            return {"label": reader.attention_answer}
        return {"label": rng.choice(content["class_names"])}
