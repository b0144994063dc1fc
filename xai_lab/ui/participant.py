"""Participant pages: one screen per study step, always the step the server says is current.

One person, one participant. A participant arrives with a personal link ``?study=ID&token=...``
(`xai-lab invite`), or with the study's shared link ``?study=ID&code=CODE`` (or types the code
into the box), which enrols. Once a session knows its token, the page replaces the address
bar's entry with the personal link (no new history entry, so Back never strips it) and the
server stores the token in an HttpOnly cookie for this study, so this browser reopening the
shared link resumes the same participant; a new browser with the code is a new participant.
The personal link is shown under "Continue later" for other devices. The page is always drawn
from `service.resume`, so reload, Back and a second tab land on the current step, and an answer
to any other step is refused by the service (and shown here as a calm notice, not an error).

Nothing here decides anything: the arm, the case, what the AI shows and what an answer may be
come from `StudyService`; the page lays them out. Every answer carries an idempotency key made
once per step and session, so a double click records one answer.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any
from urllib.parse import urlencode

import streamlit as st
from sqlalchemy.exc import InterfaceError, OperationalError

from xai_lab.errors import ConfigError, XaiLabError
from xai_lab.study.access import REMEMBER_PATH, code_matches, participant_cookie
from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.service import EnrolmentClosed, NotCurrentStep, ReplayedSubmit, Step, UnknownToken
from xai_lab.ui import resources
from xai_lab.ui.viewer import show_viewer

LOG = logging.getLogger(__name__)


class DatabaseUnavailable(XaiLabError):
    """The study database could not be reached; the page says so calmly."""

# Case images go to the viewer (`xai_lab.ui.viewer`) at their stored resolution, at most 1024 px:
# the browser scales and windows them, so the server encodes each image once (cached).
# What the map means, per look (explain/looks.py); the last sentence is the same everywhere.
_NOT_RIGHTNESS = "It shows where the AI looked, not whether it is right."
LEGENDS = {
    "contour": "The yellow outline marks the area that most influenced the AI's suggestion; the image stays "
               "visible under the light tint. " + _NOT_RIGHTNESS,
    "side_by_side": "Left: the image as it is. Right: the yellow outline marks the area that most influenced the "
                    "AI's suggestion. " + _NOT_RIGHTNESS,
    "heatmap": "Brighter yellow marks the areas that most influenced the AI's suggestion; dark purple, little "
               "influence. " + _NOT_RIGHTNESS,
}
NORMAL_MAP_NOTE = ("For a normal suggestion the map marks what the AI judged normal; it does not mark a finding.")
NO_MAP_FOR_NORMAL = ("No map is shown when the AI suggests normal: it would mark normal areas, and colour is easily "
                     "read as a finding.")

# Questions as a person would ask them, not the export's column names.
PROFILE_QUESTIONS = {
    "role": "Your role",
    "specialty": "Your specialty",
    "experience_years": "Years of clinical experience",
    "prior_ai_use": "How often have you used AI tools in your work?",
}


def render() -> None:
    try:
        _render()
    except (OperationalError, InterfaceError, DatabaseUnavailable):
        # A database that is restarting, locked or unreachable: say so calmly. Nothing is lost -
        # every recorded answer is in the database, and the page resumes at the current step.
        LOG.exception("study page: database unavailable")
        _unavailable()


def _render() -> None:
    served = _served_study()
    if served is None:
        return
    token = _token(served)
    if token is None:
        return
    try:
        step = served.service.resume(token)
    except UnknownToken as error:
        st.session_state.pop(_token_key(served), None)
        st.error(_sentence(str(error)))
        return
    _notices()
    _SCREENS.get(step.kind, _ended)(served, token, step)
    if step.status == "in_progress" and step.kind not in ("consent",):
        _continue_later(served, token)
        _withdraw_box(served, token)
    _remember(served, token)


def _unavailable() -> None:
    st.title("xai-lab study")
    st.warning("The study server is busy or restarting, so this page cannot be shown right now. Please wait a "
               "minute and reload the page: your answers so far are saved and you will continue where you were.")


# ---------------------------------------------------------------- arrival


def _served_study() -> ServedStudy | None:
    try:
        studies = resources.catalogue()
    except ConfigError as error:  # the database could not be opened (down, or misconfigured: see the log)
        raise DatabaseUnavailable(str(error)) from None
    study_id = st.query_params.get("study")
    if study_id is None and len(studies) == 1:
        study_id = next(iter(studies))
    if not studies:
        st.title("xai-lab")
        st.info("No study is being served here. Researchers: start one with `xai-lab serve --study "
                "studies/demo.toml` (or `xai-lab demo`). Trainers: open the trainer page at /trainer.")
        return None
    if study_id not in studies:
        st.title("xai-lab study")
        st.error("This study link is not recognised. Open the link from your invitation again, or ask the study "
                 "team for a new one.")
        return None
    return studies[study_id]


def _token_key(served: ServedStudy) -> str:
    return f"token:{served.design.id}"


def _token(served: ServedStudy) -> str | None:
    """This session's participant: kept in the session; else a personal link's token; else the
    token this browser stored when it enrolled (so reopening the shared code link resumes);
    else a new enrolment through the code in the link or typed into the box."""
    key = _token_key(served)
    if key in st.session_state:
        return st.session_state[key]
    token = st.query_params.get("token") or _remembered_token(served)
    if token:
        st.session_state[key] = token  # read once; the session keeps it
        return token
    st.title(served.design.title)
    code, tried = st.query_params.get("code"), f"code-tried:{served.design.id}"
    if code is not None and not st.session_state.get(tried):
        st.session_state[tried] = True  # a wrong code in the link counts once, not on every rerun
        if _enrol(served, code):
            st.rerun()  # draw the first step afresh: this run already drew the enrolment screen's title
    with st.form("enrol"):
        typed = st.text_input("Enrolment code from your invitation", max_chars=32)
        started = st.form_submit_button("Start", type="primary")
    if started and _enrol(served, typed):
        st.rerun()
    return None


def _remembered_token(served: ServedStudy) -> str | None:
    """The token this browser's cookie holds for the study, if it still belongs to the study."""
    token = st.context.cookies.get(participant_cookie(served.design.id))
    return token if token and served.service.knows(token) else None


