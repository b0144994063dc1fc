"""End to end in real headless Chromium: a verify and a rely session against a served app, then the export.

Needs Debian's chromium (`support.chromium`; the `browser` fixture is in conftest.py). Screenshots
of every screen go to test-artifacts/browser/.

The verify session is answered with the keyboard only (focus, arrow keys, Enter/Space); the
rely session with the mouse.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, run_cli, serving
from PIL import Image
from playwright.sync_api import expect
from scipy.ndimage import binary_erosion
from sqlalchemy import select
from support.chromium import VIEWPORT, idle, stored_cookie

from xai_lab.store.database import open_database
from xai_lab.store.repository import count_step_events
from xai_lab.store.schema import participants
from xai_lab.study.access import enrolment_code
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.export import table_file
from xai_lab.study.service import StudyService, hash_token

pytestmark = [pytest.mark.browser, pytest.mark.served]

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"


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


class Participant:
    """One browser tab taking part; reads its current step from the database to know what to expect."""

    def __init__(self, page, design: Path, arm_hint: str) -> None:
        self.page, self.arm_hint, self.shots = page, arm_hint, 0
        design_obj = load_design(design)
        self.service = StudyService(open_database(), design_obj, load_case_set(design_obj))

    @property
    def token(self) -> str:
        return parse_qs(urlparse(self.page.url).query)["token"][0]

    def key(self) -> str:
        return self.service.resume(self.token).key

    def settle(self, previous: str | None = None) -> str:
        """Wait until the server moved past `previous` and the page finished drawing the new step."""
        deadline = time.monotonic() + 30
        while previous is not None and self.key() == previous:
            if time.monotonic() > deadline:
                self.shot(f"stuck-at-{previous}")
                raise AssertionError(f"the page did not move past {previous} in 30 s (screenshot saved)")
            time.sleep(0.05)
        step = self.service.resume(self.token)
        if step.kind not in ("consent", "profile", "complete"):  # these show no progress bar
            self.page.get_by_text(f"Step {step.done + 1} of {step.total}", exact=True).wait_for(timeout=30_000)
        if step.kind in ("trial", "practice"):  # the viewer's first report (viewport) and its rerun come first
            self.wait_for_viewer_report(step.key)
        idle(self.page)
        return step.key

    def wait_for_viewer_report(self, step_key: str) -> None:
        deadline = time.monotonic() + 30
        with self.service.engine.connect() as connection:
            participant_id = connection.execute(select(participants.c.participant_id).where(
                participants.c.token_sha256 == hash_token(self.token))).scalar_one()
        while True:
            with self.service.engine.connect() as connection:
                if count_step_events(connection, participant_id, step_key, "viewer"):
                    return
            if time.monotonic() > deadline:
                self.shot(f"no-viewer-report-{step_key}")
                raise AssertionError(f"the viewer sent no report on {step_key} in 30 s (screenshot saved)")
            time.sleep(0.05)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.arm_hint}-{self.shots:02d}-{name.replace(':', '_')}.png"))

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)


def take_part(participant: Participant, keyboard: bool) -> str:
    """Consent and profile; returns the allocated arm."""
    page = participant.page
    page.wait_for_url("**token=**", timeout=30_000)  # enrolled: the code in the URL became a token
    key = participant.settle()
    assert key == "consent"
    participant.shot("consent")
    press(participant.button("I agree to take part"), keyboard)
    key = participant.settle("consent")
    participant.shot("profile")
    for index, option in enumerate(["nurse", "emergency medicine", "0-2", "never"]):
        box = page.locator('[data-testid="stSelectbox"]').nth(index)
        box.click()
        page.get_by_role("option", name=option, exact=True).click()
        idle(page)
    press(participant.button("Continue"), keyboard)
    key = participant.settle("profile")
    return key.split(":")[1]


def press(locator, keyboard: bool) -> None:
    # enabled = the rerun after the last answer has reached the page (Continue unlocks then)
    expect(locator).to_be_enabled(timeout=30_000)
    if keyboard:
        locator.focus()
        locator.press("Enter")
    else:
        locator.click()


def in_viewport(locator) -> None:
    """The element is fully visible on the 1366 x 768 screen without scrolling."""
    box = locator.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], box
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"], box


def canvas_grey(page) -> np.ndarray:
    """The viewer's canvas as grey levels (what the reader sees before CSS zoom)."""
    page.locator(".viewer[data-ready='true']").wait_for(timeout=30_000)
    url = page.locator(".viewer canvas").last.evaluate("canvas => canvas.toDataURL('image/png')")
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(picture, dtype=float) @ np.array([0.299, 0.587, 0.114])


