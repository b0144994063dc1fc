"""Resuming from the participant cookie, in Chromium against `xai-lab serve`: the cookie belongs to
one person and one study.

- Studies `demo-x` and `demo_x` keep separate participants in one browser.
- A personal link of another participant, opened in a browser that already takes part, asks
  before switching; the answer decides which participant the browser continues.
- On a shared computer, "I am someone else" on the resumed code link enrols a new participant.
- One fresh browser opening the code link in two tabs at once is one participant.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import run_cli, served_app, use_lab, write_study
from sqlalchemy import func, select
from support.chromium import VIEWPORT, idle, stored_cookie

from xai_lab.store.database import open_database
from xai_lab.store.schema import participants
from xai_lab.study.access import enrolment_code
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import StudyService

pytestmark = [pytest.mark.served, pytest.mark.browser]
STUDIES = ("demo-x", "demo_x")


@pytest.fixture(scope="module")
def served(study_home: Path):
    """Two studies whose ids differ only by '-' and '_', prepared and served by one `xai-lab serve`."""
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        patch.delenv("XAI_LAB_DATABASE_URL", raising=False)
        designs = [write_study(study_home, study_id=study, arms='["verify", "rely"]', n=3, blocks="[2]")
                   for study in STUDIES]
        for design in designs:
            assert run_cli("study", "prepare", str(design)).code == 0
        with served_app(designs, study_home) as port:
            yield study_home, port


def count(study: str) -> int:
    with open_database().connect() as connection:
        return connection.execute(select(func.count()).select_from(participants)
                                  .where(participants.c.study_id == study)).scalar_one()


def code_link(port: int, study: str) -> str:
    return f"http://127.0.0.1:{port}/?study={study}&code={enrolment_code(open_database(), study)}"


def token_of(page) -> str:
    return parse_qs(urlparse(page.url).query)["token"][0]


def enrolled(page, link: str) -> str:
    """Open `link`, wait for the consent screen and the personal link in the address bar; the token."""
    page.goto(link)
    page.get_by_role("button", name="I agree to take part").wait_for(timeout=30_000)
    page.wait_for_url("**token=**", timeout=30_000)
    idle(page)
    return token_of(page)


def test_studies_whose_ids_differ_only_by_a_dash_keep_their_own_participants(browser, served):
    home, port = served
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    before = {study: count(study) for study in STUDIES}
    dash = enrolled(page, code_link(port, "demo-x"))
    assert stored_cookie(context, "xai_lab_demo-x")["value"] == dash
    underscore = enrolled(page, code_link(port, "demo_x"))
    assert stored_cookie(context, "xai_lab_demo_x")["value"] == underscore and underscore != dash
    assert enrolled(page, code_link(port, "demo-x")) == dash  # back to the first: resumed, not enrolled again
    assert enrolled(page, code_link(port, "demo_x")) == underscore
    assert {study: count(study) - before[study] for study in STUDIES} == {"demo-x": 1, "demo_x": 1}
    context.close()


def test_another_participants_link_asks_before_switching(browser, served):
    home, port = served
    design = load_design(home / "demo-x.toml")
    others = StudyService(open_database(), design, load_case_set(design)).enrol(via="invite")
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    own = enrolled(page, code_link(port, "demo-x"))
    stored_cookie(context, "xai_lab_demo-x")
    before = count("demo-x")

    page.goto(f"http://127.0.0.1:{port}/?study=demo-x&token={others}")
    page.get_by_text("This browser is already taking part in this study").wait_for(timeout=30_000)
    page.screenshot(path=str(home / "which-participant.png"))
    page.get_by_role("button", name="Continue my own participation").click()
    page.wait_for_url(f"**token={own}**", timeout=30_000)  # the address bar shows this browser's own link
    assert stored_cookie(context, "xai_lab_demo-x")["value"] == own

    page.goto(f"http://127.0.0.1:{port}/?study=demo-x&token={others}")  # asked again: nothing was switched
    page.get_by_role("button", name="Continue the participation in this link").click()
    page.get_by_role("button", name="I agree to take part").wait_for(timeout=30_000)
    deadline = time.monotonic() + 30
    while stored_cookie(context, "xai_lab_demo-x")["value"] != others:  # chosen, so now remembered
        assert time.monotonic() < deadline, "the cookie was not switched to the chosen participant"
        time.sleep(0.05)
    assert token_of(page) == others and count("demo-x") == before
    context.close()


def test_a_shared_computer_can_start_as_someone_new(browser, served):
    home, port = served
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    first = enrolled(page, code_link(port, "demo_x"))
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_text("About you").wait_for(timeout=30_000)
    stored_cookie(context, "xai_lab_demo_x")
    before = count("demo_x")

    page.goto(code_link(port, "demo_x"))  # the next clinician opens the shared link on this computer
    page.get_by_text("This browser is continuing the participation it started earlier").wait_for(timeout=30_000)
    page.get_by_text("About you").wait_for()  # the previous person's step
    page.get_by_role("button", name="I am someone else: start as a new participant").click()
    page.get_by_role("button", name="I agree to take part").wait_for(timeout=30_000)
    page.wait_for_url("**token=**", timeout=30_000)
    deadline = time.monotonic() + 30
    while token_of(page) == first:
        assert time.monotonic() < deadline, "the address bar kept the previous participant's link"
        time.sleep(0.05)
    second = token_of(page)
    assert count("demo_x") == before + 1
    deadline = time.monotonic() + 30
    while stored_cookie(context, "xai_lab_demo_x")["value"] != second:
        assert time.monotonic() < deadline, "the cookie still holds the previous participant"
        time.sleep(0.05)
    page.goto(code_link(port, "demo_x"))  # and this browser now resumes the new participant
    page.wait_for_url(f"**token={second}**", timeout=30_000)
    context.close()


def test_two_tabs_opened_at_once_make_one_participant(browser, served):
    home, port = served
    before = count("demo-x")
    context = browser.new_context(viewport=VIEWPORT)
    tabs = [context.new_page(), context.new_page()]
    link = code_link(port, "demo-x")
    for tab in tabs:  # both navigations start before either page has loaded
        tab.evaluate("url => { window.location.href = url; }", link)
    for tab in tabs:
        tab.get_by_role("button", name="I agree to take part").wait_for(timeout=30_000)
        tab.wait_for_url("**token=**", timeout=30_000)
    assert token_of(tabs[0]) == token_of(tabs[1])
    assert count("demo-x") == before + 1
    context.close()
