"""Participant pages: one screen per study step, always the step the server says is current.

How a participant arrives: an invitation link ``?study=ID&token=...`` (tokens made with
``xai-lab invite``), or ``?study=ID&code=CODE`` / the enrolment-code box, which enrols and puts
the new token into the address bar so that a reload or a bookmark resumes. The token is read
from the URL once and kept in session state; the page is always drawn from `service.resume`,
so reload, back button and a second tab land on the current step, and an answer to any other
step is refused by the service (and shown here as a calm notice, not an error).

Nothing here decides anything: the arm, the case, what the AI shows and what an answer may be
come from `StudyService`; the page lays them out. Every answer carries an idempotency key made
once per step and session, so a double click records one answer.
"""

from __future__ import annotations

import uuid
from typing import Any

import streamlit as st

from xai_lab.errors import XaiLabError
from xai_lab.study.access import code_matches
from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.service import NotCurrentStep, ReplayedSubmit, Step, UnknownToken
from xai_lab.ui import resources

# Images are sent at their own size (512 px square, from `StudyMedia`): st.image re-encodes any
# image it has to shrink on every rerun, which dominated the server's CPU under load.
LEGEND = ("Brighter yellow marks the areas that most influenced the AI's suggestion; dark purple, little "
          "influence. The map shows where the AI looked, not whether it is right.")


def render() -> None:
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
        st.error(str(error))
        return
    _notices()
    _SCREENS.get(step.kind, _ended)(served, token, step)
    if step.status == "in_progress" and step.kind not in ("consent",):
        _withdraw_box(served, token)


# ---------------------------------------------------------------- arrival


def _served_study() -> ServedStudy | None:
    studies = resources.catalogue()
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
    key = _token_key(served)
    if key not in st.session_state and st.query_params.get("token"):
        st.session_state[key] = st.query_params["token"]  # read once; the session keeps it
    if key in st.session_state:
        return st.session_state[key]
    st.title(served.design.title)
    code = st.query_params.get("code")
    if code is None:
        with st.form("enrol"):
            code = st.text_input("Enrolment code from your invitation", max_chars=32)
            if not st.form_submit_button("Start", type="primary"):
                return None
    if _enrol(served, code) is not None:
        st.rerun()  # draw the first step afresh: this run already drew the enrolment screen's title
    return None


def _enrol(served: ServedStudy, code: str) -> str | None:
    throttle, client = resources.login_throttle(), f"enrol:{resources.client_address()}"
    wait = throttle.wait_seconds(client)
    if wait > 0:
        st.error(f"Too many wrong codes. Please wait {wait:.0f} seconds and try again.")
        return None
    if not code_matches(served.service.engine, served.design.id, code):
        throttle.failed(client)
        st.error("That enrolment code is not right for this study. Check your invitation and type it again.")
        return None
    throttle.succeeded(client)
    token = served.service.enrol()
    st.session_state[_token_key(served)] = token
    # The URL now carries the token instead of the code: a reload or bookmark resumes, never re-enrols.
    st.query_params.clear()
    st.query_params.update({"study": served.design.id, "token": token})
    return token


# ---------------------------------------------------------------- answering


def _idempotency_key(step_key: str) -> str:
    return st.session_state.setdefault(f"idem:{step_key}", uuid.uuid4().hex)


def _submit(served: ServedStudy, token: str, step_key: str, answer: dict[str, Any]) -> None:
    """Widget callback: record the answer; the rerun that follows shows the next step."""
    try:
        served.service.submit(token, step_key, answer, _idempotency_key(step_key))
    except ReplayedSubmit:
        pass  # a double click: the first click was recorded
    except NotCurrentStep:
        st.session_state["notice"] = ("That screen had already been answered (perhaps in another tab or window). "
                                      "You are now at your current step.")
    except InvalidAnswer as error:
        st.session_state["problem"] = str(error)


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
        answers[name] = st.selectbox(name.replace("_", " ").capitalize(), options, index=None,
                                     placeholder="Choose ...", key=f"{step.key}:{name}")
    _continue(served, token, step, answers)


def _instructions(served: ServedStudy, token: str, step: Step) -> None:
    _progress(step)
    st.subheader("How this works")
    st.markdown(step.content["text"])
    st.caption("Take the time you need. Hover over an image and press its expand button to see it larger. "
               "Your answers are saved as you go; if the page closes, open the same link to continue.")
    st.button("Start", type="primary", key=f"go:{step.key}", on_click=_submit, args=(served, token, step.key, {}))


def _trial(served: ServedStudy, token: str, step: Step) -> None:
    content = step.content
    _progress(step)
    image_side, decision_side = st.columns([5, 4], gap="large")
    with decision_side:
        heading = "Practice case" if content["practice"] else f"Case {content['trial_index'] + 1} of " \
                                                              f"{content['n_trials']}"
        st.subheader(heading)
        overlay = _ai_panel(served, token, step) if content["show_ai"] else None
        if content.get("initial"):
            first = content["initial"]
            st.caption(f"Your first reading: **{first['label']}**, {first['confidence']}% sure.")
        if content["phase"] == "initial" and content["arm"] == "verify":
            st.caption("Decide on your own first. You will then see the AI's suggestion and can decide again.")
        _decision(served, token, step, content["class_names"])
    with image_side:
        # the overlay adds its colour bar on the right; the radiograph keeps its 512 px either way
        st.image(overlay if overlay is not None else resources.image_png(served.design.id, content["case_id"]),
                 output_format="PNG")


