"""The participant lifecycle as data: the ordered steps (the plan) and what each step accepts.

    consent -> profile -> [allocation] -> instructions -> practice -> trials -> peer rating
            -> questionnaire -> debrief -> complete          (withdraw possible at any step)

A plan is a list of step keys fixed when the participant is allocated, e.g.
``["consent", "profile", "instructions:verify", "practice:0:initial", "practice:0:final",
"trial:0:initial", "trial:0:final", ..., "attention:0", ..., "rating:0", "questionnaire:trust",
"debrief", "complete"]``. A participant's state is an index into it, so `resume` is exact and a
step can be answered only while it is current. Pure functions: no database, no UI.

Trial phases by arm (Fogliato et al. 2022's one-step vs two-step reading):
- verify: ``initial`` (image alone) then ``final`` (with the AI's label, confidence, overlay);
- rely: ``final`` only, the AI panel shown from the start;
- control: ``final`` only, no AI.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from xai_lab.errors import XaiLabError
from xai_lab.study.design import StudyDesign, order_arms

START_PLAN = ["consent", "profile"]
ENDS = ("complete", "declined", "withdrawn")


class InvalidAnswer(XaiLabError):
    """An answer that does not fit its step (missing field, out of range, unknown label)."""


@dataclass(frozen=True)
class StepKey:
    kind: str  # consent | profile | instructions | practice | trial | attention | rating | questionnaire | debrief ...
    index: int | None = None
    phase: str | None = None  # initial | final (trial-like steps)
    name: str | None = None  # arm (instructions), instrument id (questionnaire)

    @classmethod
    def parse(cls, key: str) -> StepKey:
        parts = key.split(":")
        kind = parts[0]
        if kind in ("practice", "trial"):
            return cls(kind, int(parts[1]), parts[2])
        if kind in ("attention", "rating"):
            return cls(kind, int(parts[1]))
        if kind in ("instructions", "questionnaire"):
            return cls(kind, name=parts[1])
        return cls(kind)


def trial_arms(design: StudyDesign, assignment: str) -> list[str]:
    """The arm of each main trial: one arm (between), or the order's arms in equal runs (within)."""
    n = design.cases.n
    if design.allocation.kind == "between":
        return [assignment] * n
    order = order_arms(assignment)
    return [order[min(i * len(order) // max(n, 1), len(order) - 1)] for i in range(n)]


def case_order(design: StudyDesign, participant_id: str) -> list[int]:
    """Indices into the case set, shuffled per participant, reproducibly from the study seed."""
    order = list(range(design.cases.n))
    random.Random(f"{design.seed}:order:{participant_id}").shuffle(order)
    return order


def _phases(arm: str) -> list[str]:
    return ["initial", "final"] if arm == "verify" else ["final"]


def build_plan(design: StudyDesign, assignment: str) -> list[str]:
    """Every step after allocation, in order (the part of the plan after consent and profile)."""
    arms = trial_arms(design, assignment)
    first_arm = arms[0] if arms else order_arms(assignment)[0]
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


def check_confidence(answer: dict[str, Any], field: str = "confidence") -> int:
    """The slider's value: `confidence` (in one's own answer) or `probability` (of the positive class)."""
    value = answer.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100 \
            or value != int(value):
        raise InvalidAnswer(f"{field} must be a whole number from 0 to 100, got {value!r}")
    return int(value)


VIEWER_COUNTS = ("zoom_actions", "pan_actions", "window_changes", "resets")
VIEWER_MAX_COUNT = 100_000
VIEWER_MAX_ZOOM = 8.0


def check_viewer_activity(raw: Any) -> dict[str, Any]:
    """What the viewer reports (counts since the step was shown, the highest zoom): bounded
    numbers only, since any browser (or a hand-made websocket message) can send this."""
    if not isinstance(raw, dict):
        raise InvalidAnswer("viewer activity must be an object")
    activity: dict[str, Any] = {}
    for name in VIEWER_COUNTS:
        value = raw.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= VIEWER_MAX_COUNT:
            raise InvalidAnswer(f"viewer {name} must be a whole number from 0 to {VIEWER_MAX_COUNT}, got {value!r}")
        activity[name] = value
    zoom = raw.get("max_zoom", 1)
    if isinstance(zoom, bool) or not isinstance(zoom, int | float) or not 1 <= zoom <= VIEWER_MAX_ZOOM:
        raise InvalidAnswer(f"viewer max_zoom must be a number from 1 to {VIEWER_MAX_ZOOM:g}, got {zoom!r}")
    activity["max_zoom"] = round(float(zoom), 2)
    return activity


def reading_scores(label: str, slider: int, question: str, positive_label: str) -> tuple[int, int]:
    """(confidence in the chosen label, probability of the positive class), both 0-100, from either question.

    Asked for confidence c: the probability of the positive class is c when the positive class was
    chosen, else 100 - c. Asked for the probability p: the confidence in the chosen label is p when
    the positive class was chosen, else 100 - p.
    """
    mirrored = slider if label == positive_label else 100 - slider
    return (slider, mirrored) if question == "confidence" else (mirrored, slider)


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
