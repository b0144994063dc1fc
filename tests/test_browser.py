"""End to end in real headless Chromium: a verify and a rely session against a served app, then the export.

Needs Debian's chromium (`support.chromium`; the `browser` fixture is in conftest.py). Screenshots
of every screen go to test-artifacts/browser/.

The verify session is answered with the keyboard only (focus, arrow keys, Enter/Space); the
rely session with the mouse.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from conftest import run_cli, serving
from sqlalchemy import select
from support.chromium import VIEWPORT, idle, stored_cookie
from support.participant_pages import ARTIFACTS, Participant, complete, in_viewport, take_part

from xai_lab.store.database import open_database
from xai_lab.store.schema import participants
from xai_lab.study.access import enrolment_code
from xai_lab.study.export import table_file

pytestmark = [pytest.mark.browser, pytest.mark.served]

@pytest.fixture(scope="module")
def served(study_home: Path):
    """A two-arm, three-trial study `b` in the module's lab, served by `xai-lab serve`."""
    # every AI trial shows a map (normal suggestions too), so each session meets the viewer's map;
    # verify reads the contour look, rely the side-by-side one
    def every_trial_a_map(text: str) -> str:
        return text.replace('method = "gradcam"', 'method = "gradcam"\nnormal_advice = "explain"\n'
                            '[explanation.look]\nrely = "side_by_side"')

    with serving(study_home, "b", edit=every_trial_a_map, arms='["verify", "rely"]', n=3, blocks="[2]") as (design,
                                                                                                          port):
        yield study_home, design, port


def test_verify_and_rely_sessions_in_chromium(browser, served, tmp_path):
    home, design, port = served
    code = enrolment_code(open_database(), "b")
    done, tokens = {}, []
    for attempt in range(4):  # blocks of 2: the first two enrolments hold one of each arm
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?study=b&code={code}")
        keyboard = attempt == 0
        participant = Participant(page, design, "pending")
        arm = take_part(participant, keyboard)
        participant.arm_hint = arm
        if arm not in done:
            complete(participant, keyboard=arm == "verify")
            done[arm] = hashlib.sha256(participant.token.encode()).hexdigest()
        tokens.append(participant.token)
        context.close()
        if len(done) == 2:
            break
    assert set(done) == {"verify", "rely"}

    out = tmp_path / "export"
    assert run_cli("export", "--study", "b", "--out", str(out)).code == 0
    frame = pd.read_csv(table_file(out, "trials"))
    by_arm = {arm: frame[frame["arm"] == arm] for arm in ("verify", "rely")}
    assert len(by_arm["verify"]) == 3 and len(by_arm["rely"]) == 3
    assert by_arm["verify"]["initial_label"].notna().all() and by_arm["rely"]["initial_label"].isna().all()
    assert (by_arm["verify"]["final_confidence"] != 50).all()  # the slider was moved, not left in the middle
    assert frame.groupby("participant_id")["trial_index"].apply(sorted).map(list).eq([[0, 1, 2]] * 2).all()
    assert set(frame["final_label"]) <= {"normal", "lesion"}
    first = frame[frame["trial_index"] == 0]  # where check_viewer zoomed and changed the contrast
    assert (first["viewer_max_zoom"] > 1.4).all() and (first["viewer_window_changes"] >= 2).all()
    assert (first["viewer_actions"] >= 3).all()
    assert frame.groupby("arm")["overlay_look"].unique().map(list).to_dict() == {"verify": ["contour"],
                                                                               "rely": ["side_by_side"]}
    # Tokens never reach exports or the server's log: no token value in any exported file, and no
    # token column in a data table (the codebook and dataset_description.json may name the word).
    for export_file in (path for path in out.rglob("*") if path.is_file()):
        text = export_file.read_text(errors="ignore")
        assert not any(token in text for token in tokens), export_file.name
    for table in (out / "data").glob("*_data.csv"):
        assert "token" not in table.read_text().splitlines()[0].lower(), table.name
    log = (home / f"serve-{port}.log").read_text()
    assert tokens and not any(token in log for token in tokens)


def test_researcher_and_trainer_pages_in_chromium(browser, served):
    home, design, port = served
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"http://127.0.0.1:{port}/researcher")
    page.get_by_label("Password", exact=True).fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong password.").wait_for()
    page.get_by_label("Password", exact=True).fill("researcher-pass")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("By arm and stratum").wait_for(timeout=30_000)
    idle(page)
    page.locator('[data-testid="stGraphVizChart"] svg').wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the dataframe canvas paints after the script ends
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "researcher-dashboard.png"), full_page=True)
    page.goto(f"http://127.0.0.1:{port}/trainer")
    page.get_by_text("Sanity check: randomise the model").wait_for(timeout=60_000)
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=60_000)
    maps = page.locator('[data-testid="stImage"]')
    assert maps.count() >= 3
    for index in range(3):  # the three default methods' maps are whole on the first screen
        in_viewport(maps.nth(index).locator("img"))
    page.screenshot(path=str(ARTIFACTS / "trainer.png"))
    page.screenshot(path=str(ARTIFACTS / "trainer-full.png"), full_page=True)


def participants_in(study_id: str) -> int:
    from sqlalchemy import func


    with open_database().connect() as connection:
        return connection.execute(select(func.count()).select_from(participants)
                                  .where(participants.c.study_id == study_id)).scalar_one()


def test_one_browser_is_one_participant_through_back_reload_and_the_code_link(browser, served):
    """Back (one history entry per step), reload and reopening the shared code link resume; only a new
    browser enrols anew."""
    home, design, port = served
    code_link = f"http://127.0.0.1:{port}/?study=b&code={enrolment_code(open_database(), 'b')}"
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/?study=b")  # a page of the study before the link (the code box)
    page.get_by_text("Enrolment code from your invitation").wait_for()
    before = participants_in("b")
    page.goto(code_link)
    participant = Participant(page, design, "identity")
    page.wait_for_url("**token=**", timeout=30_000)
    token = participant.token
    history = page.evaluate("history.length")
    assert participants_in("b") == before + 1
    cookie = stored_cookie(context, "xai_lab_b")
    assert cookie["value"] == token and cookie["httpOnly"]  # page scripts cannot read it

    take_part(participant, keyboard=False)  # two steps answered: consent and profile
    step = participant.key()
    assert step.startswith("instructions") and page.evaluate("history.length") > history  # an entry per step

    page.go_back()  # Back mid-study: the study's page again, at the current step
    page.get_by_role("button", name="Start", exact=True).wait_for(timeout=30_000)
    page.get_by_text("How this works").wait_for()
    assert "token=" in page.url
    page.reload()
    page.get_by_text("How this works").wait_for(timeout=30_000)
    page.go_forward()
    page.get_by_text("How this works").wait_for(timeout=30_000)
    assert participant.token == token and participants_in("b") == before + 1

    page.goto(code_link)  # reopening the shared link in the same browser
    page.get_by_text("How this works").wait_for(timeout=30_000)
    page.wait_for_url(f"**token={token}**", timeout=30_000)  # and the address bar shows the personal link
    assert participants_in("b") == before + 1 and participant.key() == step
    participant.shot("resumed-from-code-link")
    context.close()

    fresh = browser.new_context(viewport=VIEWPORT)
    other = fresh.new_page()
    other.goto(code_link)  # another browser: another person
    other.wait_for_url("**token=**", timeout=30_000)
    other.get_by_role("button", name="I agree to take part").wait_for(timeout=30_000)
    assert parse_qs(urlparse(other.url).query)["token"][0] != token
    assert participants_in("b") == before + 2
    fresh.close()
