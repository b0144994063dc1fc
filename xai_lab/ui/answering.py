"""Answering a step from a screen: one idempotency key per step and session, the answer sent, the
service's refusal turned into a calm sentence, and the progress bar and Continue button every
form shares.

`submit` keeps the step the service returns (the next one, already shown in the same
transaction), so the rerun that follows draws it without asking the database again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import streamlit as st
from sqlalchemy.exc import InterfaceError, OperationalError

from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.flow import InvalidAnswer, SliderNotMoved
from xai_lab.study.service import NotCurrentStep, ReplayedSubmit, Step
from xai_lab.study.steps import STEP_KINDS
from xai_lab.ui.i18n import N_, _

LOG = logging.getLogger(__name__)


def next_step_key(served: ServedStudy) -> str:
    return f"next-step:{served.design.id}"


def idempotency_key(step_key: str) -> str:
    return st.session_state.setdefault(f"idem:{step_key}", uuid.uuid4().hex)


def submit(served: ServedStudy, token: str, step_key: str, answer: dict[str, Any]) -> None:
    """Widget callback: record the answer; the rerun that follows shows the next step (kept here)."""
    try:
        st.session_state[next_step_key(served)] = served.service.submit(token, step_key, answer,
                                                                         idempotency_key(step_key))
    except (OperationalError, InterfaceError):
        LOG.exception("study page: an answer could not be recorded")
        st.session_state["problem"] = _("Your answer could not be saved because the server is busy. Please give it "
                                        "again in a moment; nothing was recorded twice.")
    except ReplayedSubmit:
        pass  # a double click: the first click was recorded
    except NotCurrentStep:
        st.session_state["notice"] = _("That screen had already been answered (perhaps in another tab or window). "
                                       "You are now at your current step.")
    except SliderNotMoved:
        st.session_state["problem"] = _("Please move the slider first.")
    except InvalidAnswer as error:
        LOG.info("study page: an answer was refused (%s)", error)
        st.session_state["problem"] = _("That answer could not be saved because part of it was missing. Please "
                                        "answer every question on this screen and try again.")


def notices() -> None:
    if "notice" in st.session_state:
        st.info(st.session_state.pop("notice"))
    if "problem" in st.session_state:
        st.warning(st.session_state.pop("problem"))


def progress(step: Step) -> None:
    if not STEP_KINDS[step.kind].plan_known:
        return  # the plan, and so the number of steps, is fixed only at allocation (after the profile)
    st.progress(min(1.0, step.done / max(step.total, 1)),
                text=_("Step {number} of {total}").format(number=min(step.done + 1, step.total), total=step.total))


def continue_button(served: ServedStudy, token: str, step: Step, answers: dict[str, Any]) -> None:
    """Continue, enabled once every question has an answer; the caption below it keeps the layout fixed."""
    missing = [key for key, value in answers.items() if value is None]
    st.button(_("Continue"), type="primary", disabled=bool(missing), key=f"go:{step.key}", on_click=submit,
              args=(served, token, step.key, answers))
    st.caption(_("Answer every question to continue.") if missing else _("Thank you."))


# The study engine's messages a participant can meet, for the catalogue (tests/test_i18n.py checks
# they are the engine's own): `sentence` shows them in the study's language.
ENGINE_MESSAGES = (
    N_("this participation link is not recognised; open the link from your invitation again, or ask the study team "
       "for a new one"),
    N_("no participation token given; open the link from your invitation"),
    N_("this study has all the participants it needs through this link, so it is closed to new participants; thank "
       "you for your interest. If you were sent a personal link, open that one instead"),
)


def sentence(text: str) -> str:
    """Messages from the study engine as a sentence in the study's language: capital first letter, full stop."""
    text = _(text.strip())
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text
