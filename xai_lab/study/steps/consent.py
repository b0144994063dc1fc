"""Consent: the information sheet, then agree or decline (declining ends participation).

Reconsent: when the study's consent text changed (a new version, `StudyDesign.consent_version`)
after a participant agreed to an earlier one, their next page asks them to agree to the new text
before they go on; their answers so far stay. Not a step of the plan: `StudyService` shows it in
place of the current step until it is answered, and declining it is a withdrawal."""

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
        return "consent", {"agree": agree, "version": context.design.consent_version}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        return {"agree": True}


class ReconsentContent(TypedDict):
    text: str
    withdrawal: str
    version: str  # the version asked for
    previous: str  # the version the participant agreed to


class Reconsent(StepKind):
    kind = "reconsent"
    key_fields = ("name",)  # reconsent:<version>
    in_plan = False

    def content(self, context: StepContext, row: Any, key: StepKey) -> ReconsentContent:
        return {"text": context.design.consent_text, "withdrawal": context.design.withdrawal,
                "version": context.design.consent_version, "previous": row["consent_version"] or ""}

    def answer(self, context: StepContext, connection: Connection, row: Any, key: StepKey,
               answer: dict[str, Any]) -> Event:
        agree = answer.get("agree")
        if not isinstance(agree, bool):
            raise InvalidAnswer("consent needs agree = true or false")
        return "reconsent", {"agree": agree, "version": key.name, "previous": row["consent_version"]}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        return {"agree": True}