def _enrol(served: ServedStudy, code: str) -> str | None:
    guard, client, scope = resources.access_guard(), resources.client_address(), f"code:{served.design.id}"
    wait = max(guard.wait_seconds(scope, client), guard.enrolment_wait(scope, client))
    if wait > 0:
        st.error(f"Too many attempts from this computer. Please wait {wait:.0f} seconds and try again.")
        return None
    if not code_matches(served.service.engine, served.design.id, code):
        guard.failed(scope, client)
        st.error("That enrolment code is not right for this study. Check your invitation and type the code "
                 "in the box below.")
        return None
    guard.succeeded(scope, client)
    try:
        token = served.service.enrol(via="code")
    except EnrolmentClosed as error:
        st.info(_sentence(str(error)))
        return None
    guard.enrolled(scope, client)
    st.session_state[_token_key(served)] = token
    return token


def _remember(served: ServedStudy, token: str) -> None:
    """Once per session: put the personal link into the address bar (replacing the history entry,
    so Back never leads to a link without it) and have the server store the token in an
    HttpOnly cookie (`xai_lab.ui.web`), so that this browser reopening the shared code link
    resumes this participant instead of enrolling a new one."""
    remembered = f"remembered:{served.design.id}"
    if st.session_state.get(remembered) == token:
        return
    st.session_state[remembered] = token
    st.html(remember_script(served.design.id, token), unsafe_allow_javascript=True, width="content")


def remember_script(study_id: str, token: str) -> str:
    values = json.dumps({"study": study_id, "token": token}).replace("</", "<\\/")
    return (f"<script>(function () {{ const v = {values};"
            "const url = new URL(window.location.href); url.search = new URLSearchParams(v).toString();"
            "window.history.replaceState(window.history.state, '', url.toString());"
            "const base = window.location.pathname.replace(/\\/[^\\/]*$/, '');"
            f"fetch(base + '{REMEMBER_PATH}', {{method: 'POST', credentials: 'same-origin',"
            "headers: {'Content-Type': 'application/json'}, body: JSON.stringify(v)}).catch(() => {});"
            "})();</script>")


