"""The reading screens: a trial or practice case (image in the viewer, the AI's advice and map, the
decision) and an attention check laid out like a trial."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

import streamlit as st

from xai_lab.explain.request import VENDOR_MAP
from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.service import NotCurrentStep, ReplayedSubmit, Step
from xai_lab.study.steps.attention import AttentionContent
from xai_lab.study.steps.trial import TrialContent
from xai_lab.ui import resources
from xai_lab.ui.answering import progress, submit
from xai_lab.ui.i18n import N_, _
from xai_lab.ui.viewer import show_viewer
from xai_lab.ui.wording import adviser, percent, percent_number, percent_to, threshold_decimals, verbal

# Case images go to the viewer (`xai_lab.ui.viewer`) at their stored resolution, at most 1024 px:
# the browser scales and windows them, so the server encodes each image once (cached).
# What the map means, per look (explain/looks.py); the last sentence is the same everywhere.
# {adviser} is "the AI", or a source factor's label ("a senior radiologist"), in the study's language.
LEGENDS = {
    "contour": N_("The yellow outline marks the area that most influenced {adviser}'s suggestion; the image stays "
                  "visible under the light tint. It shows where {adviser} looked, not whether it is right."),
    "side_by_side": N_("Left: the image as it is. Right: the yellow outline marks the area that most influenced "
                       "{adviser}'s suggestion. It shows where {adviser} looked, not whether it is right."),
    "heatmap": N_("Brighter yellow marks the areas that most influenced {adviser}'s suggestion; dark purple, little "
                  "influence. It shows where {adviser} looked, not whether it is right."),
}
ON_DEMAND = N_("You may ask for the AI's suggestion before you decide, or decide without it.")
# Shown only when the model's test ECE supports it (`xai_lab.model.calibration.calibration_claim`).
CALIBRATED = N_("The AI's probabilities are calibrated: of cases given 80%, about 80% have the finding.")
NORMAL_MAP_NOTE = N_("For a normal suggestion the map marks what the AI judged normal; it does not mark a finding.")
# A vendor's advice set (`xai-lab advice import`) brings its own maps: participants are told whose map it is.
VENDOR_MAP_NOTE = N_("The map comes from the AI's vendor with its suggestion; this study did not compute it.")
NO_MAP_FOR_NORMAL = N_("No map is shown when the AI suggests normal: it would mark normal areas, and colour is easily "
                       "read as a finding.")


def trial(served: ServedStudy, token: str, step: Step) -> None:
    content = cast(TrialContent, step.content)
    progress(step)
    image_side, decision_side = st.columns([5, 4], gap="large")
    with decision_side:
        heading = _("Practice case") if content["practice"] else _("Case {number} of {total}").format(
            number=content["trial_index"] + 1, total=content["n_trials"])
        st.subheader(heading)
        shown_map = _ai_panel(served, token, step) if content["show_ai"] else None
        if content.get("initial"):
            first = content["initial"]
            if content.get("question") == "probability":
                st.caption(_("Your first reading: **{label}**, probability of {finding} {score}%.").format(
                    label=first["label"], finding=content["positive_label"], score=first["score"]))
            else:
                st.caption(_("Your first reading: **{label}**, {confidence}% sure.").format(
                    label=first["label"], confidence=first["confidence"]))
        if content["phase"] == "initial" and content["arm"] == "verify":
            st.caption(_("Decide on your own first. You will then see the AI's suggestion and can decide again."))
        if content.get("on_demand") and not content.get("ai_requested"):
            st.caption(_(ON_DEMAND))
            st.button(_("Ask the AI"), key=f"ask:{step.key}", on_click=_ask_ai, args=(served, token, step.key))
        _decision(served, token, step, content)
    with image_side:
        layer, visible, look = shown_map or (None, False, "")
        viewer_key = f"viewer:{step.key}"
        show_viewer(viewer_key, resources.reading_png(served.design.id, content["case_id"]), layer,
                    layer_visible=visible, side_by_side=look == "side_by_side", heatmap_legend=look == "heatmap",
                    on_activity=lambda: _log_viewer(served, token, step.key, viewer_key))


def _ask_ai(served: ServedStudy, token: str, step_key: str) -> None:
    try:
        served.service.request_ai(token, step_key, uuid.uuid4().hex)
    except (NotCurrentStep, ReplayedSubmit):
        pass  # the step moved on in another tab; the next render shows where the participant is


def _log_viewer(served: ServedStudy, token: str, step_key: str, viewer_key: str) -> None:
    state = st.session_state.get(viewer_key) or {}
    activity = state.get("activity") if hasattr(state, "get") else getattr(state, "activity", None)
    if not activity or not isinstance(activity, Mapping):  # a browser may send anything: only a report counts
        return
    try:
        served.service.record_viewer(token, step_key, dict(activity), uuid.uuid4().hex)
    except (NotCurrentStep, ReplayedSubmit, InvalidAnswer):
        pass  # another tab moved on, or a malformed report: the trial is recorded without it


def _ai_panel(served: ServedStudy, token: str, step: Step) -> tuple[bytes, bool, str] | None:
    """The AI's label, calibrated probability and map toggle; returns (map layer, shown, look)
    when the step has a map."""
    ai = cast(TrialContent, step.content)["ai"]
    with st.container(border=True):
        source = ai.get("source", "AI")
        st.markdown(_("**AI suggestion: {label}**").format(label=ai["label"]) if source == "AI" else
                    _("**Suggestion from {source}: {label}**").format(source=source, label=ai["label"]))
        if ai.get("confidence") is not None and ai.get("display") == "verbal":
            said = _("{adviser} considers {label} {likelihood}.").format(
                adviser=adviser(source), label=ai["label"], likelihood=verbal(ai["confidence"]))
            st.markdown(said[:1].upper() + said[1:])
        elif ai.get("confidence") is not None:
            st.markdown(advice_probability(ai, step.content["class_names"]))
            if ai.get("calibrated", True) and source == "AI":  # only when the model card supports it
                st.caption(_(CALIBRATED))
        overlay = ai.get("overlay")
        if overlay is None:
            st.caption(_(NO_MAP_FOR_NORMAL) if ai.get("withheld_for_normal") else _("No map is shown for this case."))
            return None
        look = overlay.get("look", "heatmap")
        png = resources.layer_png(served.design.id, step.content["case_id"], look, overlay.get("model"),
                                  overlay.get("map_source", "model"))
        if png is None:
            st.caption(_("The map for this case could not be loaded. Please decide from the image."))
            return None
        toggle_key = f"overlay:{step.key}"
        vendors = overlay.get("method") == VENDOR_MAP
        # a source factor names another adviser; a vendor's map is labelled as the vendor's
        label = _("Show the vendor's map") if vendors else _("Show the AI's map") if source == "AI" else \
            _("Show the map")
        visible = st.toggle(label, value=True, key=toggle_key, on_change=_log_toggle,
                            args=(served, token, step.key, toggle_key))
        legend = _(LEGENDS[look]).format(adviser=adviser(source)) + (" " + _(NORMAL_MAP_NOTE) if ai.get("no_finding")
                                                                     else "")
        st.caption(legend if visible else _("The map is hidden. Switch it on to see where the AI looked."))
        if vendors:
            st.caption(_(VENDOR_MAP_NOTE))
        return png, visible, look


def advice_probability(ai: dict[str, Any], class_names: list[str]) -> str:
    """The advice's number in words that cannot contradict the label: for two classes, the
    probability of the finding, the threshold, and which side of it the AI is on, ending with the
    suggestion itself (a sentence that ended "... suggests lesion from 53%" under a "normal"
    suggestion was skimmed as the opposite advice); otherwise the probability of the suggested
    label, which is the highest the AI gives."""
    threshold = ai.get("threshold")
    who = adviser(ai.get("source", "AI"))
    if threshold is None or len(class_names) != 2:
        return _("Probability of {label}: {percent}.").format(label=ai["label"], percent=percent(ai["confidence"]))
    finding = class_names[1]
    p_finding = ai["confidence"] if ai["label"] == finding else 1 - ai["confidence"]
    # whole percentages, unless the threshold needs decimals (0.996 is not "100%"); then both get them
    decimals = threshold_decimals(threshold)
    shown_cut = percent_number(threshold, decimals)
    number = percent(p_finding) if decimals == 0 else percent_to(p_finding, decimals)
    # rounding can put a value just under the threshold onto it ("43%" below a threshold of 43%)
    if p_finding < threshold and round(100 * p_finding, decimals) >= round(100 * threshold, decimals):
        number = _("just under {cut}%").format(cut=shown_cut)
    wording = (_("Probability of {finding}: {number}, below {who}'s threshold of {cut}%, so {who} suggests {label}.")
               if p_finding < threshold else
               _("Probability of {finding}: {number}, at or above {who}'s threshold of {cut}%, so {who} suggests "
                 "{label}."))
    return wording.format(finding=finding, number=number, who=who, cut=shown_cut, label=ai["label"])


def _log_toggle(served: ServedStudy, token: str, step_key: str, toggle_key: str) -> None:
    try:
        served.service.record_toggle(token, step_key, bool(st.session_state[toggle_key]), uuid.uuid4().hex)
    except (NotCurrentStep, ReplayedSubmit):
        pass  # the step moved on in another tab; the next render shows where the participant is


def _decision(served: ServedStudy, token: str, step: Step, content: dict[str, Any]) -> None:
    touched_key = f"touched:{step.key}"
    confidence_key = f"confidence:{step.key}"
    question = content.get("question", "confidence")
    label = (_("How sure are you? (0 = guessing, 100 = certain)") if question == "confidence" else
             _("How likely is it that this image shows {finding}? (0 = certainly not, 100 = certainly)").format(
                 finding=content["positive_label"]))
    st.slider(label, 0, 100, 50, key=confidence_key, on_change=st.session_state.__setitem__,
              args=(touched_key, True))
    touched = st.session_state.get(touched_key, False)
    # Always one caption here, only its text changes: a screen whose element layout never shifts
    # leaves no stale widgets behind while quick reruns (arrow keys on the slider) overlap.
    st.caption(_("Now choose your answer.") if touched else _("Move the slider to how sure you are; then choose your "
                                                                "answer."))
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
    said = " " + _("The AI suggested {label}.").format(label=ai) if ai else ""
    verdict = _("Your answer matches.") if answer == truth else _("You answered {label}.").format(label=answer)
    return (_("Practice case: this image shows {label}.").format(label=truth) + f" {verdict}{said} "
            + _("The study cases will not say."))


def _decide(served: ServedStudy, token: str, step_key: str, label: str, question: str, slider_key: str,
            touched_key: str, feedback: str | None = None) -> None:
    # Whether the slider was moved is the service's rule (a trial answer needs slider_moved = true); the
    # page reports what the reader did and shows the refusal as "Please move the slider first."
    submit(served, token, step_key, {"label": label, question: int(st.session_state[slider_key]),
                                     "slider_moved": bool(st.session_state.get(touched_key))})
    if feedback and "problem" not in st.session_state:
        st.session_state["notice"] = feedback


def attention(served: ServedStudy, token: str, step: Step) -> None:
    content = cast(AttentionContent, step.content)
    progress(step)
    image_side, decision_side = st.columns([5, 4], gap="large")
    with decision_side:
        st.subheader(_("Check question"))
        st.markdown(content["prompt"])
        # side by side, as on every trial: the check must look like the task it checks
        for column, label in zip(st.columns(len(content["class_names"])), content["class_names"], strict=True):
            column.button(label.capitalize(), key=f"attention:{step.key}:{label}", width="stretch",
                          on_click=submit, args=(served, token, step.key, {"label": label}))
    with image_side:
        show_viewer(f"viewer:{step.key}", resources.reading_png(served.design.id, content["case_id"]))