def check_viewer(participant: Participant) -> None:
    """On a trial with the AI's map: the anatomy stays visible under it, and zoom and contrast change
    what is drawn (by mouse and by keyboard)."""
    page = participant.page
    with_map = canvas_grey(page)
    toggle = page.get_by_text("Show the AI's map", exact=True)
    toggle.click()
    idle(page)
    page.wait_for_timeout(300)  # the component redraws after the rerun
    without_map = canvas_grey(page)
    tinted = binary_erosion(np.abs(with_map - without_map) > 3, iterations=4)  # inside the outline
    assert tinted.mean() > 0.01, "no map region found"
    kept = with_map[tinted].std() / without_map[tinted].std()
    assert kept >= 0.5, f"the map leaves only {kept:.2f} of the anatomy's contrast under it"
    toggle.click()
    idle(page)

    stages = page.locator(".viewer .stage")
    scale = lambda: stages.first.evaluate("node => new DOMMatrix(getComputedStyle(node).transform).a")  # noqa: E731
    before = page.locator(".viewer .pane").first.screenshot()
    page.get_by_role("button", name="Zoom in (+)").click()
    page.wait_for_timeout(400)
    assert scale() > 1.1 and page.locator(".viewer .pane").first.screenshot() != before
    standard = canvas_grey(page)
    page.get_by_role("button", name="More contrast contrast (2)").click()
    page.wait_for_timeout(200)
    stretched = canvas_grey(page)
    assert stretched.std() > 1.2 * standard.std()  # window/level: half the range stretched to the whole
    pane = page.locator(".viewer .pane").first
    pane.focus()
    page.keyboard.press("0")  # keyboard: reset, then zoom in twice
    page.wait_for_timeout(200)
    difference = np.abs(canvas_grey(page) - standard)
    assert abs(scale() - 1) < 0.01 and difference.mean() < 0.5, (difference.mean(), difference.max())
    page.keyboard.press("+")
    page.keyboard.press("+")
    page.wait_for_timeout(400)
    assert scale() > 1.4
    # side by side: both panes show the same region. Polled through the locator (the viewer lives in a
    # shadow root, which document.querySelectorAll does not enter): on a loaded machine the second pane's
    # transform follows the first a frame or two later (Panzoom applies it in requestAnimationFrame)
    transforms = lambda: {stages.nth(i).evaluate("node => getComputedStyle(node).transform")  # noqa: E731
                          for i in range(stages.count())}
    for _ in range(50):
        if len(transforms()) == 1:
            break
        page.wait_for_timeout(100)
    assert len(transforms()) == 1, transforms()
    page.get_by_role("button", name="Dark areas contrast (4)").click()
    page.wait_for_timeout(1200)  # the viewer reports after the reader pauses (600 ms)
    idle(page)
    participant.shot("viewer-zoomed")


def answer_trial(participant: Participant, key: str, label: str, keyboard: bool) -> None:
    page = participant.page
    decide = participant.button(label.capitalize())
    for name in ("Normal", "Lesion"):
        in_viewport(participant.button(name))
    assert decide.is_disabled()  # untouched confidence: no decision yet
    slider = page.get_by_role("slider")
    if keyboard:
        slider.focus()
        for _ in range(15):
            slider.press("ArrowRight")
    else:
        box = slider.bounding_box()  # the range input spans the track: click at 70% of it
        page.mouse.click(box["x"] + 0.7 * box["width"], box["y"] + box["height"] / 2)
    idle(page)
    expect(decide).to_be_enabled()  # the slider's new value reached the server
    participant.shot(key)
    press(decide, keyboard)


def likert(participant: Participant, keyboard: bool) -> None:
    page = participant.page
    groups = page.get_by_role("radiogroup")
    for index in range(groups.count()):
        option = groups.nth(index).get_by_text("5", exact=True)
        if keyboard:  # move focus to the option (as Tab and the arrow keys would) and select it with Space
            radio = groups.nth(index).get_by_role("radio").nth(4)
            radio.focus()
            page.keyboard.press("Space")
            expect(radio).to_be_checked()
        else:
            option.click()
        idle(page)


def complete(participant: Participant, keyboard: bool) -> None:
    key = participant.key()
    while key != "complete":
        participant.shot(key)
        if key.startswith("instructions"):
            press(participant.button("Start"), keyboard)
        elif key.startswith(("trial", "practice")):
            if key.endswith(":final") and participant.arm_hint == "verify":
                assert participant.page.get_by_text("AI suggestion").count() == 1
            if key == "trial:0:final":
                check_viewer(participant)
            answer_trial(participant, key, "lesion" if key.startswith("trial:1") else "normal", keyboard)
        elif key.startswith("attention"):
            press(participant.button("Normal"), keyboard)
        elif key.startswith(("rating", "questionnaire")):
            likert(participant, keyboard)
            in_viewport(participant.button("Continue"))
            participant.shot(f"{key}-answered")
            press(participant.button("Continue"), keyboard)
        elif key == "debrief":
            press(participant.button("Finish"), keyboard)
        key = participant.settle(key)
    participant.page.get_by_text("You have finished").wait_for(timeout=30_000)
    participant.shot("complete")


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
    from sqlalchemy import func, select

    from xai_lab.store.schema import participants

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
