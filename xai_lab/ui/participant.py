"""Participant pages: one screen per study step, always the step the server says is current.

One person, one participant. A participant arrives with a personal link ``?study=ID&token=...``
(`xai-lab invite`), with the study's shared link ``?study=ID&code=CODE`` (or types the code
into the box), which enrols, or with that link from a recruitment panel carrying the panel's
parameters (``&PROLIFIC_PID=...``): one panel id is one participant, in any browser
(`xai_lab.study.recruitment`), sent back to the panel at the end. Once a session knows its token,
the page replaces the address bar's entry with the personal link and the server stores the token in
an HttpOnly cookie for this study, so this browser reopening the shared link resumes the same
participant; a new browser with the code is a new participant. Each step then adds one history
entry of the personal link, so Back mid-study shows the current step (as oTree does) instead of
leaving the study.
The personal link is shown under "Continue later" for other devices. The page is always drawn
from `service.resume`, so reload, Back and a second tab land on the current step, and an answer
to any other step is refused by the service (and shown here as a calm notice, not an error).

Nothing here decides anything: the arm, the case, what the AI shows and what an answer may be
come from `StudyService`; the page lays them out. Every answer carries an idempotency key made
once per step and session, so a double click records one answer.
"""

from __future__ import annotations

import logging

import streamlit as st
from sqlalchemy.exc import InterfaceError, OperationalError

from xai_lab.errors import ConfigError, XaiLabError
from xai_lab.study.access import (
    BROWSER_COOKIE,
    code_matches,
    legacy_participant_cookie,
    participant_cookie,
)
from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.recruitment import PanelArrival, panel_arrival
from xai_lab.study.service import EnrolmentClosed, NotCurrentStep, Step, UnknownToken
from xai_lab.ui import address_bar, resources
from xai_lab.ui.answering import next_step_key, notices, sentence
from xai_lab.ui.i18n import N_, _, use
from xai_lab.ui.screens import SCREENS

LOG = logging.getLogger(__name__)


class DatabaseUnavailable(XaiLabError):
    """The study database could not be reached; the page says so calmly."""


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
    use(served.design.language)  # every string of this run in the study's language
    token = _token(served)
    if token is None:
        return
    try:
        step = _current_step(served, token)
    except UnknownToken as error:
        st.session_state.pop(_token_key(served), None)
        st.error(sentence(str(error)))
        return
    notices()
    _someone_new(served, step)
    if step.status != "in_progress":
        _ended(served, token, step)
    else:
        screen = SCREENS[step.kind]  # every kind has one: checked when the screens load
        screen.draw(served, token, step)
        if screen.offers_leaving:
            _continue_later(served, token)
            _withdraw_box(served, token)
    address_bar.remember(served, token)
    address_bar.history_entry(served, token, step)


def _current_step(served: ServedStudy, token: str) -> Step:
    """The step an answer just led to (kept by `submit`, shown in the same transaction), else the
    current step from the database: one transaction per click, and reload or a second tab still
    reads the database."""
    kept = st.session_state.pop(next_step_key(served), None)
    return kept if kept is not None else served.service.resume(token)


def _unavailable() -> None:
    st.title(_("xai-lab study"))
    st.warning(_("The study server is busy or restarting, so this page cannot be shown right now. Please wait a "
               "minute and reload the page: your answers so far are saved and you will continue where you were."))


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
        st.info(_("No study is being served here. Researchers: start one with `xai-lab serve --design "
                "studies/demo.toml` (or `xai-lab demo`). Trainers: open the trainer page at /trainer."))
        return None
    if study_id not in studies:
        st.title(_("xai-lab study"))
        st.error(_("This study link is not recognised. Open the link from your invitation again, or ask the study "
                 "team for a new one."))
        return None
    return studies[study_id]


def _token_key(served: ServedStudy) -> str:
    return f"token:{served.design.id}"