def _ai_panel(served: ServedStudy, token: str, step: Step) -> bytes | None:
    """The AI's label, calibrated confidence and overlay toggle; returns the overlay to show, if on."""
    ai = step.content["ai"]
    with st.container(border=True):
        # "probability of <label>", not "confident": with a decision threshold below 50% the AI can
        # suggest a label whose calibrated probability is under one half, and "48% confident" in a
        # suggestion would read as a contradiction.
        confidence = (f" · probability of {ai['label']}: {ai['confidence']:.0%}" if ai.get("confidence") is not None
                      else "")
        st.markdown(f"**AI suggestion: {ai['label']}**{confidence}")
        st.caption("The probability is calibrated: of cases given 80%, about 80% have that finding.")
        overlay = ai.get("overlay")
        if overlay is None:
            st.caption("No heat map is shown for this case.")
            return None
        png = resources.overlay_png(served.design.id, step.content["case_id"], overlay["method"], overlay["target"])
        if png is None:
            st.caption("The heat map for this case is unavailable.")
            return None
        toggle_key = f"overlay:{step.key}"
        visible = st.toggle("Show the AI's heat map", value=True, key=toggle_key, on_change=_log_toggle,
                            args=(served, token, step.key, toggle_key))
        st.caption(LEGEND if visible else "The heat map is hidden; switch it on to see where the AI looked.")
        return png if visible else None


def _log_toggle(served: ServedStudy, token: str, step_key: str, toggle_key: str) -> None:
    try:
        served.service.record_toggle(token, step_key, bool(st.session_state[toggle_key]), uuid.uuid4().hex)
    except (NotCurrentStep, ReplayedSubmit):
        pass  # the step moved on in another tab; the next render shows where the participant is


def _decision(served: ServedStudy, token: str, step: Step, class_names: list[str]) -> None:
    touched_key = f"touched:{step.key}"
    confidence_key = f"confidence:{step.key}"
    st.slider("How sure are you? (0 = guessing, 100 = certain)", 0, 100, 50, key=confidence_key,
              on_change=st.session_state.__setitem__, args=(touched_key, True))
    touched = st.session_state.get(touched_key, False)
    # Always one caption here, only its text changes: a screen whose element layout never shifts
    # leaves no stale widgets behind while quick reruns (arrow keys on the slider) overlap.
    st.caption("Now choose your answer." if touched else "Move the slider to how sure you are; then choose your "
                                                              "answer.")
    columns = st.columns(len(class_names))
    for column, label in zip(columns, class_names, strict=True):
        column.button(label.capitalize(), type="primary", disabled=not touched, key=f"decide:{step.key}:{label}",
                      width="stretch", on_click=_decide,
                      args=(served, token, step.key, label, confidence_key, touched_key))


def _decide(served: ServedStudy, token: str, step_key: str, label: str, confidence_key: str,
            touched_key: str) -> None:
    if not st.session_state.get(touched_key):
        st.session_state["problem"] = "Move the confidence slider first."
        return
    _submit(served, token, step_key, {"label": label, "confidence": int(st.session_state[confidence_key])})


def _attention(served: ServedStudy, token: str, step: Step) -> None:
    content = step.content
    _progress(step)
    image_side, decision_side = st.columns([5, 4], gap="large")
    with decision_side:
        st.subheader("Check question")
        st.markdown(content["prompt"])
        for label in content["class_names"]:
            st.button(label.capitalize(), key=f"attention:{step.key}:{label}", width="stretch",
                      on_click=_submit, args=(served, token, step.key, {"label": label}))
    image_side.image(resources.image_png(served.design.id, content["case_id"]), output_format="PNG")


def _likert(step: Step, items: list[dict[str, Any]]) -> dict[str, int | None]:
    answers = {}
    for item in items:
        low, high = item["scale_min"], item["scale_max"]
        answers[item["id"]] = st.radio(item["text"], list(range(low, high + 1)), index=None, horizontal=True,
                                       key=f"{step.key}:{item['id']}",
                                       captions=[item["anchors"][0] if v == low else item["anchors"][1]
                                                 if v == high else "" for v in range(low, high + 1)])
    return answers


def _rating(served: ServedStudy, token: str, step: Step) -> None:
    content = step.content
    _progress(step)
    st.subheader("How did this clinician do?")
    with st.container(border=True):
        _rating_target(served, content)
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
        lines.append(f"- AI suggestion: **{target['ai_label']}** (probability {target['ai_confidence']:.0%})")
    lines.append(f"- Final decision: **{target['final_label']}** ({target['final_confidence']}% sure)")
    if "true_label" in target:
        lines.append(f"- Correct answer: **{target['true_label']}**")
    st.markdown("\n".join(lines))
    try:
        st.image(resources.thumbnail_png(served.design.id, target["case_id"]), output_format="PNG")
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
