"""Re-take the README's screenshots: the demo study served, Chromium at 1366 x 768.

    XAI_LAB_HOME=/tmp/demo-lab xai-lab demo --no-serve       # once: the demo data, model and study
    XAI_LAB_HOME=/tmp/demo-lab python docs/screenshots/capture.py

Participants are walked to the screen to capture through the study API (answers as a simulated
careful reader), then their personal link is opened in Debian's Chromium (Playwright drives it
through `executable_path`), so each picture is the real page in the state a participant sees.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from xai_lab.store.database import open_database
from xai_lab.study.design_file import load_design
from xai_lab.study.prepare import load_case_set
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the served app on a free port is a test helper (tests/support)
from support.local_server import served_app  # noqa: E402

DESIGN = REPO / "studies" / "demo.toml"
OUT = Path(__file__).resolve().parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def participant_at(service: StudyService, arm: str, step_key: str, lesion_advice: bool = False) -> str:
    """A new participant in `arm` whose current step is `step_key` (on a case the AI calls a lesion,
    so the picture shows the map); returns the token."""
    advice = {case.case_id: case.ai_label for case in service.case_set.cases}
    for _ in range(40):
        token = service.enrol()
        reader = SimulatedClinician(SimulationConfig(participants=1), 0, service)
        step, allocated = service.resume(token), None
        while step.status == "in_progress" and step.key != step_key and step.kind != "debrief":
            allocated = step.content.get("arm", allocated)  # trial steps say which arm they are read under
            step = service.submit(token, step.key, reader.answer(step), os.urandom(8).hex())
        allocated = step.content.get("arm", allocated)
        shows_lesion = advice.get(step.content.get("case_id")) == "lesion"
        if step.key == step_key and allocated == arm and (shows_lesion or not lesion_advice):
            return token
    raise RuntimeError(f"no {arm} participant reached {step_key} in 40 enrolments")


def shoot(page, url: str, name: str, wait_for_viewer: bool = True) -> None:
    page.goto(url)
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=60_000)
    if wait_for_viewer:
        page.locator(".viewer[data-ready='true']").first.wait_for(timeout=60_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"wrote {OUT / name}.png")


def main() -> int:
    home = Path(os.environ.get("XAI_LAB_HOME", ""))
    if not (home / "prepared" / "demo").is_dir():
        print("run 'xai-lab demo --no-serve' with this XAI_LAB_HOME first", file=sys.stderr)
        return 2
    design = load_design(DESIGN)
    service = StudyService(open_database(), design, load_case_set(design))
    verify = participant_at(service, "verify", "trial:0:initial", lesion_advice=True)
    rely = participant_at(service, "rely", "trial:0:final", lesion_advice=True)
    rater = participant_at(service, "rely", "rating:0")
    with served_app(DESIGN, home) as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        link = f"http://127.0.0.1:{port}/?study=demo&token="
        shoot(page, link + verify, "verify-initial")
        service.submit(verify, "trial:0:initial", {"label": "normal", "confidence": 60}, os.urandom(8).hex())
        shoot(page, link + verify, "verify-trial")
        shoot(page, link + rely, "rely-trial")
        shoot(page, link + rater, "rating", wait_for_viewer=False)
        shoot(page, f"http://127.0.0.1:{port}/trainer", "trainer", wait_for_viewer=False)
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
