"""Trial: one case read, in one or two phases by arm (verify: on one's own, then with the AI; rely:
with the AI from the start; control: no AI), with the label, a 0-100 slider and response times.

The first phase's answer waits on the participant (`pending`) until the final answer writes the
trial row; overlay toggles and viewer reports on the step wait there too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection

from xai_lab.store.schema import trials
from xai_lab.study import flow
from xai_lab.study.cases import StudyCase
from xai_lab.study.flow import InvalidAnswer, StepKey, check_label
from xai_lab.study.steps.base import StepContext, StepKind

VIEWER_COUNTS = ("zoom_actions", "pan_actions", "window_changes", "resets")
VIEWER_MAX_COUNT = 100_000
VIEWER_MAX_ZOOM = 8.0


class Trial(StepKind):
    kind = "trial"

    def case_and_arm(self, context: StepContext, row: Any, key: StepKey) -> tuple[StudyCase, str]:
        """The case this step shows (in the participant's shuffled order) and the arm it is read under."""
        order = flow.case_order(context.design, row["participant_id"])
        arm = flow.trial_arms(context.design, row["arm"])[key.index]
        return context.case_set.cases[order[key.index]], arm

    def trial_count(self, context: StepContext) -> int:
        return context.design.cases.n

    def content(self, context: StepContext, row: Any, key: StepKey) -> dict[str, Any]:
        case, arm = self.case_and_arm(context, row, key)
        shows_ai = arm != "control" and key.phase == "final"
        content: dict[str, Any] = {
            "case_id": case.case_id, "trial_index": key.index, "practice": self.kind == "practice",
            "n_trials": self.trial_count(context), "phase": key.phase, "arm": arm,
            "class_names": list(context.case_set.class_names), "show_ai": shows_ai,
            "dataset": context.case_set.dataset, "question": context.design.trials.score,
            "positive_label": context.positive_label,
        }
        if shows_ai:
            content["ai"] = _advice(context, case, arm)
        initial = (row["pending"] or {}).get("initial")
        if key.phase == "final" and initial:
            content["initial"] = {"label": initial["label"], "confidence": initial["confidence"],
                                  "score": initial.get("score")}
        return content

    def check(self, context: StepContext, row: Any, key: StepKey, answer: dict[str, Any], rt_ms: int,
              answered_at: str) -> dict[str, Any]:
        label = check_label(answer, context.case_set.class_names)
        question = context.design.trials.score
        confidence, score = reading_scores(label, check_confidence(answer, question), question,
                                           context.positive_label)
        if key.phase == "initial":
            return {"initial": {"label": label, "confidence": confidence, "score": score, "rt_ms": rt_ms,
                                "started_at": row["shown_at"]}}
        return self.final_fields(context, row, key, label, confidence, score, rt_ms, answered_at)

    def final_fields(self, context: StepContext, row: Any, key: StepKey, label: str, confidence: int, score: int,
                     rt_ms: int, answered_at: str) -> dict[str, Any]:
        """The exported trial row: the reading, what the AI showed, both phases' timings, viewer use."""
        case, arm = self.case_and_arm(context, row, key)
        pending = row["pending"] or {}
        initial = pending.get("initial") or {}
        shows_ai = arm != "control"
        overlay_shown = shows_ai and overlay_available(context, arm, case)
        return {"trial": {
            "study_id": context.design.id, "participant_id": row["participant_id"], "trial_index": key.index,
            "arm": arm, "case_id": case.case_id, "true_label": case.true_label,
            "ai_label": case.ai_label if shows_ai else None,
            "ai_confidence": case.ai_confidence if shows_ai else None,
            "ai_correct": case.ai_correct if shows_ai else None,
            "advice_source": case.advice_source if shows_ai else None,
            "explanation_method": context.case_set.explanation_method if overlay_shown else None,
            "overlay_shown": overlay_shown if shows_ai else None,
            "overlay_look": look_of(context, arm) if overlay_shown else None,
            "initial_label": initial.get("label"), "initial_confidence": initial.get("confidence"),
            "final_label": label, "final_confidence": confidence, "final_correct": label == case.true_label,
            "rt_initial_ms": initial.get("rt_ms"), "rt_final_ms": rt_ms,
            "started_at": initial.get("started_at") or row["shown_at"], "completed_at": answered_at,
            "overlay_toggles": int(pending.get("toggles", 0)),
            **viewer_columns(pending.get("viewer", {})),
            "record_id": "r" + hashlib.sha256(f"{row['participant_id']}:{key.index}".encode()).hexdigest()[:12],
            "initial_score": initial.get("score"), "final_score": score,
        }}

    def apply(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        payload = event["payload"]
        if "initial" in payload:
            pending["initial"] = payload["initial"]
            return {}
        pending.pop("toggles", None)  # what was logged on this step belongs to the row just written
        pending.pop("viewer", None)
        if "trial" in payload:
            connection.execute(trials.insert().values(**payload["trial"]))
        return {}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        """A reader of the given skill who takes the AI's differing advice with probability `reliance`."""
        classes = content["class_names"]
        truth = reader.truth[content["case_id"]]
        own = (content.get("initial") or {}).get("label")
        if own is None:  # an unaided read: right with probability `skill`
            own = truth if rng.random() < reader.skill else rng.choice([c for c in classes if c != truth])
        label = own
        ai = content.get("ai") or {}
        if content["phase"] == "final" and ai.get("label") and ai["label"] != own and rng.random() < reader.reliance:
            label = ai["label"]
        confidence = int(min(100, max(0, round(rng.gauss(72 if label == own else 58, 15)))))
        if content.get("question") == "probability":  # the same reading, asked as P(positive class)
            positive = content["positive_label"]
            return {"label": label, "probability": confidence if label == positive else 100 - confidence}
        return {"label": label, "confidence": confidence}


def _advice(context: StepContext, case: StudyCase, arm: str) -> dict[str, Any]:
    display = context.design.explanation.confidence_display
    return {
        "label": case.ai_label,
        "confidence": case.ai_confidence if display == "percent" else None,
        "threshold": context.case_set.decision_threshold,
        "calibrated": context.case_set.calibration_claim is not False,
        "no_finding": no_finding(context, case),
        "withheld_for_normal": withheld_for_normal(context, case),
        "overlay": {"method": context.case_set.explanation_method, "model": context.case_set.model,
                    "target": case.target if case.advice_source == "planted" else None,
                    "look": look_of(context, arm)}
        if overlay_available(context, arm, case) else None,
    }


def overlay_available(context: StepContext, arm: str, case: StudyCase) -> bool:
    explanation = context.design.explanation
    return bool(explanation.overlay.get(arm)) and case.ai_confidence >= explanation.min_confidence \
        and not withheld_for_normal(context, case)


def withheld_for_normal(context: StepContext, case: StudyCase) -> bool:
    return no_finding(context, case) and context.case_set.normal_advice == "withhold"


def no_finding(context: StepContext, case: StudyCase) -> bool:
    """The AI suggests the no-finding class (the first of two, e.g. normal)."""
    names = context.case_set.class_names
    return len(names) == 2 and case.ai_label == names[0]


def look_of(context: StepContext, arm: str) -> str:
    # a case set prepared before looks existed keeps the full heat map its participants saw
    return (context.case_set.overlay_looks or {}).get(arm, "heatmap")


def check_confidence(answer: dict[str, Any], field: str = "confidence") -> int:
    """The slider's value: `confidence` (in one's own answer) or `probability` (of the positive class)."""
    value = answer.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100 \
            or value != int(value):
        raise InvalidAnswer(f"{field} must be a whole number from 0 to 100, got {value!r}")
    return int(value)


def reading_scores(label: str, slider: int, question: str, positive_label: str) -> tuple[int, int]:
    """(confidence in the chosen label, probability of the positive class), both 0-100, from either question.

    Asked for confidence c: the probability of the positive class is c when the positive class was
    chosen, else 100 - c. Asked for the probability p: the confidence in the chosen label is p when
    the positive class was chosen, else 100 - p.
    """
    mirrored = slider if label == positive_label else 100 - slider
    return (slider, mirrored) if question == "confidence" else (mirrored, slider)


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


def viewer_columns(by_phase: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A trial's viewer use over both looks (verify) or its one look: the covariate "looked closely"."""
    reports = list(by_phase.values())
    return {"viewer_max_zoom": max((r["max_zoom"] for r in reports), default=1.0),
            "viewer_actions": sum(r["zoom_actions"] + r["pan_actions"] for r in reports),
            "viewer_window_changes": sum(r["window_changes"] for r in reports)}
