"""Consent: the information sheet, then agree or decline (declining ends participation)."""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Connection

from xai_lab.study.flow import InvalidAnswer, StepKey
from xai_lab.study.steps.base import Event, StepContext, StepKind


class ConsentContent(TypedDict):
    text: str
    withdrawal: str  # delete | keep: what withdrawing does to the answers


class Consent(StepKind):
    kind = "consent"
    plan_known = False

    def content(self, context: StepContext, row: Any, key: StepKey) -> ConsentContent:
        return {"text": context.design.consent_text, "withdrawal": context.design.withdrawal}

    def answer(self, context: StepContext, connection: Connection, row: Any, key: StepKey,
               answer: dict[str, Any]) -> Event:
        agree = answer.get("agree")
        if not isinstance(agree, bool):
            raise InvalidAnswer("consent needs agree = true or false")
        return "consent", {"agree": agree}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        return {"agree": True}