def _token(served: ServedStudy) -> str | None:
    """This session's participant: kept in the session; else a personal link's token (asking first
    if this browser already holds another participant of the study); else the token this browser
    stored when it enrolled (so reopening the shared code link resumes, with a way to start as
    someone new); else a new enrolment through the code in the link or typed into the box."""
    key = _token_key(served)
    if key in st.session_state:
        return st.session_state[key]
    arrival = panel_arrival(served.design, st.query_params)
    if arrival is not None and not st.query_params.get("token"):
        return _panel_enrol(served, arrival)
    starting_anew = st.session_state.get(_anew_key(served), False)
    linked = st.query_params.get("token")
    remembered = None if starting_anew else _remembered_token(served)
    if linked and remembered and linked != remembered and served.service.knows(linked):
        return _ask_which_participant(served, linked, remembered)
    token = linked or remembered
    if token:
        st.session_state[key] = token  # read once; the session keeps it
        if not linked:
            st.session_state[_resumed_key(served)] = None  # resumed from the cookie: offer "someone new"
        return token
    st.title(served.design.title)
    code, tried = st.query_params.get("code"), f"code-tried:{served.design.id}"
    if code is not None and not st.session_state.get(tried):
        st.session_state[tried] = True  # a wrong code in the link counts once, not on every rerun
        if _enrol(served, code, once_per_browser=not starting_anew):
            st.rerun()  # draw the first step afresh: this run already drew the enrolment screen's title
    with st.form("enrol"):
        typed = st.text_input(_("Enrolment code from your invitation"), max_chars=32)
        started = st.form_submit_button(_("Start"), type="primary")
    if started and _enrol(served, typed, once_per_browser=False):
        st.rerun()
    return None


def _panel_enrol(served: ServedStudy, arrival: PanelArrival) -> str | None:
    """A recruitment panel's link (the study's code and the panel's parameters): the panel id's
    participant, enrolled now or resumed, whichever browser it comes from."""
    st.title(served.design.title)
    # the panel's page has no code box to retry in: reload, or go back to the panel
    if not _code_accepted(served, st.query_params.get("code") or "",
                          wait=N_("Too many attempts from this computer. Please wait {seconds} seconds and reload."),
                          wrong=N_("This study link is incomplete: it lacks the study's code. Please go back to the "
                                   "recruitment site and open the study from there again, or write to the study "
                                   "team.")):
        return None
    try:
        token, new = served.service.enrol_from_panel(arrival)
    except EnrolmentClosed as error:
        st.info(sentence(str(error)))
        return None
    if new:
        _count_enrolment(served)
    st.session_state[_token_key(served)] = token
    st.rerun()  # draw the participant's step afresh: this run drew the arrival's title
    return token


def _code_accepted(served: ServedStudy, code: str, wait: str, wrong: str) -> bool:
    """The study's code checked under the access guard's throttle (a shared link and a panel's link
    both carry it); `wait` and `wrong` (catalogue messages) say why not."""
    attempt = resources.access_guard().try_secret(
        _code_scope(served), resources.client_address(),
        lambda: code_matches(served.service.engine, served.design.id, code), enrolling=True)
    if attempt.wait_s > 0:
        st.error(_(wait).format(seconds=f"{attempt.wait_s:.0f}"))
    elif not attempt.matched:
        st.error(_(wrong))
    return attempt.wait_s <= 0 and attempt.matched


def _count_enrolment(served: ServedStudy) -> None:
    """A new participant through the code: the guard's per-computer enrolment count."""
    resources.access_guard().enrolled(_code_scope(served), resources.client_address())


def _code_scope(served: ServedStudy) -> str:
    return f"code:{served.design.id}"


def _anew_key(served: ServedStudy) -> str:
    return f"anew:{served.design.id}"


def _resumed_key(served: ServedStudy) -> str:
    return f"resumed:{served.design.id}"


def _ask_which_participant(served: ServedStudy, linked: str, remembered: str) -> None:
    """A personal link of another participant, in a browser that already takes part: never switch
    silently (a link sent by someone else would otherwise take this browser's place)."""
    st.title(served.design.title)
    st.warning(_("This browser is already taking part in this study, as a different participant from the one "
               "in the link you opened. Which participation do you want to continue?"))
    own, other = st.columns(2)
    if own.button(_("Continue my own participation"), type="primary", key="which:own"):
        st.session_state[_token_key(served)] = remembered
        st.rerun()
    if other.button(_("Continue the participation in this link"), key="which:link"):
        st.session_state[_token_key(served)] = linked
        st.rerun()
    st.caption(_("Choose the link's participation only if it is yours, for example a link you saved on "
               "another device. This browser then continues that one."))


def _someone_new(served: ServedStudy, step: Step) -> None:
    """On a page resumed from this browser's cookie (a shared ward computer, say): the person at the
    screen may not be the one who started. Offered on the first screen after resuming."""
    key = _resumed_key(served)
    if key not in st.session_state:
        return
    if st.session_state[key] is None:
        st.session_state[key] = step.key
    if st.session_state[key] != step.key:  # offered until the person answers (or finished, declined ...)
        return
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.caption(_("This browser is continuing the participation it started earlier."))
    if right.button(_("I am someone else: start as a new participant"), key="someone-new", type="tertiary"):
        for stale in (_token_key(served), key, f"code-tried:{served.design.id}", f"remembered:{served.design.id}"):
            st.session_state.pop(stale, None)
        st.session_state[_anew_key(served)] = True
        st.rerun()


