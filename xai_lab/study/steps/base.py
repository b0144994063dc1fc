"""What every step kind is: a small class holding one kind's key, content, answer check, event fold
and simulated answer, in the spirit of oTree's page classes.

`StudyService` runs the lifecycle and the transactions and asks the participant's current step
kind (`xai_lab.study.steps.STEP_KINDS`) for everything kind-specific:

- `content(context, row, key)`: what the screen shows (a JSON-able dict);
- `answer(context, connection, row, key, answer)`: the answer checked (`InvalidAnswer` if it does
  not fit) and turned into the event to append, ``("answered", payload)`` for most kinds;
- `apply(connection, event, pending)`: the derived rows an answered event writes (replayed by
  a rebuild, so it reads only the event);
- `before_show(context, connection, row)`: an event to record when the step is first shown;
- `simulated_answer(reader, rng, content)`: what a simulated clinician answers;
- `refused_answers(content)`: answers the kind must refuse (the generic test in tests/test_step_kinds.py
  submits each and expects `InvalidAnswer`);
- `key_fields`: what follows the kind in its step key (``trial:3:final`` carries index and phase);
- `logs` and `fold_log`: events about how the step is being used (not answers), kept on the step;
- `plan_known`: False for the steps before allocation, when the number of steps is not yet fixed;
- `in_plan`: False for a kind the service shows in place of the current step (reconsent).

The study UI keeps one screen function per kind (`xai_lab.ui.screens.SCREENS`); the two registries are
checked against each other when the pages load, so a kind without a screen stops the server at start-up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from sqlalchemy import Connection

from xai_lab.store.repository import now_iso
from xai_lab.study.cases import CaseSet
from xai_lab.study.clock import elapsed_ms
from xai_lab.study.design import StudyDesign
from xai_lab.study.flow import InvalidAnswer, StepKey

Event = tuple[str, dict[str, Any]]  # (event kind, payload)


@dataclass(frozen=True)
class StepContext:
    """What a step kind may read: the study's design and its prepared cases."""

    design: StudyDesign
    case_set: CaseSet

    @property
    def positive_label(self) -> str:
        """The class whose probability a reading's score gives: the finding class, last (as in `select_cases`)."""
        names = self.case_set.class_names
        return names[-1] if len(names) > 1 else ""


class SimulatedReader(Protocol):
    """What a step kind asks of a simulated clinician (`xai_lab.study.simulate.SimulatedClinician`)."""

    skill: float
    reliance: float
    truth: dict[str, str]
    attention_answer: str
    arm_of_text: dict[str, str]
    rating_means: dict[str, float]  # the mean competence rating a simulated rater gives each arm

    def reliance_on(self, levels: dict[str, str]) -> float:
        """The reliance on a trial read at these factor levels (planted effects of conditions)."""


KEY_FIELDS = ("index", "phase", "name")


class StepKind:
    kind: ClassVar[str] = ""
    key_fields: ClassVar[tuple[str, ...]] = ()  # of KEY_FIELDS, in the order they follow the kind
    plan_known: ClassVar[bool] = True
    in_plan: ClassVar[bool] = True  # False: shown in place of the current step, never part of a plan (reconsent)
    logs: ClassVar[tuple[str, ...]] = ()  # event kinds a participant may log while on this step

    def parse_key(self, parts: list[str]) -> StepKey:
        """The key's parts after the kind, read by `key_fields`; a key of another shape is refused."""
        if len(parts) != len(self.key_fields):
            shape = ":".join((self.kind, *(f"<{name}>" for name in self.key_fields)))
            raise ValueError(f"a {self.kind} step key has the shape {shape}, got {':'.join((self.kind, *parts))!r}")
        values: dict[str, Any] = dict(zip(self.key_fields, parts, strict=True))
        if "index" in values:
            values["index"] = int(values["index"])
        return StepKey(self.kind, **values)

    def fold_log(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        """The step's pending state after a logged event of one of `logs` (replayed by a rebuild)."""
        raise NotImplementedError(f"{self.kind} steps log no events")

    def refused_answers(self, content: dict[str, Any]) -> list[dict[str, Any]]:
        """Answers this kind must refuse with `InvalidAnswer` (the generic kind test submits each)."""
        return [{"unexpected": 1}]

    def content(self, context: StepContext, row: Any, key: StepKey) -> dict[str, Any]:
        return {}

    def answer(self, context: StepContext, connection: Connection, row: Any, key: StepKey,
               answer: dict[str, Any]) -> Event:
        """The answered event: its response time, when it came, and the kind's own fields (`check`)."""
        rt_ms, answered_at = elapsed_ms(row), now_iso()
        payload: dict[str, Any] = {"rt_ms": rt_ms, "at": answered_at}
        payload.update(self.check(context, row, key, answer, rt_ms, answered_at))
        return "answered", payload

    def check(self, context: StepContext, row: Any, key: StepKey, answer: dict[str, Any], rt_ms: int,
              answered_at: str) -> dict[str, Any]:
        """The kind's fields of the answered event; raises `InvalidAnswer`. Default: no fields allowed."""
        if answer:
            raise InvalidAnswer(f"this step takes no answer fields, got {', '.join(sorted(answer))}")
        return {}

    def apply(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        """Write the answered event's derived rows; return extra participant column values."""
        return {}

    def before_show(self, context: StepContext, connection: Connection, row: Any) -> Event | None:
        return None

    def simulated_answer(self, reader: SimulatedReader, rng: random.Random, content: dict[str, Any]) -> dict[str, Any]:
        return {}
