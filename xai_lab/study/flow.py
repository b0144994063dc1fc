"""The participant lifecycle as data: the ordered steps (the plan) and what each step accepts.

    consent -> profile -> [allocation] -> instructions -> practice -> trials -> peer rating
            -> questionnaire -> debrief -> complete          (withdraw possible at any step)

What each kind shows and accepts lives in its own module (`xai_lab.study.steps`).

A plan is a list of step keys fixed when the participant is allocated, e.g.
``["consent", "profile", "instructions:verify", "practice:0:initial", "practice:0:final",
"trial:0:initial", "trial:0:final", ..., "attention:0", ..., "rating:0", "questionnaire:trust",
"debrief", "complete"]``. A participant's state is an index into it, so `resume` is exact and a
step can be answered only while it is current. Pure functions: no database, no UI.

Trial phases by arm (Fogliato et al. 2022's one-step vs two-step reading):
- verify: ``initial`` (image alone) then ``final`` (with the AI's label, confidence, overlay);
- rely: ``final`` only, the AI panel shown from the start;
- control: ``final`` only, no AI;
- on_demand (designs with [factors]): ``final`` only, the AI panel shown when the reader asks for it
  (Buçinca et al. 2021's cognitive forcing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from xai_lab.errors import XaiLabError
from xai_lab.study.design import StudyDesign, order_arms
from xai_lab.study.factors import trial_schedule

START_PLAN = ["consent", "profile"]
ENDS = ("complete", "declined", "withdrawn")


class InvalidAnswer(XaiLabError):
    """An answer that does not fit its step (missing field, out of range, unknown label)."""


class SliderNotMoved(InvalidAnswer):
    """A reading whose 0-100 slider the reader never moved: its starting value is not an answer, and
    accepting it would record the slider's default as a confidence (anchoring every untouched trial)."""


@dataclass(frozen=True)
class StepKey:
    """A step key read by its kind's declared shape (`StepKind.key_fields`): ``trial:3:final`` is
    kind trial, index 3, phase final. `xai_lab.study.steps.parse_step_key` builds these."""

    kind: str
    index: int | None = None
    phase: str | None = None  # initial | final (trial-like steps)
    name: str | None = None  # arm (instructions), instrument id (questionnaire)


def trial_arms(design: StudyDesign, assignment: str) -> list[str]:
    """The arm of each main trial: one arm (between), or the order's arms in equal runs (within)."""
    n = design.cases.n
    if design.factors:  # workflow varies between participants only: one for all their trials
        return [design.first_workflow(assignment)] * n
    if design.allocation.kind == "between":
        return [assignment] * n
    order = order_arms(assignment)
    return [order[min(i * len(order) // max(n, 1), len(order) - 1)] for i in range(n)]


def case_order(design: StudyDesign, participant_id: str) -> list[int]:
    """Indices into the case set, shuffled per participant, reproducibly from the study seed."""
    order = list(range(design.cases.n))
    random.Random(f"{design.seed}:order:{participant_id}").shuffle(order)
    return order


def trial_cases(design: StudyDesign, assignment: str, participant_id: str) -> list[tuple[int, dict[str, str]]]:
    """(index into the case set, factor -> level) of each main trial, in reading order; no levels for
    designs without factors."""
    shuffled = case_order(design, participant_id)
    if not design.factors:
        return [(j, {}) for j in shuffled]
    return trial_schedule(design.factors, assignment, design.cases.n, shuffled)


def _phases(arm: str) -> list[str]:
    return ["initial", "final"] if arm == "verify" else ["final"]


def build_plan(design: StudyDesign, assignment: str) -> list[str]:
    """Every step after allocation, in order (the part of the plan after consent and profile)."""
    arms = trial_arms(design, assignment)
    first_arm = arms[0] if arms else design.first_workflow(assignment)
    plan = [f"instructions:{first_arm}"]
    plan += [f"practice:{i}:{phase}" for i in range(design.cases.practice) for phase in _phases(first_arm)]
    checks_after = _attention_positions(design)
    for i, arm in enumerate(arms):
        if i > 0 and arm != arms[i - 1]:
            plan.append(f"instructions:{arm}")
        plan += [f"trial:{i}:{phase}" for phase in _phases(arm)]
        plan += [f"attention:{j}" for j, after in enumerate(checks_after) if after == i]
    if design.peer_rating.kind != "none":
        plan += [f"rating:{i}" for i in range(design.peer_rating.per_rater)]
    plan += [f"questionnaire:{instrument.id}" for instrument in design.questionnaires]
    return plan + ["debrief", "complete"]


def _attention_positions(design: StudyDesign) -> list[int]:
    count, n = design.attention.count, design.cases.n
    return [max(0, (j + 1) * n // (count + 1) - 1) for j in range(count)]


def progress(plan: list[str], index: int) -> tuple[int, int]:
    """(done, total) counting answerable steps, for a progress bar."""
    total = len([key for key in plan if key not in ENDS])
    return min(index, total), total


# ------------------------------------------------------------------ answers


def check_label(answer: dict[str, Any], class_names: tuple[str, ...], key: str = "label") -> str:
    label = answer.get(key)
    if label not in class_names:
        raise InvalidAnswer(f"{key} must be one of {', '.join(class_names)}, got {label!r}")
    return label


def check_scores(answer: dict[str, Any], items: tuple) -> dict[str, int]:
    """One integer per Likert item, inside that item's scale; no other keys."""
    unknown = sorted(set(answer) - {item.id for item in items})
    if unknown:
        raise InvalidAnswer(f"unknown item {unknown[0]!r}; answer the items {', '.join(i.id for i in items)}")
    scores = {}
    for item in items:
        value = answer.get(item.id)
        if isinstance(value, bool) or not isinstance(value, int) or not item.scale_min <= value <= item.scale_max:
            raise InvalidAnswer(f"{item.id} must be a whole number from {item.scale_min} to {item.scale_max}, "
                                f"got {value!r}")
        scores[item.id] = value
    return scores
