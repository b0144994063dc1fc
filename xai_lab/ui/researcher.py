"""Researcher dashboard: enrolment and arm balance, CONSORT flow, timing, data quality, exports.

Protected by the password of `xai_lab.study.access` (the app does not register this page at
all without one). Nothing from the database is read or drawn before a successful login.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from xai_lab.errors import XaiLabError
from xai_lab.paths import report_dir
from xai_lab.study.access import admin_password, enrolment_code, password_matches
from xai_lab.study.erasure import erase_participant, erasures
from xai_lab.study.export import export_payment, export_zip
from xai_lab.study.monitor import FAST_MEDIAN_MS, StudyStatus, list_study_ids, monitor_study
from xai_lab.ui import resources

SIGNED_IN = "researcher_signed_in"
RESEARCHER_SCOPE = "researcher"  # the one account the throttle guards


def render() -> None:
    st.title("Researcher dashboard")
    if not st.session_state.get(SIGNED_IN):
        _login()
        return
    engine = resources.database()
    study_ids = list_study_ids(engine)
    if not study_ids:
        st.info("No study in the database yet. Prepare one with `xai-lab study prepare studies/demo.toml`.")
        return
    top = st.columns([3, 1])
    study_id = top[0].selectbox("Study", study_ids, index=_default_index(study_ids))
    if top[1].button("Sign out"):
        st.session_state.pop(SIGNED_IN, None)
        st.rerun()
    status = monitor_study(engine, study_id)
    _overview(status)
    _links(study_id)
    _quality(status)
    _exports(study_id)
    _erasure(study_id)


def _default_index(study_ids: list[str]) -> int:
    served = [study_id for study_id in resources.catalogue() if study_id in study_ids]
    return study_ids.index(served[0]) if served else 0


def _login() -> None:
    try:
        expected = admin_password()
    except XaiLabError as error:
        st.error(str(error))
        return
    if expected is None:  # the app leaves this page out then; reached only if the setting vanished meanwhile
        st.error("No researcher password is configured; set XAI_LAB_ADMIN_PASSWORD and restart the server.")
        return
    guard, client = resources.access_guard(), resources.client_address()
    with st.form("login"):
        typed = st.text_input("Password", type="password", key="login:password")
        submitted = st.form_submit_button("Sign in", type="primary", key="login:submit")
    if not submitted:
        return
    attempt = guard.try_secret(RESEARCHER_SCOPE, client, lambda: password_matches(typed, expected))
    if attempt.wait_s > 0:
        st.error(f"Too many failed attempts. Wait {attempt.wait_s:.0f} seconds, then try again.")
        return
    if not attempt.matched:
        st.error("Wrong password.")
        return
    st.session_state[SIGNED_IN] = True
    st.rerun()


def _overview(status: StudyStatus) -> None:
    flow = status.flow
    arms = flow["by_arm"]
    cells = st.columns(6)
    cells[0].metric("Consented", flow["consented"],
                    help="Participants who agreed to take part. People who declined are in the flow chart.")
    cells[1].metric("In progress", sum(a.get("in_progress", 0) for a in arms.values()) + flow["not_yet_allocated"])
    cells[2].metric("Completed", sum(a.get("completed", 0) for a in arms.values()))
    cells[3].metric("Withdrawn", sum(a.get("withdrawn", 0) for a in arms.values()))
    cells[4].metric("Opened the link only", flow["opened_not_consented"],
                    help="Opened a study link but never answered the consent screen: not participants.")
    cells[5].metric("Median time per trial", "-" if status.median_rt_final_ms is None
                    else f"{status.median_rt_final_ms / 1000:.1f} s")
    left, right = st.columns([3, 2])
    with left:
        st.subheader("By arm and stratum")
        if status.by_arm:
            st.dataframe(pd.DataFrame(status.by_arm), hide_index=True)
        else:
            st.caption("Nobody has been allocated yet.")
    with right:
        st.subheader("Flow (CONSORT)")
        st.graphviz_chart(_flow_dot(flow))
    if status.median_rt_initial_ms is not None:
        st.caption(f"{status.trials} trials recorded; median initial answer (verify) "
                   f"{status.median_rt_initial_ms / 1000:.1f} s, final answer "
                   f"{status.median_rt_final_ms / 1000:.1f} s.")


def _flow_dot(flow: dict) -> str:
    lines = ["digraph { rankdir=TB; node [shape=box, fontname=sans];",
             f'opened [label="Opened a study link\\nn = {flow["enrolled"]}"];',
             f'left [label="Left before consent\\nn = {flow["opened_not_consented"]}"];',
             f'declined [label="Declined consent\\nn = {flow["declined_consent"]}"];',
             f'enrolled [label="Consented\\nn = {flow["consented"]}"];',
             f'waiting [label="Not yet allocated\\nn = {flow["not_yet_allocated"]}"];',
             "opened -> left; opened -> declined; opened -> enrolled; enrolled -> waiting;"]
    for arm, counts in sorted(flow["by_arm"].items()):
        node = "arm_" + "".join(ch if ch.isalnum() else "_" for ch in arm)
        lines.append(f'{node} [label="{arm}\\nallocated {counts["allocated"]}\\ncompleted {counts.get("completed", 0)}'
                     f'\\nwithdrawn {counts.get("withdrawn", 0)} (erased {counts.get("erased", 0)})'
                     f'\\nin progress {counts.get("in_progress", 0)}"];')
        lines.append(f"enrolled -> {node};")
    return "\n".join(lines + ["}"])


def _links(study_id: str) -> None:
    with st.expander("Enrolment"):
        code = enrolment_code(resources.database(), study_id)
        st.markdown(f"Enrolment code: `{code}`. Participant link (relative to this server): "
                    f"`/?study={study_id}&code={code}`. Personal links with one token each: "
                    f"`xai-lab invite --design FILE --n 20`.")
        if study_id not in resources.catalogue():
            st.caption("This server does not serve this study; start it with `xai-lab serve --design FILE`.")


def _quality(status: StudyStatus) -> None:
    st.subheader("Data quality")
    if not status.flags:
        st.caption("No flags. Rules: attention check failed; final confidence identical on every trial; median "
                   f"final answer under {FAST_MEDIAN_MS / 1000:.1f} s.")
        return
    st.dataframe(pd.DataFrame([vars(flag) for flag in status.flags]), hide_index=True)
    st.caption("Flags advise; they exclude nobody. Decide exclusions in the analysis plan.")


def _exports(study_id: str) -> None:
    st.subheader("Export")
    fmt = st.radio("Format", ["csv", "parquet"], horizontal=True, key="export_format")
    if st.button("Build export files"):
        st.session_state["export"] = (study_id, fmt, export_zip(resources.database(), study_id, fmt))
    built = st.session_state.get("export")
    if built and built[:2] == (study_id, fmt):
        st.download_button(f"Download {study_id}-export.zip", built[2], file_name=f"{study_id}-export.zip",
                           mime="application/zip", type="primary")
    try:
        with tempfile.TemporaryDirectory() as folder:
            export_payment(resources.database(), study_id, Path(folder) / "payment.csv")
            payment = (Path(folder) / "payment.csv").read_bytes()
    except XaiLabError:
        payment = None  # no recruitment panel: no payment file
    if payment is not None:
        st.download_button("Download the panel's payment file (panel ids: keep it apart from the data)", payment,
                           file_name=f"{study_id}-payment.csv", mime="text/csv")
    report = report_dir(study_id) / "report.html"
    if report.is_file():
        st.download_button("Download the analysis report (HTML)", report.read_bytes(), file_name="report.html",
                           mime="text/html")
    else:
        st.caption(f"No analysis report yet; `xai-lab analyze --study {study_id} --out {report.parent}` writes one.")


def _erasure(study_id: str) -> None:
    """Erasure on a participant's request (the same rules as `xai-lab erase`), and its audit trail."""
    with st.expander("Erase a participant on request"):
        st.caption("For a participant who asks the study team (not the study page) to withdraw. Their answers are "
                   "deleted or kept as the design's withdrawal policy promised; the audit trail records when, by "
                   "whom and why. The participant id is on the participant's last page.")
        with st.form("erase"):
            participant_id = st.text_input("Participant id", max_chars=32, placeholder="p0123456789ab")
            reason = st.text_input("Reason (one line, no health data)", max_chars=500)
            by = st.text_input("Erased by", max_chars=80)
            sure = st.checkbox("I have checked the id: this cannot be undone")
            go = st.form_submit_button("Erase", disabled=False)
        if go:
            if not sure:
                st.warning("Tick the box to confirm the id first.")
            else:
                try:
                    done = erase_participant(resources.database(), study_id, participant_id.strip(), reason, by)
                except XaiLabError as error:
                    st.error(str(error))
                else:
                    st.success(f"Erased {done.participant_id}: answers "
                               f"{'deleted' if done.deleted else 'kept (withdrawal policy keep)'}.")
        done = erasures(resources.database(), study_id)
        if done:
            st.dataframe(pd.DataFrame([vars(e) for e in done]), hide_index=True)
