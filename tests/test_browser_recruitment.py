"""Recruitment panels and the Back button in Chromium against `xai-lab serve`:

- a Prolific-style link completes and lands on the panel's completion URL with the code; a decline
  lands on the screen-out URL; the same PID opened again (another browser) resumes, never re-enrols;
  the PIDs are only in the payment file;
- arriving from an invitation page, Back mid-study shows the current step (one participant);
- a switch to another tab mid-trial is recorded on the trial (attention telemetry), with the viewport.
  Headless Chromium keeps every page's visibilityState "visible", so the switch shows here as the
  window losing focus (blurred_ms); for hidden_ms the page is then told its tab is hidden (document.hidden
  and a visibilitychange event, as a browser sends them) for two seconds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli, serving
from sqlalchemy import func, select
from support.chromium import VIEWPORT, idle
from support.panel_site import panel_site
from support.participant_pages import (
    Participant,
    answer_trial,
    arrive,
    code_link,
    complete,
    read_cases,
    start_reading,
    take_part,
)

from xai_lab.store.database import open_database
from xai_lab.store.schema import participants, trials
from xai_lab.study.access import enrolment_code

pytestmark = [pytest.mark.browser, pytest.mark.served]
PID = "60c0ffee0ddba11deadbeef1"
TAB_HIDDEN = """hidden => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


@pytest.fixture(scope="module")
def served(study_home: Path):
    """Study `pan` with a Prolific [recruitment] whose pages are the stand-in panel site's."""
    with panel_site() as site:
        recruitment = ("\n[recruitment]\npanel = \"prolific\"\n"
                       f"completion_url = \"{site.url('/complete')}?cc={{code}}\"\ncompletion_code = \"C0DE42\"\n"
                       f"screenout_url = \"{site.url('/screenout')}\"\n")
        with serving(study_home, "pan", edit=lambda text: text + recruitment, arms='["verify", "rely"]', n=3,
                     blocks="[2]") as (design, port):
            yield site, design, port


def people() -> int:
    with open_database().connect() as connection:
        return connection.execute(select(func.count()).select_from(participants)
                                  .where(participants.c.study_id == "pan")).scalar_one()


def panel_link(port: int, pid: str) -> str:
    code = enrolment_code(open_database(), "pan")
    return (f"http://127.0.0.1:{port}/?study=pan&code={code}&PROLIFIC_PID={pid}&STUDY_ID=5f00aa&"
            "SESSION_ID=abc123")


def test_a_prolific_link_completes_on_the_panel_and_a_second_visit_resumes(browser, served, tmp_path):
    site, design, port = served
    before = people()
    first, participant = arrive(browser, panel_link(port, PID), design, "panel")
    arm = take_part(participant, keyboard=False)
    assert people() == before + 1 and arm in ("verify", "rely")
    first.close()

    second = browser.new_context(viewport=VIEWPORT)  # the same PID from another browser: resumed, not enrolled
    page = second.new_page()
    page.goto(panel_link(port, PID))
    page.get_by_text("How this works").wait_for(timeout=30_000)
    page.wait_for_url("**token=**", timeout=30_000)  # the panel parameters left the address bar
    assert people() == before + 1 and "PROLIFIC_PID" not in page.url
    participant = Participant(page, design, arm)
    complete(participant, keyboard=False)
    page.wait_for_url(site.url("/complete") + "?cc=C0DE42", timeout=30_000)
    page.get_by_text("/complete?cc=C0DE42").wait_for()
    second.close()

    declining = browser.new_context(viewport=VIEWPORT).new_page()
    declining.goto(panel_link(port, "70c0ffee0ddba11deadbeef2"))
    declining.get_by_role("button", name="I do not want to take part").click()
    declining.wait_for_url(site.url("/screenout"), timeout=30_000)
    assert people() == before + 2

    out = tmp_path / "export"
    assert run_cli("export", "--study", "pan", "--out", str(out)).code == 0
    assert not [path for path in out.rglob("*") if path.is_file() and PID in path.read_text(errors="replace")]
    assert run_cli("export", "--study", "pan", "--payment", str(tmp_path / "pay.csv")).code == 0
    payment = pd.read_csv(tmp_path / "pay.csv", dtype=str).set_index("PROLIFIC_PID")
    assert payment.loc[PID, "status"] == "completed" and payment.loc[PID, "visits"] == "2"
    assert payment.loc["70c0ffee0ddba11deadbeef2", "status"] == "declined"


def test_back_mid_study_shows_the_current_step(browser, served):
    site, design, port = served
    site.study_link = f"http://127.0.0.1:{port}/?study=pan&code={enrolment_code(open_database(), 'pan')}"
    before = people()
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(site.url("/invite"))
    page.locator("#go").click()  # from the invitation page into the study
    participant = Participant(page, design, "back")
    take_part(participant, keyboard=False)
    step = participant.key()
    assert step.startswith("instructions")
    page.get_by_role("button", name="Start", exact=True).click()
    step = participant.settle(step)
    participant.shot("before-back")

    page.go_back()  # the Back reflex mid-study
    idle(page)
    page.get_by_text("Step ", exact=False).first.wait_for(timeout=30_000)
    assert page.url.startswith(f"http://127.0.0.1:{port}/") and "Invitation" not in page.content()
    assert participant.key() == step and people() == before + 1
    participant.shot("after-back")
    page.go_back()
    idle(page)
    assert participant.key() == step and people() == before + 1  # a second Back: still the study's page
    context.close()


def test_a_tab_switch_mid_trial_is_recorded_on_the_trial(browser, served):
    site, design, port = served
    context, participant = arrive(browser, code_link(port, "pan"), design, "telemetry")
    page = participant.page
    take_part(participant, keyboard=False)
    key = read_cases(participant, start_reading(participant), until="trial:0")  # past the practice
    page.locator(".viewer[data-ready='true']").wait_for(timeout=30_000)
    session = context.new_cdp_session(page)
    # Playwright tells every page it has focus; a real browser does not once another tab is in front
    session.send("Emulation.setFocusEmulationEnabled", {"enabled": False})

    tabs = browser.new_browser_cdp_session()  # another tab in front for two seconds, then back
    this = session.send("Target.getTargetInfo")["targetInfo"]
    other = tabs.send("Target.createTarget", {"url": "about:blank", "newWindow": False,
                                              "browserContextId": this["browserContextId"]})
    page.wait_for_timeout(2000)
    tabs.send("Target.closeTarget", {"targetId": other["targetId"]})
    tabs.send("Target.activateTarget", {"targetId": this["targetId"]})
    page.wait_for_timeout(1500)  # the viewer reports once the reader is back (after its 600 ms pause)
    idle(page)
    # Headless Chromium never hides a page, so the page is told so, as a browser tells it when its tab
    # goes to the background: document.hidden and a visibilitychange event, for two seconds
    page.evaluate(TAB_HIDDEN, True)
    page.wait_for_timeout(2000)
    page.evaluate(TAB_HIDDEN, False)
    page.wait_for_timeout(1500)
    idle(page)
    participant_id = participant.service.resume(participant.token).participant_id
    while key.startswith("trial:0"):
        answer_trial(participant, key, "normal", keyboard=False)
        key = participant.settle(key)
    with open_database().connect() as connection:
        row = connection.execute(select(trials).where(trials.c.participant_id == participant_id,
                                                      trials.c.trial_index == 0)).mappings().one()
    assert row["blurred_ms"] >= 1500 and row["hidden_ms"] >= 1500, dict(row)
    assert (row["viewport_width"], row["viewport_height"]) == (VIEWPORT["width"], VIEWPORT["height"])
    context.close()
