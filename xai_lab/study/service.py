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
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from xai_lab.errors import StudyError
from xai_lab.store import repository as repo
from xai_lab.store.database import open_database
from xai_lab.store.schema import participants, studies
from xai_lab.study import flow, recruitment
from xai_lab.study.cases import CaseSet
from xai_lab.study.clock import elapsed_ms, shown_reading
from xai_lab.study.design import StudyDesign
from xai_lab.study.events import apply_event, end_participation
from xai_lab.study.flow import InvalidAnswer, StepKey
from xai_lab.study.recruitment import PanelArrival
from xai_lab.study.registration import register_study
from xai_lab.study.steps import STEP_KINDS, StepContent, StepContext, kind_of, parse_step_key
from xai_lab.study.steps.trial import check_viewer_activity

TOKEN_BYTES = 24  # 192 bits, above the 128 the design requires
ENROLMENT_ROUTES = ("code", "invite", "simulation", "api", "panel")
CAPPED_ROUTES = ("code", "panel")  # the shared link, with or without a panel's parameters
# Map toggles and viewer reports kept per step and kind: far above what a reader does in one trial
# (viewer reports are cumulative, so the last kept one holds everything up to it); a scripted
# client sending hundreds in seconds stops adding rows here.
MAX_READING_EVENTS_PER_STEP = 100


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
    content: StepContent | dict[str, Any] = field(default_factory=dict)  # empty once participation ended
    # shown on the last page: the id a participant quotes when asking the team to erase their data
    participant_id: str = ""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StudyService:
    def __init__(self, engine: Engine, design: StudyDesign, case_set: CaseSet) -> None:
        self.engine, self.design, self.case_set = engine, design, case_set
        self.context = StepContext(design, case_set)

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
        ``simulation`` or ``api``; panel participants enrol through `enrol_from_panel`."""
        if via not in ENROLMENT_ROUTES or via == "panel":
            raise StudyError(f"unknown enrolment route {via!r}; use one of code, invite, simulation, api")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self.engine.begin() as connection:
            if via == "code":
                self._check_code_capacity(connection)
            self._new_participant(connection, token, pilot, via)
        return token

    def enrol_from_panel(self, arrival: PanelArrival) -> tuple[str, bool]:
        """The participant of a recruitment panel's id: (token, whether enrolled now). The same id
        always gives the same participant (the token is derived from it), so a second visit resumes;
        two visits racing each other meet at the unique panel id, and the later one resumes."""
        for _ in range(2):
            try:
                with self.engine.begin() as connection:
                    token = recruitment.panel_token(connection, self.design.id, arrival.panel_id)
                    if recruitment.seen_again(connection, self.design.id, arrival.panel_id):
                        return token, False
                    self._check_code_capacity(connection)
                    participant_id = self._new_participant(connection, token, False, "panel")
                    recruitment.record_entry(connection, self.design.id, participant_id,
                                             self.design.recruitment.panel, arrival)
                    return token, True
            except IntegrityError:
                continue  # the other visit enrolled this id first: resume it
        raise StudyError("this panel id could not be enrolled; reload the page")

    def arrived_from_panel(self, token: str) -> bool:
        """Whether this participant came from the recruitment panel (and so goes back to it at the end)."""
        with self.engine.connect() as connection:
            participant_id = connection.execute(select(participants.c.participant_id).where(
                participants.c.token_sha256 == hash_token(token))).scalar()
            return participant_id is not None and recruitment.has_panel_entry(connection, participant_id)

    def _new_participant(self, connection: Connection, token: str, pilot: bool, via: str) -> str:
        participant_id = "p" + secrets.token_hex(6)
        event = repo.append_event(connection, self.design.id, participant_id, "enrolled",
                                  {"token_sha256": hash_token(token), "pilot": pilot, "via": via})
        apply_event(connection, event)
        return participant_id

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
            participants.c.study_id == self.design.id, participants.c.enrolled_via.in_(CAPPED_ROUTES))).scalar_one()
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
            kind, payload = self._answer(connection, row, parse_step_key(step_key), answer)
            event = repo.append_event(connection, self.design.id, row["participant_id"], kind, payload,
                                      step_key=step_key, idempotency_key=idempotency_key)
            apply_event(connection, event)
            if kind == "reconsent" and not payload["agree"]:  # not agreeing to the new text is withdrawing
                end_participation(connection, self.design.id, self._participant(connection, token),
                                  self.design.withdrawal == "delete", extra={"declined_consent": payload["version"]})
            return self._present(connection, token)  # the next step, shown in the same transaction

    def record_toggle(self, token: str, step_key: str, visible: bool, idempotency_key: str) -> None:
        """Log that the participant showed or hid the overlay on the current trial step."""
        self._log_on_trial(token, step_key, "overlay_toggle", {"visible": bool(visible)}, idempotency_key)

    def record_viewer(self, token: str, step_key: str, activity: dict[str, Any], idempotency_key: str) -> None:
        """Log how the participant used the viewer on the current trial step (zoom, pan, contrast)."""
        # the key's last part is the phase of a trial key; any other key is refused before anything is written
        payload = {"phase": step_key.rsplit(":", 1)[-1], **check_viewer_activity(activity)}
        self._log_on_trial(token, step_key, "viewer", payload, idempotency_key)

    def request_ai(self, token: str, step_key: str, idempotency_key: str) -> Step:
        """The reader asks for the AI on the current trial of the on_demand workflow; the step returned
        shows the advice. The request and its time since the case was shown are recorded; the advice is
        never sent before it (so a reader who does not ask reads without AI, whatever the client does)."""
        with self.engine.begin() as connection:
            row = self._participant(connection, token)
            self._check_current(connection, row, step_key, idempotency_key)
            key = parse_step_key(step_key)
            if "ai_request" not in kind_of(step_key).logs or \
                    not kind_of(step_key).content(self.context, row, key).get("on_demand"):
                raise NotCurrentStep(f"step {step_key!r} does not offer the AI on request")
            if "ai_request" in (row["pending"] or {}):
                return self._present(connection, token)  # asked already (another tab, a double click)
            event = repo.append_event(connection, self.design.id, row["participant_id"], "ai_request",
                                      {"after_ms": elapsed_ms(row)}, step_key=step_key,
                                      idempotency_key=idempotency_key)
            apply_event(connection, event)
            return self._present(connection, token)

    def _log_on_trial(self, token: str, step_key: str, kind: str, payload: dict[str, Any],
                      idempotency_key: str) -> None:
        """Append an event about how the current trial step is being read (not an answer)."""
        with self.engine.begin() as connection:
            row = self._participant(connection, token)
            self._check_current(connection, row, step_key, idempotency_key)
            if kind not in kind_of(step_key).logs:
                raise NotCurrentStep(f"{kind} is not logged on {step_key!r} steps")
            if repo.count_step_events(connection, row["participant_id"], step_key, kind) >= MAX_READING_EVENTS_PER_STEP:
                return  # a flood from a scripted client: the trial keeps what came before (docs/studies.md)
            event = repo.append_event(connection, self.design.id, row["participant_id"], kind, payload,
                                      step_key=step_key, idempotency_key=idempotency_key)
            apply_event(connection, event)

    def withdraw(self, token: str) -> Step:
        """End participation now; the data are deleted or kept as the design's consent promised."""
        with self.engine.begin() as connection:
            row = self._participant(connection, token)
            if row["status"] != "in_progress" and row["status"] != "completed":
                raise NotCurrentStep(f"participation has already ended ({row['status']}); nothing to withdraw")
            end_participation(connection, self.design.id, row, self.design.withdrawal == "delete")
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
        current = self._current_key(row)
        if step_key != current:
            raise NotCurrentStep(f"step {step_key!r} is not the current step ({current!r}); "
                                 "reload to continue where you are")
        if row["shown_ns"] is None and current == row["step_key"]:
            raise NotCurrentStep(f"step {step_key!r} has not been shown yet; call resume() before submitting")

    def _answer(self, connection: Connection, row, key: StepKey, answer: dict[str, Any]) -> tuple[str, dict]:
        return STEP_KINDS[key.kind].answer(self.context, connection, row, key, answer)

    def _present(self, connection: Connection, token: str) -> Step:
        """The current step. On first showing: choose its rating targets (the first rating step)
        and record the moment it is shown, from which its response time runs."""
        row = self._participant(connection, token)
        if row["status"] != "in_progress" or self._needs_reconsent(row):
            return self._step(row)  # a reconsent screen is not the step: its response time has not begun
        prepared = kind_of(row["step_key"]).before_show(self.context, connection, row)
        if prepared is not None:
            apply_event(connection, repo.append_event(connection, self.design.id, row["participant_id"], *prepared))
            row = self._participant(connection, token)
        if row["shown_ns"] is None:
            apply_event(connection, repo.append_event(connection, self.design.id, row["participant_id"], "shown",
                                                      shown_reading(), step_key=row["step_key"]))
            row = self._participant(connection, token)
        return self._step(row)

    def _needs_reconsent(self, row) -> bool:
        """Agreed to an earlier version of the consent text than the study's current one."""
        return row["status"] == "in_progress" and row["consent_version"] is not None and \
            row["consent_version"] != self.design.consent_version

    def _current_key(self, row) -> str:
        """The step the participant must answer now: the reconsent screen in place of the plan's step
        while they have not agreed to the current consent text, else the plan's step."""
        return f"reconsent:{self.design.consent_version}" if self._needs_reconsent(row) else row["step_key"]

    def _step(self, row) -> Step:
        status = row["status"]
        plan = row["plan"] or flow.START_PLAN
        done, total = flow.progress(plan, row["step_index"])
        current = self._current_key(row)
        key = parse_step_key(current)
        return Step(key=current, kind=key.kind, status=status, done=done, total=total,
                    content=STEP_KINDS[key.kind].content(self.context, row, key) if status == "in_progress" else {},
                    participant_id=row["participant_id"])
