"""What the participant page writes into the browser's address bar and history.

- `remember`: once per session, the personal link replaces the address (so Back never leads to a link
  without it) and the server stores the token in an HttpOnly cookie (`xai_lab.ui.web`);
- `history_entry`: one history entry per step, so Back mid-study stays on the study's page;
- `go_to`: the redirect back to a recruitment panel when participation ends.

Each is a few lines of script in an `st.html` element; values enter them as JSON (`script_value`).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import streamlit as st

from xai_lab.study.access import REMEMBER_PATH
from xai_lab.study.catalogue import ServedStudy
from xai_lab.study.service import Step


def remember(served: ServedStudy, token: str) -> None:
    """Once per session: put the personal link into the address bar (replacing the history entry,
    so Back never leads to a link without it) and have the server store the token in an
    HttpOnly cookie (`xai_lab.ui.web`), so that this browser reopening the shared code link
    resumes this participant instead of enrolling a new one."""
    remembered = f"remembered:{served.design.id}"
    if st.session_state.get(remembered) == token:
        return
    st.session_state[remembered] = token
    st.html(remember_script(served.design.id, token), unsafe_allow_javascript=True, width="content")


def history_entry(served: ServedStudy, token: str, step: Step) -> None:
    """One browser history entry per step (the personal link, marked with the step's key), so the Back
    reflex mid-study lands on the study's page, which shows the current step, instead of leaving for
    the page before the invitation. A reload or a rerun of the same step adds none (the entry is marked)."""
    st.html(step_entry_script(served.design.id, token, f"{step.key}|{step.status}"), unsafe_allow_javascript=True,
            width="content")


def step_entry_script(study_id: str, token: str, marker: str) -> str:
    values, mark = script_value({"study": study_id, "token": token}), script_value(marker)
    return (f"<script>(function () {{ const v = {values}; const mark = {mark};"
            "const state = window.history.state || {};"
            "if (state.xaiLabStep === mark) { return; }"
            "const url = new URL(window.location.href); url.search = new URLSearchParams(v).toString();"
            "window.history.pushState(Object.assign({}, state, {xaiLabStep: mark}), '', url.toString());"
            "})();</script>")


def script_value(value: object) -> str:
    """A value as a JavaScript literal inside <script>: JSON, with "</" broken so it cannot end the script."""
    return json.dumps(value).replace("</", "<\\/")


def remember_script(study_id: str, token: str) -> str:
    values = script_value({"study": study_id, "token": token})
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


def go_to(url: str, after_ms: int) -> None:
    """Load `url` in this tab after `after_ms` (time to read why; the page also shows a button)."""
    st.html(f"<script>setTimeout(function () {{ window.location.assign({script_value(url)}); }}, {int(after_ms)});"
            "</script>", unsafe_allow_javascript=True, width="content")
