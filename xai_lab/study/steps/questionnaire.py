"""Questionnaire: one instrument's Likert items (e.g. trust in AI), one row per item in the export."""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Connection

from xai_lab.store.schema import questionnaire_answers
from xai_lab.study.design import Instrument
from xai_lab.study.flow import StepKey, check_scores
from xai_lab.study.steps.base import StepContext, StepKind


class QuestionnaireContent(TypedDict):
    title: str
    items: list[dict[str, Any]]  # the instrument's Likert items


class Questionnaire(StepKind):
    kind = "questionnaire"
    key_fields = ("name",)

    def content(self, context: StepContext, row: Any, key: StepKey) -> QuestionnaireContent:
        instrument = _instrument(context, key)
        return {"title": instrument.title, "items": [vars(item) for item in instrument.items]}

    def check(self, context: StepContext, row: Any, key: StepKey, answer: dict[str, Any], rt_ms: int,
              answered_at: str) -> dict[str, Any]:
        instrument = _instrument(context, key)
        scores = check_scores(answer, instrument.items)
        return {"questionnaire": [{"instrument": instrument.id, "item": item, "response": str(score),
                                   "answered_at": answered_at} for item, score in scores.items()]}

    def apply(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        rows = event["payload"].get("questionnaire")
        if rows:
            connection.execute(questionnaire_answers.insert(), [
                {"study_id": event["study_id"], "participant_id": event["participant_id"], **row} for row in rows])
        return {}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        return {item["id"]: rng.randint(item["scale_min"], item["scale_max"]) for item in content["items"]}


def _instrument(context: StepContext, key: StepKey) -> Instrument:
    return next(i for i in context.design.questionnaires if i.id == key.name)
