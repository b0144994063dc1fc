"""Test-only: one participant's pages in Chromium, step by step, against a served study.

`Participant` reads the participant's current step from the database, so a test knows what the
page must show next and waits for it (`settle`). The other functions answer the screens the way a
clinician does, by mouse or by keyboard: consent and profile (`take_part`), a trial's slider and
decision (`answer_trial`), rating and questionnaire scales (`likert`), every step to the end
(`complete`), or only the reading steps (`read_cases`); `arrive` opens a link in a new browser.
Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image
from playwright.sync_api import expect
from scipy.ndimage import binary_erosion
from sqlalchemy import select

from support.chromium import VIEWPORT, idle
from xai_lab.store.database import open_database
from xai_lab.store.repository import count_step_events
from xai_lab.store.schema import participants
from xai_lab.study.access import enrolment_code
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import StudyService, hash_token

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
READING_STEPS = ("practice", "trial", "attention")


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


def arrive(browser, url: str, design: Path, name: str) -> tuple[Any, Participant]:
    """A new browser with a hospital laptop's screen opening `url`: its context and the participant
    (`name` prefixes the screenshots)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    return context, Participant(page, design, name)


def code_link(port: int, study_id: str) -> str:
    """The study's shared link, with its enrolment code, on a served app at `port`."""
    return f"http://127.0.0.1:{port}/?study={study_id}&code={enrolment_code(open_database(), study_id)}"


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


def start_reading(participant: Participant) -> str:
    """From the instructions to the first reading step; returns its key."""
    key = participant.settle()
    press(participant.button("Start"), keyboard=False)
    return participant.settle(key)


def read_cases(participant: Participant, key: str, look: Callable[[str], None] | None = None,
               label: str = "normal", until: str | None = None) -> str:
    """Answer reading steps by mouse from `key` on (attention checks with "Normal"), calling `look`
    on each practice and trial screen before it is answered; stops after the reading steps, or at
    the first step whose key starts with `until`. Returns the key it stopped at."""
    while key.startswith(READING_STEPS) and not (until and key.startswith(until)):
        if key.startswith("attention"):
            press(participant.button("Normal"), keyboard=False)
        else:
            if look is not None:
                look(key)
            answer_trial(participant, key, label, keyboard=False)
        key = participant.settle(key)
    return key
