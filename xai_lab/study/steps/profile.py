"""Profile: a few fixed-choice questions about the participant; answering it allocates them to an arm.

Allocation happens here, in the same transaction as the answer, because the stratum comes from
the profile; the participant's plan (every later step) is fixed at this moment.
"""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Connection, select

from xai_lab.store import repository as repo
from xai_lab.store.schema import studies
from xai_lab.study import allocation, flow
from xai_lab.study.design import StudyDesign
from xai_lab.study.flow import InvalidAnswer, StepKey
from xai_lab.study.steps.base import Event, StepContext, StepKind


class ProfileContent(TypedDict):
    fields: dict[str, list[str]]  # question name -> its options


class Profile(StepKind):
    kind = "profile"
    plan_known = False

    def content(self, context: StepContext, row: Any, key: StepKey) -> ProfileContent:
        return {"fields": {choice.name: list(choice.options) for choice in context.design.profile}}

    def answer(self, context: StepContext, connection: Connection, row: Any, key: StepKey,
               answer: dict[str, Any]) -> Event:
        design = context.design
        profile = check_profile(design, answer)
        stratum = allocation.stratum_of(design, profile)
        secret = connection.execute(select(studies.c.allocation_secret)
                                    .where(studies.c.study_id == design.id)).scalar_one()
        arm, slot = repo.allocate(connection, design.id, stratum, row["participant_id"],
                                  lambda index: allocation.block(secret, design.id, stratum, index, design))
        plan = flow.START_PLAN + flow.build_plan(design, arm)
        return "allocated", {"profile": profile, "stratum": stratum, "arm": arm, "slot": slot, "plan": plan,
                             "case_order": flow.case_order(design, row["participant_id"])}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        return {name: rng.choice(options) for name, options in content["fields"].items()}


def check_profile(design: StudyDesign, answer: dict[str, Any]) -> dict[str, str]:
    profile = {}
    for choice in design.profile:
        value = answer.get(choice.name)
        if value not in choice.options:
            raise InvalidAnswer(f"{choice.name} must be one of: {', '.join(choice.options)}; got {value!r}")
        profile[choice.name] = value
    unknown = sorted(set(answer) - {c.name for c in design.profile})
    if unknown:
        raise InvalidAnswer(f"unknown profile field {unknown[0]!r}; the profile asks for "
                            f"{', '.join(c.name for c in design.profile)} (free text is not stored)")
    return profile
