"""`StudyService`: the one API the study UI (and the simulator) calls. No Streamlit here.

    service = StudyService.open(design, case_set)        # registers the study in the database
    token = service.enrol()                              # opaque, 192 bits; only its hash is stored
    step = service.resume(token)                         # exactly the current step, from the database
    step = service.submit(token, step.key, {"label": "lesion", "confidence": 70}, idempotency_key)
    service.withdraw(token)

All state lives in the database, so a reload, a second tab or a new server process resumes
at the same step. Every change is an event appended to ``events`` in the same transaction as
its derived rows (`apply_event`), so a killed process leaves either the whole submit or none
of it. A submit names the step it answers and carries an idempotency key: an answer to a step
that is not current, or a key already used, is refused with nothing written. Response times
are measured on the server with the monotonic clock, from the moment a step is first shown
(`resume`) to the moment its answer arrives.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update

from xai_lab.errors import XaiLabError
from xai_lab.store import repository as repo
from xai_lab.store.database import open_database
from xai_lab.store.schema import (
    DERIVED,
    events,
    participants,
    questionnaire_answers,
    ratings,
    studies,
    trials,
)
from xai_lab.study import allocation, flow
from xai_lab.study.cases import CaseSet, StudyCase
from xai_lab.study.design import StudyDesign
from xai_lab.study.flow import InvalidAnswer, StepKey
from xai_lab.study.peer import choose_targets

TOKEN_BYTES = 24  # 192 bits, above the 128 the design requires
ENROLMENT_ROUTES = ("code", "invite", "simulation", "api")


class StudyError(XaiLabError):
    """A request the study cannot accept; nothing was recorded."""


class UnknownToken(StudyError):
    pass


class NotCurrentStep(StudyError):
    pass


class EnrolmentClosed(StudyError):
    """The shared enrolment code has enrolled as many participants as the design allows."""


class ReplayedSubmit(StudyError):
    """The same submit arrived again (double click, retry): already recorded, nothing changed."""


@dataclass(frozen=True)
class Step:
    key: str
    kind: str
    status: str
    done: int
    total: int
    content: dict[str, Any] = field(default_factory=dict)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clock_id() -> str:
    # monotonic_ns readings compare only on the same boot of the same machine
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


CLOCK_ID = _clock_id()


class StudyService:
    def __init__(self, engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
        self.engine, self.design, self.case_set = engine, design, case_set

    # ------------------------------------------------------------ setup

    @classmethod
    def open(cls, design: StudyDesign, case_set: CaseSet, url: str | None = None,
             engine: Engine | None = None) -> StudyService:
        engine = engine or open_database(url)
        register_study(engine, design, case_set)
        return cls(engine, design, case_set)

    # ------------------------------------------------------------ lifecycle

    def enrol(self, pilot: bool = False, via: str = "api") -> str:
        """A new participant; returns their token (the only copy). `via` says how they arrived:
        ``code`` (the shared enrolment link, capped by ``enrolment.max_enrolments``), ``invite``,
        ``simulation`` or ``api``."""
        if via not in ENROLMENT_ROUTES:
            raise StudyError(f"unknown enrolment route {via!r}; use one of {', '.join(ENROLMENT_ROUTES)}")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        participant_id = "p" + secrets.token_hex(6)
        with self.engine.begin() as connection:
            if via == "code":
                self._check_code_capacity(connection)
            event = repo.append_event(connection, self.design.id, participant_id, "enrolled",
                                      {"token_sha256": hash_token(token), "pilot": pilot, "via": via})
            apply_event(connection, event)
        return token

    def knows(self, token: str) -> bool:
        """Whether this token belongs to a participant of this study (read-only: nothing is shown or logged)."""
        if not isinstance(token, str) or not token or len(token) > 256:
            return False
        with self.engine.connect() as connection:
            study = connection.execute(select(participants.c.study_id)
                                       .where(participants.c.token_sha256 == hash_token(token))).scalar()
        return study == self.design.id

    def _check_code_capacity(self, connection: Connection) -> None:
        cap = self.design.enrolment.max_enrolments
        if cap is None:
            return
        # Lock the study's row: concurrent enrolments on PostgreSQL count one at a time (SQLite's
        # BEGIN IMMEDIATE already serialises them), so the cap cannot be overshot.
        connection.execute(select(studies.c.study_id).where(studies.c.study_id == self.design.id).with_for_update())
        enrolled = connection.execute(select(func.count()).select_from(participants).where(
            participants.c.study_id == self.design.id, participants.c.enrolled_via == "code")).scalar_one()
        if enrolled >= cap:
            raise EnrolmentClosed("this study has all the participants it needs through this link, so it is closed "
                                  "to new participants; thank you for your interest. If you were sent a personal "
                                  "link, open that one instead")

    def resume(self, token: str) -> Step:
        with self.engine.begin() as connection:
            return self._present(connection, token)

    def submit(self, token: str, step_key: str, answer: dict[str, Any], idempotency_key: str) -> Step:
        if not isinstance(answer, dict):
            raise InvalidAnswer(f"an answer must be a mapping of fields, got {type(answer).__name__}")
        if not idempotency_key or len(idempotency_key) > 128:
            raise StudyError("every submit needs an idempotency key of 1-128 characters (e.g. a uuid4 per click)")
        with self.engine.begin() as connection:
            row = self._participant(connection, token)
            self._check_current(connection, row, step_key, idempotency_key)
            kind, payload = self._answer(connection, row, StepKey.parse(step_key), answer)
            event = repo.append_event(connection, self.design.id, row["participant_id"], kind, payload,
                                      step_key=step_key, idempotency_key=idempotency_key)
            apply_event(connection, event)
            return self._present(connection, token)  # the next step, shown in the same transaction

    def record_toggle(self, token: str, step_key: str, visible: bool, idempotency_key: str) -> None:
        """Log that the participant showed or hid the overlay on the current trial step."""
        self._log_on_trial(token, step_key, "overlay_toggle", {"visible": bool(visible)}, idempotency_key)

    def record_viewer(self, token: str, step_key: str, activity: dict[str, Any], idempotency_key: str) -> None:
        """Log how the participant used the viewer on the current trial step (zoom, pan, contrast)."""
        # the key's last part is the phase of a trial key; any other key is refused before anything is written
        payload = {"phase": step_key.rsplit(":", 1)[-1], **flow.check_viewer_activity(activity)}
        self._log_on_trial(token, step_key, "viewer", payload, idempotency_key)

    def _log_on_trial(self, token: str, step_key: str, kind: str, payload: dict[str, Any],
                      idempotency_key: str) -> None:
        """Append an event about how the current trial step is being read (not an answer)."""
        with self.engine.begin() as connection:
            row = self._participant(connection, token)
            self._check_current(connection, row, step_key, idempotency_key)
            if StepKey.parse(step_key).kind not in ("trial", "practice"):
                raise NotCurrentStep(f"{kind} is logged on trial steps only, not {step_key!r}")
            event = repo.append_event(connection, self.design.id, row["participant_id"], kind, payload,
                                      step_key=step_key, idempotency_key=idempotency_key)
            apply_event(connection, event)

    def withdraw(self, token: str) -> Step:
        """End participation now; the data are deleted or kept as the design's consent promised."""
        with self.engine.begin() as connection:
            row = self._participant(connection, token)
            if row["status"] != "in_progress" and row["status"] != "completed":
                raise NotCurrentStep(f"participation has already ended ({row['status']}); nothing to withdraw")
            participant_id = row["participant_id"]
            delete_data = self.design.withdrawal == "delete"
            if delete_data:
                _delete_participant_data(connection, participant_id)
            repo.release_slot(connection, participant_id)
            # completed_at travels in the tombstone: with deletion, the events that completed the
            # participation are gone, and a rebuild must still know they had finished.
            event = repo.append_event(connection, self.design.id, participant_id, "withdrawn",
                                      {"deleted": delete_data, "arm": row["arm"], "stratum": row["stratum"],
                                       "completed_at": row["completed_at"]})
            apply_event(connection, event)
            return self._step(self._participant(connection, token))

    # ------------------------------------------------------------ internals

    def _participant(self, connection: Connection, token: str):
        if not isinstance(token, str) or not token:
            raise UnknownToken("no participation token given; open the link from your invitation")
        row = repo.lock_participant(connection, hash_token(token))
        if row is None or row["study_id"] != self.design.id:
            raise UnknownToken("this participation link is not recognised; open the link from your invitation "
                               "again, or ask the study team for a new one")
        return row

    def _check_current(self, connection: Connection, row, step_key: str, idempotency_key: str) -> None:
        if repo.has_event(connection, row["participant_id"], idempotency_key):
            raise ReplayedSubmit("this answer was already recorded (same idempotency key); nothing changed")
        if row["status"] != "in_progress":
            raise NotCurrentStep(f"participation has ended ({row['status']}); no further answers are accepted")
        if step_key != row["step_key"]:
            raise NotCurrentStep(f"step {step_key!r} is not the current step ({row['step_key']!r}); "
                                 "reload to continue where you are")
        if row["shown_ns"] is None:
            raise NotCurrentStep(f"step {step_key!r} has not been shown yet; call resume() before submitting")

    def _answer(self, connection: Connection, row, key: StepKey, answer: dict[str, Any]) -> tuple[str, dict]:
        if key.kind == "consent":
            agree = answer.get("agree")
            if not isinstance(agree, bool):
                raise InvalidAnswer("consent needs agree = true or false")
            return "consent", {"agree": agree}
        if key.kind == "profile":
            return "allocated", self._allocation(connection, row, flow.check_profile(self.design, answer))
        rt_ms, answered_at = _elapsed_ms(row), repo.now_iso()
        payload: dict[str, Any] = {"rt_ms": rt_ms, "at": answered_at}
        if key.kind in ("instructions", "debrief"):
            _no_fields(answer)
        elif key.kind in ("trial", "practice"):
            payload.update(self._trial_answer(row, key, answer, rt_ms, answered_at))
        elif key.kind == "attention":
            label = flow.check_label(answer, self.case_set.class_names)
            payload["attention_failed"] = label != self.design.attention.answer
        elif key.kind == "rating":
            payload["ratings"] = self._rating_rows(row, key.index, answer, answered_at)
        elif key.kind == "questionnaire":
            instrument = next(i for i in self.design.questionnaires if i.id == key.name)
            scores = flow.check_scores(answer, instrument.items)
            payload["questionnaire"] = [{"instrument": instrument.id, "item": item, "response": str(score),
                                         "answered_at": answered_at} for item, score in scores.items()]
        return "answered", payload

    def _allocation(self, connection: Connection, row, profile: dict[str, str]) -> dict[str, Any]:
        stratum = allocation.stratum_of(self.design, profile)
        secret = connection.execute(select(studies.c.allocation_secret)
                                    .where(studies.c.study_id == self.design.id)).scalar_one()
        arm, slot = repo.allocate(connection, self.design.id, stratum, row["participant_id"],
                                  lambda index: allocation.block(secret, self.design.id, stratum, index, self.design))
        plan = flow.START_PLAN + flow.build_plan(self.design, arm)
        return {"profile": profile, "stratum": stratum, "arm": arm, "slot": slot, "plan": plan,
                "case_order": flow.case_order(self.design, row["participant_id"])}

    def _case_for(self, row, key: StepKey) -> tuple[StudyCase, str]:
        """The case of a trial-like step and the arm it is read under."""
        if key.kind == "practice":
            arm = StepKey.parse(row["plan"][2]).name
            return self.case_set.practice[key.index], arm
        if key.kind == "attention":
            return self.case_set.attention[key.index], ""
        order = flow.case_order(self.design, row["participant_id"])
        arm = flow.trial_arms(self.design, row["arm"])[key.index]
        return self.case_set.cases[order[key.index]], arm

    def _trial_answer(self, row, key: StepKey, answer: dict[str, Any], rt_ms: int,
                      answered_at: str) -> dict[str, Any]:
        label = flow.check_label(answer, self.case_set.class_names)
        question = self.design.trials.score
        confidence, score = flow.reading_scores(label, flow.check_confidence(answer, question), question,
                                                self.positive_label)
        case, arm = self._case_for(row, key)
        if key.phase == "initial":
            return {"initial": {"label": label, "confidence": confidence, "score": score, "rt_ms": rt_ms,
                                "started_at": row["shown_at"]}}
        if key.kind == "practice":
            return {"practice": True}
        pending = (row["pending"] or {}).get("initial") or {}
        shows_ai = arm != "control"
        overlay_shown = shows_ai and self._overlay_available(arm, case)
        trial = {
            "study_id": self.design.id, "participant_id": row["participant_id"], "trial_index": key.index,
            "arm": arm, "case_id": case.case_id, "true_label": case.true_label,
            "ai_label": case.ai_label if shows_ai else None,
            "ai_confidence": case.ai_confidence if shows_ai else None,
            "ai_correct": case.ai_correct if shows_ai else None,
            "advice_source": case.advice_source if shows_ai else None,
            "explanation_method": self.case_set.explanation_method if overlay_shown else None,
            "overlay_shown": overlay_shown if shows_ai else None,
            "overlay_look": self._look(arm) if overlay_shown else None,
            "initial_label": pending.get("label"), "initial_confidence": pending.get("confidence"),
            "final_label": label, "final_confidence": confidence, "final_correct": label == case.true_label,
            "rt_initial_ms": pending.get("rt_ms"), "rt_final_ms": rt_ms,
            "started_at": pending.get("started_at") or row["shown_at"], "completed_at": answered_at,
            "overlay_toggles": int((row["pending"] or {}).get("toggles", 0)),
            **viewer_columns((row["pending"] or {}).get("viewer", {})),
            "record_id": "r" + hashlib.sha256(f"{row['participant_id']}:{key.index}".encode()).hexdigest()[:12],
            "initial_score": pending.get("score"), "final_score": score,
        }
        return {"trial": trial}

    @property
    def positive_label(self) -> str:
        """The class whose probability a reading's score gives: the finding class, last (as in `select_cases`)."""
        names = self.case_set.class_names
        return names[-1] if len(names) > 1 else ""

    def _overlay_available(self, arm: str, case: StudyCase) -> bool:
        explanation = self.design.explanation
        return bool(explanation.overlay.get(arm)) and case.ai_confidence >= explanation.min_confidence \
            and not self._withheld_for_normal(case)

    def _withheld_for_normal(self, case: StudyCase) -> bool:
        return self._no_finding(case) and self.case_set.normal_advice == "withhold"

    def _no_finding(self, case: StudyCase) -> bool:
        """The AI suggests the no-finding class (the first of two, e.g. normal)."""
        names = self.case_set.class_names
        return len(names) == 2 and case.ai_label == names[0]

    def _look(self, arm: str) -> str:
        # a case set prepared before looks existed keeps the full heat map its participants saw
        return (self.case_set.overlay_looks or {}).get(arm, "heatmap")

    def _rating_rows(self, row, index: int, answer: dict[str, Any], answered_at: str) -> list[dict[str, Any]]:
        target = row["rating_targets"][index]
        items = self.design.peer_rating.items
        scores = flow.check_scores(answer, items)
        by_id = {item.id: item for item in items}
        return [{"study_id": self.design.id, "rater_id": row["participant_id"], "target_kind": target["kind"],
                 "target_id": target["id"], "target_arm": target["arm"], "item": item, "score": score,
                 "scale_min": by_id[item].scale_min, "scale_max": by_id[item].scale_max, "rated_at": answered_at,
                 "target_source": target["source"]} for item, score in scores.items()]

    def _present(self, connection: Connection, token: str) -> Step:
        """The current step. On first showing: choose its rating targets (the first rating step)
        and record the moment it is shown, from which its response time runs."""
        row = self._participant(connection, token)
        if row["status"] != "in_progress":
            return self._step(row)
        if row["step_key"] == "rating:0" and not row["rating_targets"]:
            targets = choose_targets(connection, self.design, self.case_set, row)
            apply_event(connection, repo.append_event(connection, self.design.id, row["participant_id"],
                                                      "rating_targets", {"targets": targets}))
            row = self._participant(connection, token)
        if row["shown_ns"] is None:
            apply_event(connection, repo.append_event(
                connection, self.design.id, row["participant_id"], "shown",
                {"ns": time.monotonic_ns(), "clock": CLOCK_ID, "at": repo.now_iso()}, step_key=row["step_key"]))
            row = self._participant(connection, token)
        return self._step(row)

    def _step(self, row) -> Step:
        status = row["status"]
        plan = row["plan"] or flow.START_PLAN
        done, total = flow.progress(plan, row["step_index"])
        key = StepKey.parse(row["step_key"])
        return Step(key=row["step_key"], kind=key.kind, status=status, done=done, total=total,
                    content=self._content(row, key) if status == "in_progress" else {})

    def _content(self, row, key: StepKey) -> dict[str, Any]:
        design = self.design
        if key.kind == "consent":
            return {"text": design.consent_text, "withdrawal": design.withdrawal}
        if key.kind == "profile":
            return {"fields": {choice.name: list(choice.options) for choice in design.profile}}
        if key.kind == "instructions":
            return {"text": design.instructions[key.name], "arm": key.name}
        if key.kind in ("trial", "practice"):
            return self._trial_content(row, key)
        if key.kind == "attention":
            return {"case_id": self.case_set.attention[key.index].case_id, "prompt": design.attention.prompt,
                    "class_names": list(self.case_set.class_names)}
        if key.kind == "rating":
            target = row["rating_targets"][key.index]
            return {"target": target["display"], "target_kind": target["kind"],
                    "items": [vars(item) for item in design.peer_rating.items]}
        if key.kind == "questionnaire":
            instrument = next(i for i in design.questionnaires if i.id == key.name)
            return {"title": instrument.title, "items": [vars(item) for item in instrument.items]}
        if key.kind == "debrief":
            return {"text": design.debrief_text}
        return {}

    def _trial_content(self, row, key: StepKey) -> dict[str, Any]:
        case, arm = self._case_for(row, key)
        shows_ai = arm != "control" and key.phase == "final"
        content: dict[str, Any] = {
            "case_id": case.case_id, "trial_index": key.index, "practice": key.kind == "practice",
            "n_trials": self.design.cases.practice if key.kind == "practice" else self.design.cases.n,
            "phase": key.phase, "arm": arm, "class_names": list(self.case_set.class_names), "show_ai": shows_ai,
            "dataset": self.case_set.dataset, "question": self.design.trials.score,
            "positive_label": self.positive_label,
        }
        if shows_ai:
            display = self.design.explanation.confidence_display
            content["ai"] = {
                "label": case.ai_label,
                "confidence": case.ai_confidence if display == "percent" else None,
                "threshold": self.case_set.decision_threshold,
                "no_finding": self._no_finding(case),
                "withheld_for_normal": self._withheld_for_normal(case),
                "overlay": {"method": self.case_set.explanation_method, "model": self.case_set.model,
                            "target": case.target if case.advice_source == "planted" else None,
                            "look": self._look(arm)}
                if self._overlay_available(arm, case) else None,
            }
        initial = (row["pending"] or {}).get("initial")
        if key.phase == "final" and initial:
            content["initial"] = {"label": initial["label"], "confidence": initial["confidence"],
                                  "score": initial.get("score")}
        return content


