"""The form screens: consent, profile, instructions, peer rating, questionnaire, debrief."""

from __future__ import annotations

from typing import Any, cast

import streamlit as st

from xai_lab.errors import XaiLabError
from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.service import Step
from xai_lab.study.steps import (
    ConsentContent,
    DebriefContent,
    InstructionsContent,
    ProfileContent,
    QuestionnaireContent,
    RatingContent,
    ReconsentContent,
)
from xai_lab.ui import resources
from xai_lab.ui.answering import continue_button, progress, submit
from xai_lab.ui.i18n import N_, _
from xai_lab.ui.screens.reading import advice_probability

# How the study engine describes a rated peer's use of AI (xai_lab.study.peer.USE_OF_AI), for the catalogue;
# tests/test_i18n.py checks they are the engine's own.
PEER_USES = (N_("decided first without AI, then saw the AI's advice and decided again"),
             N_("saw the AI's advice together with the image and decided"), N_("decided without AI"),
             N_("could ask for the AI's advice while reading, and decided"))

# Questions as a person would ask them, not the export's column names.
PROFILE_QUESTIONS = {
    "role": N_("Your role"),
    "specialty": N_("Your specialty"),
    "experience_years": N_("Years of clinical experience"),
    "prior_ai_use": N_("How often have you used AI tools in your work?"),
}



def consent(served: ServedStudy, token: str, step: Step) -> None:
    progress(step)
    st.title(served.design.title)
    st.subheader(_("Information and consent"))
    st.markdown(cast(ConsentContent, step.content)["text"])
    _agree_or_decline(served, token, step, _("I agree to take part"), _("I do not want to take part"))


def reconsent(served: ServedStudy, token: str, step: Step) -> None:
    """The consent text changed since the participant agreed (an ethics amendment): agree to go on."""
    st.title(served.design.title)
    st.subheader(_("The study information has been updated"))
    st.info(_("Please read the updated information below and choose whether to continue. Your answers so far are "
            "saved either way."))
    st.markdown(cast(ReconsentContent, step.content)["text"])
    _agree_or_decline(served, token, step, _("I agree and continue"), _("I do not agree: stop taking part"))


def _agree_or_decline(served: ServedStudy, token: str, step: Step, agree: str, decline: str) -> None:
    """The two answers to a consent text, side by side, agreeing first (the primary button)."""
    left, right, _space = st.columns([2, 2, 3])
    left.button(agree, type="primary", key=f"agree:{step.key}", on_click=submit,
                args=(served, token, step.key, {"agree": True}))
    right.button(decline, key=f"decline:{step.key}", on_click=submit, args=(served, token, step.key, {"agree": False}))


def profile(served: ServedStudy, token: str, step: Step) -> None:
    progress(step)
    st.subheader(_("About you"))
    st.caption(_("Used to balance the groups and describe who took part. No names or free text are stored."))
    answers = {}
    for name, options in cast(ProfileContent, step.content)["fields"].items():
        # the options are the design's (the researcher's words), shown as written
        answers[name] = st.selectbox(_(PROFILE_QUESTIONS[name]) if name in PROFILE_QUESTIONS else
                                     name.replace("_", " ").capitalize(), options, index=None,
                                     placeholder=_("Choose ..."), key=f"{step.key}:{name}")
    continue_button(served, token, step, answers)


def instructions(served: ServedStudy, token: str, step: Step) -> None:
    _text_step(served, token, step, _("How this works"), _("Start"),
               _("Take the time you need. Zoom with + and − or the mouse wheel, drag to move, and change the "
                 "contrast with the buttons under the image (keyboard: click the image, then +, −, arrows, 1-4, 0). "
                 "Your answers are saved as you go. If the page closes, open your study link again in this browser, "
                 "or use your personal link under \"Continue later\" at the bottom of the page."))


def _likert(step: Step, items: list[dict[str, Any]]) -> dict[str, int | None]:
    """Each item: the question, then its anchors at the two ends of an evenly spaced row of points
    (a caption under only the first and last point would widen their gaps)."""
    answers = {}
    for item in items:
        low, high = item["scale_min"], item["scale_max"]
        st.markdown(f"**{item['text']}**")
        left, scale, right = st.columns([2, 5, 2], vertical_alignment="center", gap="small")
        left.caption(item["anchors"][0], text_alignment="right")
        answers[item["id"]] = scale.radio(item["text"], list(range(low, high + 1)), index=None, horizontal=True,
                                          key=f"{step.key}:{item['id']}", label_visibility="collapsed")
        right.caption(item["anchors"][1])
    return answers


def rating(served: ServedStudy, token: str, step: Step) -> None:
    content = cast(RatingContent, step.content)
    progress(step)
    st.subheader(_("How did this clinician do?"))
    record, questions = st.columns([2, 3], gap="large")
    with record, st.container(border=True):
        _rating_target(served, content)
    with questions:
        answers = _likert(step, content["items"])
        continue_button(served, token, step, answers)


def _rating_target(served: ServedStudy, content: dict[str, Any]) -> None:
    target = content["target"]
    if content["target_kind"] == "vignette":
        st.markdown(target["text"])
        return
    st.markdown(_("This clinician {use_of_ai}.").format(use_of_ai=_(target["use_of_ai"])))
    lines = []
    if target.get("initial_label"):
        lines.append(_("- First reading on their own: **{label}** ({confidence}% sure)").format(
            label=target["initial_label"], confidence=target["initial_confidence"]))
    if target.get("ai_label"):
        advice = {"label": target["ai_label"], "confidence": target["ai_confidence"],
                  "threshold": served.case_set.decision_threshold}
        lines.append(_("- AI suggestion: **{label}**.").format(label=target["ai_label"]) + " "
                     + advice_probability(advice, list(served.case_set.class_names)))
    lines.append(_("- Final decision: **{label}** ({confidence}% sure)").format(
        label=target["final_label"], confidence=target["final_confidence"]))
    if "true_label" in target:
        lines.append(_("- Correct answer: **{label}**").format(label=target["true_label"]))
    st.markdown("\n".join(lines))
    try:
        st.image(resources.thumbnail_png(served.design.id, target["case_id"]), output_format="PNG", width=220)
    except XaiLabError:
        pass  # a record from a case outside this study's case set: the description stands alone


def questionnaire(served: ServedStudy, token: str, step: Step) -> None:
    progress(step)
    content = cast(QuestionnaireContent, step.content)
    st.subheader(content["title"])
    answers = _likert(step, content["items"])
    continue_button(served, token, step, answers)


def debrief(served: ServedStudy, token: str, step: Step) -> None:
    _text_step(served, token, step, _("Thank you: what this study was about"), _("Finish"),
               _("Press Finish to complete your participation. Opening your link again afterwards shows only this "
                 "confirmation; your answers cannot be changed then."))


def _text_step(served: ServedStudy, token: str, step: Step, heading: str, button: str, note: str) -> None:
    """A screen of text the participant reads and confirms: the step's text, a note, one button."""
    progress(step)
    st.subheader(heading)
    st.markdown(cast(InstructionsContent | DebriefContent, step.content)["text"])
    st.caption(note)
    st.button(button, type="primary", key=f"go:{step.key}", on_click=submit, args=(served, token, step.key, {}))