def _remembered_token(served: ServedStudy) -> str | None:
    """The token this browser's cookie holds for the study, if it still belongs to the study (also
    under the cookie's name before 2026-12, `legacy_participant_cookie`)."""
    for name in (participant_cookie(served.design.id), legacy_participant_cookie(served.design.id)):
        token = st.context.cookies.get(name) if name else None
        if token and served.service.knows(token):
            return token
    return None


def _enrol(served: ServedStudy, code: str, once_per_browser: bool) -> str | None:
    """Enrol through the study's code. `once_per_browser`: a browser opening the code link in two tabs
    at once is one participant (the served app gives every browser an id cookie)."""
    if not _code_accepted(served, code,
                          wait=N_("Too many attempts from this computer. Please wait {seconds} seconds and try "
                                  "again."),
                          wrong=N_("That enrolment code is not right for this study. Check your invitation and type "
                                   "the code in the box below.")):
        return None
    guard = resources.access_guard()
    browser = st.context.cookies.get(BROWSER_COOKIE)
    try:
        if once_per_browser and browser:
            token, new = guard.browser_enrolments.enrol(f"{served.design.id}|{browser}",
                                                        lambda: served.service.enrol(via="code"))
        else:
            token, new = served.service.enrol(via="code"), True
    except EnrolmentClosed as error:
        st.info(sentence(str(error)))
        return None
    if new:
        _count_enrolment(served)
    else:  # this browser's participant from minutes ago: the person may not be the same one
        st.session_state[_resumed_key(served)] = None
    st.session_state[_token_key(served)] = token
    st.session_state.pop(_anew_key(served), None)
    return token


def _continue_later(served: ServedStudy, token: str) -> None:
    with st.expander(_("Continue later")):
        st.caption(_("Your answers are saved as you go. To come back to where you stopped, open your study link again "
                   "in this browser, or open this personal link on any device (keep it private: it is yours alone):"))
        st.code(address_bar.personal_link(served.design.id, token), language=None)


def _ended(served: ServedStudy, token: str, step: Step) -> None:
    _ended_message(served, step)
    spec = served.design.recruitment
    if spec.id_parameter is not None and served.service.arrived_from_panel(token):
        _back_to_panel(spec.completion_link() if step.status == "completed" else spec.screenout_url,
                       step.status == "completed")


def _back_to_panel(url: str, completed: bool) -> None:
    """Send a panel participant on to the panel (its completion or screen-out page): at once, with a
    button for a browser that blocks the redirect."""
    words = (_("Continue to the recruitment site to confirm your completion") if completed else
             _("Return to the recruitment site"))
    st.link_button(words, url, type="primary")
    st.caption(_("You are being taken back to the recruitment site. If nothing happens, press the button above."))
    address_bar.go_to(url, after_ms=1500)


def _ended_message(served: ServedStudy, step: Step) -> None:
    messages = {
        "completed": _("You have finished. Thank you for taking part; you can close this window."),
        "declined": _("You chose not to take part. Nothing else will be recorded; you can close this window."),
        "withdrawn": _("You have withdrawn from the study. Your answers have been deleted. You can close this "
                       "window.") if served.design.withdrawal == "delete" else
                     _("You have withdrawn from the study. Answers given so far are kept, as the consent information "
                       "said. You can close this window."),
    }
    st.title(served.design.title)
    st.success(messages.get(step.status, _("This participation has ended.")))
    st.caption(_("Your participant id is {participant_id}. Quote it if you write to the study team, for example to "
                 "ask for your answers to be erased.").format(participant_id=step.participant_id))


def _withdraw_box(served: ServedStudy, token: str) -> None:
    with st.expander(_("Stop taking part")):
        st.caption(_("You can stop at any time without giving a reason; your answers will be deleted.")
                   if served.design.withdrawal == "delete" else
                   _("You can stop at any time without giving a reason; answers given so far are kept, as the "
                     "consent information said."))
        sure = st.checkbox(_("I want to withdraw from this study"), key="withdraw:sure")
        if st.button(_("Withdraw"), disabled=not sure, key="withdraw:go"):
            try:
                served.service.withdraw(token)
            except NotCurrentStep:
                pass
            st.rerun()