def viewer_columns(by_phase: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A trial's viewer use over both looks (verify) or its one look: the covariate "looked closely"."""
    reports = list(by_phase.values())
    return {"viewer_max_zoom": max((r["max_zoom"] for r in reports), default=1.0),
            "viewer_actions": sum(r["zoom_actions"] + r["pan_actions"] for r in reports),
            "viewer_window_changes": sum(r["window_changes"] for r in reports)}


def _no_fields(answer: dict[str, Any]) -> None:
    if answer:
        raise InvalidAnswer(f"this step takes no answer fields, got {', '.join(sorted(answer))}")


def _elapsed_ms(row) -> int:
    if row["shown_clock"] == CLOCK_ID and row["shown_ns"] is not None:
        return max(0, (time.monotonic_ns() - int(row["shown_ns"])) // 1_000_000)
    # shown by another machine (several app servers on one database): fall back to wall time
    elapsed = datetime.now(UTC) - datetime.fromisoformat(row["shown_at"])
    return max(0, int(elapsed.total_seconds() * 1000))


# ---------------------------------------------------------------- the event fold


def apply_event(connection: Connection, event: dict[str, Any]) -> None:
    """Apply one event to the derived tables: the only code that writes them (live and in rebuild)."""
    kind, payload, participant_id = event["kind"], event["payload"], event["participant_id"]
    where = participants.c.participant_id == participant_id
    if kind == "enrolled":
        connection.execute(participants.insert().values(
            participant_id=participant_id, study_id=event["study_id"], token_sha256=payload["token_sha256"],
            status="in_progress", plan=None, step_index=0, step_key="consent", pilot=payload.get("pilot", False),
            enrolled_via=payload.get("via"), enrolled_at=event["created_at"], attention_failures=0))
    elif kind == "shown":
        connection.execute(update(participants).where(where).values(
            shown_at=payload["at"], shown_ns=payload["ns"], shown_clock=payload["clock"]))
    elif kind == "consent":
        if payload["agree"]:
            _advance(connection, participant_id, event)
        else:
            connection.execute(update(participants).where(where).values(status="declined", step_key="declined"))
    elif kind == "allocated":
        connection.execute(update(participants).where(where).values(
            profile=payload["profile"], stratum=payload["stratum"], arm=payload["arm"], plan=payload["plan"]))
        _advance(connection, participant_id, event)
    elif kind == "answered":
        _apply_answer(connection, participant_id, event)
    elif kind == "rating_targets":
        connection.execute(update(participants).where(where).values(rating_targets=payload["targets"]))
        repo.bump_rating_load(connection, event["study_id"], [t["id"] for t in payload["targets"]])
    elif kind == "overlay_toggle":
        pending = _pending(connection, participant_id)
        pending["toggles"] = pending.get("toggles", 0) + 1
        connection.execute(update(participants).where(where).values(pending=pending))
    elif kind == "viewer":  # cumulative per phase: the latest report of a phase replaces the earlier
        pending = _pending(connection, participant_id)
        pending["viewer"] = {**pending.get("viewer", {}), payload["phase"]: payload}
        connection.execute(update(participants).where(where).values(pending=pending))
    elif kind == "withdrawn":
        values = {"status": "withdrawn", "step_key": "withdrawn", "withdrawn_at": event["created_at"],
                  "arm": payload.get("arm"), "stratum": payload.get("stratum")}
        if payload.get("completed_at"):
            values["completed_at"] = payload["completed_at"]
        if payload.get("deleted"):
            values.update(profile=None, plan=None, pending=None, rating_targets=None)
        connection.execute(update(participants).where(where).values(**values))


def _pending(connection: Connection, participant_id: str) -> dict[str, Any]:
    value = connection.execute(select(participants.c.pending)
                               .where(participants.c.participant_id == participant_id)).scalar()
    return dict(value or {})


def _apply_answer(connection: Connection, participant_id: str, event: dict[str, Any]) -> None:
    payload = event["payload"]
    pending = _pending(connection, participant_id)
    if "initial" in payload:
        pending["initial"] = payload["initial"]
    else:
        pending.pop("initial", None)
    if "trial" in payload or "practice" in payload:
        pending.pop("toggles", None)
        pending.pop("viewer", None)
    if "trial" in payload:
        connection.execute(trials.insert().values(**payload["trial"]))
    if payload.get("ratings"):
        connection.execute(ratings.insert(), payload["ratings"])
    if payload.get("questionnaire"):
        connection.execute(questionnaire_answers.insert(), [
            {"study_id": event["study_id"], "participant_id": participant_id, **row}
            for row in payload["questionnaire"]])
    values: dict[str, Any] = {"pending": pending}
    if payload.get("attention_failed"):
        values["attention_failures"] = participants.c.attention_failures + 1
    connection.execute(update(participants).where(participants.c.participant_id == participant_id).values(**values))
    _advance(connection, participant_id, event)


def _advance(connection: Connection, participant_id: str, event: dict[str, Any]) -> None:
    where = participants.c.participant_id == participant_id
    row = connection.execute(select(participants.c.plan, participants.c.step_index).where(where)).first()
    plan = row.plan or flow.START_PLAN
    index = row.step_index + 1
    key = plan[index]
    values: dict[str, Any] = {"step_index": index, "step_key": key, "shown_at": None, "shown_ns": None,
                              "shown_clock": None}
    if key == "complete":
        values.update(status="completed", completed_at=event["created_at"])
    connection.execute(update(participants).where(where).values(**values))


def _delete_participant_data(connection: Connection, participant_id: str) -> None:
    """Withdrawal with deletion: answers, ratings they gave and their events go; the enrolment stays."""
    for table in (trials, questionnaire_answers):
        connection.execute(delete(table).where(table.c.participant_id == participant_id))
    connection.execute(delete(ratings).where(ratings.c.rater_id == participant_id))
    connection.execute(delete(events).where(events.c.participant_id == participant_id, events.c.kind != "enrolled"))


# ---------------------------------------------------------------- registration and rebuild


def register_study(engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
    """Record the design and case set in the database (once); refuse a changed design under the same id."""
    fingerprint = design.fingerprint()
    with engine.begin() as connection:
        existing = connection.execute(select(studies.c.design_sha256, studies.c.case_set)
                                      .where(studies.c.study_id == design.id).with_for_update()).first()
        if existing is None:
            connection.execute(studies.insert().values(
                study_id=design.id, title=design.title, design_sha256=fingerprint, design=design.to_json(),
                case_set=case_set.to_json(), allocation_secret=secrets.token_hex(32), created_at=repo.now_iso()))
            return
        if _same_registration(existing, design, case_set):
            return
        _refuse_if_enrolled(connection, design)
        connection.execute(update(studies).where(studies.c.study_id == design.id).values(
            title=design.title, design_sha256=fingerprint, design=design.to_json(), case_set=case_set.to_json()))


def check_registration(engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
    """Raise the `StudyError` that `register_study` would, without writing anything: `prepare`
    calls it before it replaces the prepared case set, so a refused design changes no file."""
    with engine.connect() as connection:
        existing = connection.execute(select(studies.c.design_sha256, studies.c.case_set)
                                      .where(studies.c.study_id == design.id)).first()
        if existing is not None and not _same_registration(existing, design, case_set):
            _refuse_if_enrolled(connection, design)


def _same_registration(existing, design: StudyDesign, case_set: CaseSet) -> bool:
    return existing.design_sha256 == design.fingerprint() and \
        existing.case_set == json.loads(json.dumps(case_set.to_json()))


def _refuse_if_enrolled(connection: Connection, design: StudyDesign) -> None:
    enrolled = connection.execute(select(participants.c.participant_id)
                                  .where(participants.c.study_id == design.id).limit(1)).first()
    if enrolled is not None:
        raise StudyError(f"study {design.id!r} already has participants under a different design or case set; "
                         "give the changed design a new id (the recorded data stay with the old one)")


def rebuild_derived(engine: Engine, study_id: str) -> int:
    """Recompute participants and every derived table of a study by replaying its events."""
    with engine.begin() as connection:
        for table in DERIVED:
            connection.execute(delete(table).where(table.c.study_id == study_id))
        connection.execute(delete(participants).where(participants.c.study_id == study_id))
        rows = connection.execute(select(events).where(events.c.study_id == study_id)
                                  .order_by(events.c.event_id)).mappings().all()
        for row in rows:
            apply_event(connection, dict(row))
    return len(rows)