def personal_link(study_id: str, token: str) -> str:
    base = st.context.url or ""
    return f"{base}?{urlencode({'study': study_id, 'token': token})}"


def _continue_later(served: ServedStudy, token: str) -> None:
    with st.expander("Continue later"):
        st.caption("Your answers are saved as you go. To come back to where you stopped, open your study link again "
                   "in this browser, or open this personal link on any device (keep it private: it is yours alone):")
        st.code(personal_link(served.design.id, token), language=None)


def _sentence(text: str) -> str:
    """Messages from the study engine as a sentence: capital first letter, full stop at the end."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


# ---------------------------------------------------------------- answering


def _idempotency_key(step_key: str) -> str:
    return st.session_state.setdefault(f"idem:{step_key}", uuid.uuid4().hex)


def _submit(served: ServedStudy, token: str, step_key: str, answer: dict[str, Any]) -> None:
    """Widget callback: record the answer; the rerun that follows shows the next step."""
    try:
        served.service.submit(token, step_key, answer, _idempotency_key(step_key))
    except (OperationalError, InterfaceError):
        LOG.exception("study page: an answer could not be recorded")
        st.session_state["problem"] = ("Your answer could not be saved because the server is busy. Please give it "
                                       "again in a moment; nothing was recorded twice.")
    except ReplayedSubmit:
        pass  # a double click: the first click was recorded
    except NotCurrentStep:
        st.session_state["notice"] = ("That screen had already been answered (perhaps in another tab or window). "
                                      "You are now at your current step.")
    except InvalidAnswer as error:
        LOG.info("study page: an answer was refused (%s)", error)
        st.session_state["problem"] = "That answer could not be saved because part of it was missing. Please " \
                                      "answer every question on this screen and try again."


def _notices() -> None:
    if "notice" in st.session_state:
        st.info(st.session_state.pop("notice"))
    if "problem" in st.session_state:
        st.warning(st.session_state.pop("problem"))


def _progress(step: Step) -> None:
    if step.kind in ("consent", "profile"):
        return  # the plan, and so the number of steps, is fixed only at allocation (after the profile)
    st.progress(min(1.0, step.done / max(step.total, 1)), text=f"Step {min(step.done + 1, step.total)} of "
                                                               f"{step.total}")


# ---------------------------------------------------------------- screens


def _consent(served: ServedStudy, token: str, step: Step) -> None:
    _progress(step)
    st.title(served.design.title)
    st.subheader("Information and consent")
    st.markdown(step.content["text"])
    left, right, _ = st.columns([2, 2, 3])
    left.button("I agree to take part", type="primary", key=f"agree:{step.key}", on_click=_submit,
                args=(served, token, step.key, {"agree": True}))
    right.button("I do not want to take part", key=f"decline:{step.key}", on_click=_submit,
                 args=(served, token, step.key, {"agree": False}))


def _profile(served: ServedStudy, token: str, step: Step) -> None:
    _progress(step)
    st.subheader("About you")
    st.caption("Used to balance the groups and describe who took part. No names or free text are stored.")
    answers = {}
    for name, options in step.content["fields"].items():
        answers[name] = st.selectbox(PROFILE_QUESTIONS.get(name, name.replace("_", " ").capitalize()), options,
                                     index=None,
                                     placeholder="Choose ...", key=f"{step.key}:{name}")
    _continue(served, token, step, answers)


def _instructions(served: ServedStudy, token: str, step: Step) -> None:
    _progress(step)
    st.subheader("How this works")
    st.markdown(step.content["text"])
    st.caption("Take the time you need. Zoom with + and − or the mouse wheel, drag to move, and change the "
               "contrast with the buttons under the image (keyboard: click the image, then +, −, arrows, 1-4, 0). "
               "Your answers are saved as you go. If the page closes, open your study link again in this browser, "
               "or use your personal link under \"Continue later\" at the bottom of the page.")
    st.button("Start", type="primary", key=f"go:{step.key}", on_click=_submit, args=(served, token, step.key, {}))


def _trial(served: ServedStudy, token: str, step: Step) -> None:
    content = step.content
    _progress(step)
    image_side, decision_side = st.columns([5, 4], gap="large")
    with decision_side:
        heading = "Practice case" if content["practice"] else f"Case {content['trial_index'] + 1} of " \
                                                              f"{content['n_trials']}"
        st.subheader(heading)
        shown_map = _ai_panel(served, token, step) if content["show_ai"] else None
        if content.get("initial"):
            first = content["initial"]
            if content.get("question") == "probability":
                st.caption(f"Your first reading: **{first['label']}**, probability of {content['positive_label']} "
                           f"{first['score']}%.")
            else:
                st.caption(f"Your first reading: **{first['label']}**, {first['confidence']}% sure.")
        if content["phase"] == "initial" and content["arm"] == "verify":
            st.caption("Decide on your own first. You will then see the AI's suggestion and can decide again.")
        _decision(served, token, step, content)
    with image_side:
        layer, visible, look = shown_map or (None, False, "")
        viewer_key = f"viewer:{step.key}"
        show_viewer(viewer_key, resources.reading_png(served.design.id, content["case_id"]), layer,
                    layer_visible=visible, side_by_side=look == "side_by_side", heatmap_legend=look == "heatmap",
                    on_activity=lambda: _log_viewer(served, token, step.key, viewer_key))


def _log_viewer(served: ServedStudy, token: str, step_key: str, viewer_key: str) -> None:
    state = st.session_state.get(viewer_key) or {}
    activity = state.get("activity") if hasattr(state, "get") else getattr(state, "activity", None)
    if not activity:
        return
    try:
        served.service.record_viewer(token, step_key, dict(activity), uuid.uuid4().hex)
    except (NotCurrentStep, ReplayedSubmit, InvalidAnswer):
        pass  # another tab moved on, or a malformed report: the trial is recorded without it


def _ai_panel(served: ServedStudy, token: str, step: Step) -> tuple[bytes, bool, str] | None:
    """The AI's label, calibrated probability and map toggle; returns (map layer, shown, look)
    when the step has a map."""
    ai = step.content["ai"]
    with st.container(border=True):
        st.markdown(f"**AI suggestion: {ai['label']}**")
        if ai.get("confidence") is not None:
            st.markdown(advice_probability(ai, step.content["class_names"]))
            st.caption("The AI's probabilities are calibrated: of cases given 80%, about 80% have the finding.")
        overlay = ai.get("overlay")
        if overlay is None:
            st.caption(NO_MAP_FOR_NORMAL if ai.get("withheld_for_normal") else "No map is shown for this case.")
            return None
        look = overlay.get("look", "heatmap")
        png = resources.layer_png(served.design.id, step.content["case_id"], overlay["method"], overlay["target"],
                                  look)
        if png is None:
            st.caption("The map for this case could not be loaded. Please decide from the image.")
            return None
        toggle_key = f"overlay:{step.key}"
        visible = st.toggle("Show the AI's map", value=True, key=toggle_key, on_change=_log_toggle,
                            args=(served, token, step.key, toggle_key))
        legend = LEGENDS[look] + (" " + NORMAL_MAP_NOTE if ai.get("no_finding") else "")
        st.caption(legend if visible else "The map is hidden. Switch it on to see where the AI looked.")
        return png, visible, look


def advice_probability(ai: dict[str, Any], class_names: list[str]) -> str:
    """The advice's number in words that cannot contradict the label: for two classes, the
    probability of the finding and the threshold the AI suggests it from; otherwise the
    probability of the suggested label, which is the highest the AI gives."""
    threshold = ai.get("threshold")
    if threshold is None or len(class_names) != 2:
        return f"Probability of {ai['label']}: {ai['confidence']:.0%}."
    finding = class_names[1]
    p_finding = ai["confidence"] if ai["label"] == finding else 1 - ai["confidence"]
    shown, cut = round(100 * p_finding), round(100 * threshold)
    # rounding can put a value just under the threshold onto it ("43%" below "from 43%")
    number = f"just under {cut}%" if p_finding < threshold and shown >= cut else f"{shown}%"
    return f"Probability of {finding}: {number}. The AI suggests {finding} from {cut}%."


def _log_toggle(served: ServedStudy, token: str, step_key: str, toggle_key: str) -> None:
    try:
        served.service.record_toggle(token, step_key, bool(st.session_state[toggle_key]), uuid.uuid4().hex)
    except (NotCurrentStep, ReplayedSubmit):
        pass  # the step moved on in another tab; the next render shows where the participant is


def _decision(served: ServedStudy, token: str, step: Step, content: dict[str, Any]) -> None:
    touched_key = f"touched:{step.key}"
    confidence_key = f"confidence:{step.key}"
    question = content.get("question", "confidence")
    label = ("How sure are you? (0 = guessing, 100 = certain)" if question == "confidence" else
             f"How likely is it that this image shows {content['positive_label']}? (0 = certainly not, "
             "100 = certainly)")
    st.slider(label, 0, 100, 50, key=confidence_key, on_change=st.session_state.__setitem__,
              args=(touched_key, True))
    touched = st.session_state.get(touched_key, False)
    # Always one caption here, only its text changes: a screen whose element layout never shifts
    # leaves no stale widgets behind while quick reruns (arrow keys on the slider) overlap.
    st.caption("Now choose your answer." if touched else "Move the slider to how sure you are; then choose your "
                                                              "answer.")
    columns = st.columns(len(content["class_names"]))
    truth = _practice_truth(served, content)
    for column, name in zip(columns, content["class_names"], strict=True):
        column.button(name.capitalize(), type="primary", disabled=not touched, key=f"decide:{step.key}:{name}",
                      width="stretch", on_click=_decide,
                      args=(served, token, step.key, name, question, confidence_key, touched_key,
                            _feedback(truth, name, content) if truth else None))


def _practice_truth(served: ServedStudy, content: dict[str, Any]) -> str | None:
    """The practice case's true label, when the design gives feedback and this is its last look."""
    if not (content["practice"] and content["phase"] == "final" and served.design.trials.practice_feedback):
        return None
    return next((case.true_label for case in served.case_set.practice if case.case_id == content["case_id"]), None)


