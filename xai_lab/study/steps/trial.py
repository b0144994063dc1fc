"""Trial: one case read, in one or two phases by workflow (verify: on one's own, then with the AI;
rely: with the AI from the start; control: no AI; on_demand: the AI when the reader asks), with the
label, a 0-100 slider and response times, under the condition its design gives it (`Condition`).

The first phase's answer waits on the participant (`pending`) until the final answer writes the
trial row; overlay toggles, viewer reports and an on-demand request for the AI wait there too.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, TypedDict

from sqlalchemy import Connection

from xai_lab.store.schema import trials
from xai_lab.study import flow
from xai_lab.study.cases import StudyCase
from xai_lab.study.factors import Condition, resolve
from xai_lab.study.flow import InvalidAnswer, SliderNotMoved, StepKey, check_label
from xai_lab.study.steps.base import StepContext, StepKind

VIEWER_COUNTS = ("zoom_actions", "pan_actions", "window_changes", "resets")
VIEWER_MAX_COUNT = 100_000
VIEWER_MAX_ZOOM = 8.0
# Attention telemetry in the same report: milliseconds away (tab hidden; window without focus, which
# includes hidden time) and the viewport; bounded as any browser (or a hand-made message) can send them.
VIEWER_TELEMETRY = {"hidden_ms": 86_400_000, "blurred_ms": 86_400_000, "viewport_width": 20_000,
                    "viewport_height": 20_000}


class Advice(TypedDict):
    label: str
    source: str  # who the screen says advises ("AI", or a source factor's label)
    display: str  # how the confidence is shown: percent | verbal | none
    confidence: float | None  # None when the design hides it (confidence_display = "none")
    threshold: float | None
    calibrated: bool
    no_finding: bool
    withheld_for_normal: bool
    overlay: dict[str, Any] | None  # method, model, target, look; None when no map is shown


class TrialContent(TypedDict, total=False):
    case_id: str
    trial_index: int
    practice: bool
    n_trials: int
    phase: str  # initial | final
    arm: str
    class_names: list[str]
    show_ai: bool
    dataset: str
    question: str  # confidence | probability
    positive_label: str
    ai: Advice  # only when show_ai (on_demand: once the reader asked)
    levels: dict[str, str]  # designs with [factors]: factor -> level (for simulations and tests; not shown)
    on_demand: bool  # the AI is shown when the reader asks for it
    ai_requested: bool  # on_demand: whether they have asked
    initial: dict[str, Any]  # the first reading (label, confidence, score), on a verify final step


class Trial(StepKind):
    kind = "trial"
    key_fields = ("index", "phase")
    logs = ("overlay_toggle", "viewer", "ai_request")
    is_practice: ClassVar[bool] = False

    def case_and_condition(self, context: StepContext, row: Any, key: StepKey) -> tuple[StudyCase, Condition]:
        """The case this step shows (in the participant's reading order) and the condition it is read under."""
        index, levels = flow.trial_cases(context.design, row["arm"], row["participant_id"])[key.index]
        arm = flow.trial_arms(context.design, row["arm"])[key.index]
        return context.case_set.cases[index], condition_of(context, arm, levels)

    def trial_count(self, context: StepContext) -> int:
        return context.design.cases.n

    def content(self, context: StepContext, row: Any, key: StepKey) -> TrialContent:
        case, condition = self.case_and_condition(context, row, key)
        on_demand = condition.workflow == "on_demand"
        requested = on_demand and "ai_request" in (row["pending"] or {})
        shows_ai = condition.shows_ai and key.phase == "final" and (requested or not on_demand)
        content: TrialContent = {
            "case_id": case.case_id, "trial_index": key.index, "practice": self.is_practice,
            "n_trials": self.trial_count(context), "phase": key.phase, "arm": condition.workflow,
            "class_names": list(context.case_set.class_names), "show_ai": shows_ai,
            "dataset": context.case_set.dataset, "question": context.design.trials.score,
            "positive_label": context.positive_label,
        }
        if condition.levels:
            content["levels"] = condition.level_dict()
        if on_demand:
            content["on_demand"], content["ai_requested"] = True, requested
        if shows_ai:
            content["ai"] = _advice(context, context.case_set.advice(case, condition.advice_model), condition)
        initial = (row["pending"] or {}).get("initial")
        if key.phase == "final" and initial:
            content["initial"] = {"label": initial["label"], "confidence": initial["confidence"],
                                  "score": initial.get("score")}
        return content

    def refused_answers(self, content: dict[str, Any]) -> list[dict[str, Any]]:
        label, question = content["class_names"][0], content.get("question", "confidence")
        return [{"label": "no-such-class", question: 50, "slider_moved": True},
                {"label": label, question: 101, "slider_moved": True},
                {"label": label, question: 50},  # the slider never moved
                {"label": label, "slider_moved": True}]

    def fold_log(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        """An overlay toggle counts up; a viewer report replaces the phase's earlier one (they are cumulative);
        the first request for the AI is kept with its time (asking again changes nothing)."""
        if event["kind"] == "ai_request":
            return pending if "ai_request" in pending else {**pending, "ai_request": event["payload"]}
        if event["kind"] == "overlay_toggle":
            return {**pending, "toggles": pending.get("toggles", 0) + 1}
        payload = event["payload"]
        return {**pending, "viewer": {**pending.get("viewer", {}), payload["phase"]: payload}}

    def check(self, context: StepContext, row: Any, key: StepKey, answer: dict[str, Any], rt_ms: int,
              answered_at: str) -> dict[str, Any]:
        label = check_label(answer, context.case_set.class_names)
        question = context.design.trials.score
        if answer.get("slider_moved") is not True:
            raise SliderNotMoved(f"move the slider to give your {question} before answering "
                                 "(slider_moved must be true)")
        confidence, score = reading_scores(label, check_confidence(answer, question), question,
                                           context.positive_label)
        if key.phase == "initial":
            return {"initial": {"label": label, "confidence": confidence, "score": score, "rt_ms": rt_ms,
                                "started_at": row["shown_at"]}}
        return self.final_fields(context, row, key, label, confidence, score, rt_ms, answered_at)

    def final_fields(self, context: StepContext, row: Any, key: StepKey, label: str, confidence: int, score: int,
                     rt_ms: int, answered_at: str) -> dict[str, Any]:
        """The exported trial row: the reading, what the AI showed, both phases' timings, viewer use."""
        shown, condition = self.case_and_condition(context, row, key)
        case = context.case_set.advice(shown, condition.advice_model)  # the advising model's view of the case
        pending = row["pending"] or {}
        initial = pending.get("initial") or {}
        on_demand = condition.workflow == "on_demand"
        # on demand, the AI was shown only if asked for: a trial read without asking is read without AI
        shows_ai = condition.shows_ai and (not on_demand or "ai_request" in pending)
        overlay_shown = shows_ai and overlay_available(context, condition, case)
        return {"trial": recorded_row({
            "study_id": context.design.id, "participant_id": row["participant_id"], "trial_index": key.index,
            "arm": condition.workflow, "case_id": case.case_id, "true_label": case.true_label,
            "ai_label": case.ai_label if shows_ai else None,
            "ai_confidence": case.ai_confidence if shows_ai else None,
            "ai_correct": case.ai_correct if shows_ai else None,
            "advice_source": case.advice_source if shows_ai else None,
            "explanation_method": context.case_set.explanation_method if overlay_shown else None,
            "overlay_shown": overlay_shown if shows_ai else None,
            "overlay_look": condition.look if overlay_shown else None,
            "initial_label": initial.get("label"), "initial_confidence": initial.get("confidence"),
            "final_label": label, "final_confidence": confidence, "final_correct": label == case.true_label,
            "rt_initial_ms": initial.get("rt_ms"), "rt_final_ms": rt_ms,
            "started_at": initial.get("started_at") or row["shown_at"], "completed_at": answered_at,
            "overlay_toggles": int(pending.get("toggles", 0)),
            **viewer_columns(pending.get("viewer", {})),
            "record_id": "r" + hashlib.sha256(f"{row['participant_id']}:{key.index}".encode()).hexdigest()[:12],
            "initial_score": initial.get("score"), "final_score": score,
            "conditions": condition.level_dict() or None,
            "advice_label": condition.source_label if shows_ai else None,
            "confidence_display": condition.confidence_display if shows_ai else None,
            "ai_requested": ("ai_request" in pending) if on_demand else None,
            "rt_ai_request_ms": (pending.get("ai_request") or {}).get("after_ms"),
            "advice_model": (condition.advice_model or context.case_set.model) if shows_ai else None,
            "map_source": condition.map_source if overlay_shown else None,
        })}

    def apply(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        payload = event["payload"]
        if "initial" in payload:
            pending["initial"] = payload["initial"]
            return {}
        for logged in ("toggles", "viewer", "ai_request"):  # what was logged on this step belongs to the row
            pending.pop(logged, None)
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
        if content["phase"] == "final" and ai.get("label") and ai["label"] != own and \
                rng.random() < reader.reliance_on(content.get("levels") or {}):
            label = ai["label"]
        confidence = int(min(100, max(0, round(rng.gauss(72 if label == own else 58, 15)))))
        if content.get("question") == "probability":  # the same reading, asked as P(positive class)
            positive = content["positive_label"]
            return {"label": label, "probability": confidence if label == positive else 100 - confidence,
                    "slider_moved": True}
        return {"label": label, "confidence": confidence, "slider_moved": True}


def condition_of(context: StepContext, arm: str, levels: dict[str, str]) -> Condition:
    """What a trial read under `arm` (its workflow) and the factor `levels` shows. Without a factor for
    it, the map and the confidence display are the design's per-arm settings, and the map's look is
    the one the case set was prepared with (a case set from before looks keeps its heat map)."""
    design = context.design
    workflow = next((levels[f.name] for f in design.factors if f.sets == "workflow"), arm)
    look = look_of(context, workflow) if design.explanation.overlay.get(workflow) else None
    return resolve(design.factors, levels, workflow, look, design.explanation.confidence_display)


def _advice(context: StepContext, case: StudyCase, condition: Condition) -> Advice:
    display = condition.confidence_display
    return {
        "label": case.ai_label,
        "source": condition.source_label,
        "display": display,
        "confidence": case.ai_confidence if display != "none" else None,
        "threshold": context.case_set.threshold(condition.advice_model),
        "calibrated": context.case_set.calibrated(condition.advice_model) is not False,
        "no_finding": no_finding(context, case),
        "withheld_for_normal": withheld_for_normal(context, case),
        "overlay": {"method": context.case_set.explanation_method,
                    "model": condition.advice_model or context.case_set.model,
                    "target": case.target if case.advice_source == "planted" else None,
                    "look": condition.look, "map_source": condition.map_source}
        if overlay_available(context, condition, case) else None,
    }


def recorded_row(values: dict[str, Any]) -> dict[str, Any]:
    """The trial row as recorded: exactly the columns `store/schema.py` declares for `trials` (which the
    export and codebook also read), so a declared column without a value fails at the first answer,
    in the step-kind tests, rather than exporting as empty."""
    declared = {column.name for column in trials.columns}
    if set(values) != declared:
        raise RuntimeError(f"the trial row lacks {sorted(declared - set(values))} and has undeclared "
                           f"{sorted(set(values) - declared)}; give every column of store/schema.py's trials a value")
    return values


def overlay_available(context: StepContext, condition: Condition, case: StudyCase) -> bool:
    return condition.look is not None and case.ai_confidence >= context.design.explanation.min_confidence \
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
    for name, most in VIEWER_TELEMETRY.items():  # absent from reports of browsers before the telemetry
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
            raise InvalidAnswer(f"viewer {name} must be a whole number from 0 to {most}, got {value!r}")
        activity[name] = value
    return activity


def viewer_columns(by_phase: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A trial's viewer use over both looks (verify) or its one look: the covariate "looked closely"."""
    reports = list(by_phase.values())
    told = [r for r in reports if "hidden_ms" in r]  # telemetry: unknown (empty) when no report carried it
    return {"viewer_max_zoom": max((r["max_zoom"] for r in reports), default=1.0),
            "viewer_actions": sum(r["zoom_actions"] + r["pan_actions"] for r in reports),
            "viewer_window_changes": sum(r["window_changes"] for r in reports),
            "hidden_ms": sum(r["hidden_ms"] for r in told) if told else None,
            "blurred_ms": sum(r.get("blurred_ms", 0) for r in told) if told else None,
            "viewport_width": told[-1].get("viewport_width") if told else None,
            "viewport_height": told[-1].get("viewport_height") if told else None}