def _feedback(truth: str, answer: str, content: dict[str, Any]) -> str:
    ai = content.get("ai", {}).get("label")
    said = f" The AI suggested {ai}." if ai else ""
    verdict = "Your answer matches." if answer == truth else f"You answered {answer}."
    return f"Practice case: this image shows {truth}. {verdict}{said} The study cases will not say."


def _decide(served: ServedStudy, token: str, step_key: str, label: str, question: str, slider_key: str,
            touched_key: str, feedback: str | None = None) -> None:
    if not st.session_state.get(touched_key):
        st.session_state["problem"] = "Please move the slider first."
        return
    _submit(served, token, step_key, {"label": label, question: int(st.session_state[slider_key])})
    if feedback and "problem" not in st.session_state:
        st.session_state["notice"] = feedback


def _attention(served: ServedStudy, token: str, step: Step) -> None:
    content = step.content
    _progress(step)
    image_side, decision_side = st.columns([5, 4], gap="large")
    with decision_side:
        st.subheader("Check question")
        st.markdown(content["prompt"])
        # side by side, as on every trial: the check must look like the task it checks
        for column, label in zip(st.columns(len(content["class_names"])), content["class_names"], strict=True):
            column.button(label.capitalize(), key=f"attention:{step.key}:{label}", width="stretch",
                          on_click=_submit, args=(served, token, step.key, {"label": label}))
    with image_side:
        show_viewer(f"viewer:{step.key}", resources.reading_png(served.design.id, content["case_id"]))


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


def _rating(served: ServedStudy, token: str, step: Step) -> None:
    content = step.content
    _progress(step)
    st.subheader("How did this clinician do?")
    record, questions = st.columns([2, 3], gap="large")
    with record, st.container(border=True):
        _rating_target(served, content)
    with questions:
        answers = _likert(step, content["items"])
        _continue(served, token, step, answers)


def _rating_target(served: ServedStudy, content: dict[str, Any]) -> None:
    target = content["target"]
    if content["target_kind"] == "vignette":
        st.markdown(target["text"])
        return
    st.markdown(f"This clinician {target['use_of_ai']}.")
    lines = []
    if target.get("initial_label"):
        lines.append(f"- First reading on their own: **{target['initial_label']}** "
                     f"({target['initial_confidence']}% sure)")
    if target.get("ai_label"):
        advice = {"label": target["ai_label"], "confidence": target["ai_confidence"],
                  "threshold": served.case_set.decision_threshold}
        lines.append(f"- AI suggestion: **{target['ai_label']}**. "
                     f"{advice_probability(advice, list(served.case_set.class_names))}")
    lines.append(f"- Final decision: **{target['final_label']}** ({target['final_confidence']}% sure)")
    if "true_label" in target:
        lines.append(f"- Correct answer: **{target['true_label']}**")
    st.markdown("\n".join(lines))
    try:
        st.image(resources.thumbnail_png(served.design.id, target["case_id"]), output_format="PNG", width=220)
    except XaiLabError:
        pass  # a record from a case outside this study's case set: the description stands alone


def _questionnaire(served: ServedStudy, token: str, step: Step) -> None:
    _progress(step)
    st.subheader(step.content["title"])
    answers = _likert(step, step.content["items"])
    _continue(served, token, step, answers)


def _continue(served: ServedStudy, token: str, step: Step, answers: dict[str, Any]) -> None:
    """Continue, enabled once every question has an answer; the caption below it keeps the layout fixed."""
    missing = [key for key, value in answers.items() if value is None]
    st.button("Continue", type="primary", disabled=bool(missing), key=f"go:{step.key}", on_click=_submit,
              args=(served, token, step.key, answers))
    st.caption("Answer every question to continue." if missing else "Thank you.")


def _debrief(served: ServedStudy, token: str, step: Step) -> None:
    _progress(step)
    st.subheader("Thank you: what this study was about")
    st.markdown(step.content["text"])
    st.caption("Press Finish to complete your participation. Opening your link again afterwards shows only this "
               "confirmation; your answers cannot be changed then.")
    st.button("Finish", type="primary", key=f"go:{step.key}", on_click=_submit, args=(served, token, step.key, {}))


def _ended(served: ServedStudy, token: str, step: Step) -> None:
    messages = {
        "completed": "You have finished. Thank you for taking part; you can close this window.",
        "declined": "You chose not to take part. Nothing else will be recorded; you can close this window.",
        "withdrawn": "You have withdrawn from the study. " + (
            "Your answers have been deleted. " if served.design.withdrawal == "delete"
            else "Answers given so far are kept, as the consent information said. ")
            + "You can close this window.",
    }
    st.title(served.design.title)
    st.success(messages.get(step.status, "This participation has ended."))


def _withdraw_box(served: ServedStudy, token: str) -> None:
    with st.expander("Stop taking part"):
        what = ("your answers will be deleted" if served.design.withdrawal == "delete"
                else "answers given so far are kept, as the consent information said")
        st.caption(f"You can stop at any time without giving a reason; {what}.")
        sure = st.checkbox("I want to withdraw from this study", key="withdraw:sure")
        if st.button("Withdraw", disabled=not sure, key="withdraw:go"):
            try:
                served.service.withdraw(token)
            except NotCurrentStep:
                pass
            st.rerun()


_SCREENS = {"consent": _consent, "profile": _profile, "instructions": _instructions, "practice": _trial,
            "trial": _trial, "attention": _attention, "rating": _rating, "questionnaire": _questionnaire,
            "debrief": _debrief}
