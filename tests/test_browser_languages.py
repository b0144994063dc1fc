"""The French and German trial screens in Chromium at 1366 x 768: the lab's own words in the study's
language (the design's texts are the researcher's), nothing overflowing. Screenshots of the consent,
trial and end screens of each language go to test-artifacts/browser/."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_cli, served_app, use_lab, write_study
from support.chromium import VIEWPORT, idle

from xai_lab.store.database import open_database
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

pytestmark = [pytest.mark.browser, pytest.mark.served]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
WORDS = {  # what the lab itself says on each screen, per language
    "fr": {"consent": "J'accepte de participer", "trial": ("Étape", "Quelle est votre certitude", "Suggestion de l'IA",
                                                            "Zoom avant (+)"), "end": "Vous avez terminé"},
    "de": {"consent": "Ich stimme der Teilnahme zu", "trial": ("Schritt", "Wie sicher sind Sie", "Vorschlag der KI",
                                                               "Vergrößern (+)"), "end": "Sie sind fertig"},
}


@pytest.fixture(scope="module")
def served(study_home: Path):
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        patch.delenv("XAI_LAB_DATABASE_URL", raising=False)
        designs = []
        for code in WORDS:
            path = write_study(study_home, study_id=f"lang-{code}", arms='["rely"]', n=2, blocks="[1]")
            path.write_text(f'language = "{code}"\n' + path.read_text())
            assert run_cli("study", "prepare", str(path)).code == 0
            designs.append(path)
        with served_app(designs, study_home) as port:
            yield designs, port


def walk(service: StudyService, token: str, until: str) -> None:
    reader = SimulatedClinician(SimulationConfig(participants=1), 0, service)
    step = service.resume(token)
    while not step.key.startswith(until) and step.status == "in_progress":
        step = service.submit(token, step.key, reader.answer(step), uuid.uuid4().hex)


def fits(page) -> None:
    """Nothing wider than the screen, and no button whose words are cut off."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    clipped = page.evaluate("""() => [...document.querySelectorAll('button')]
        .filter(b => b.offsetParent !== null && b.scrollWidth > b.clientWidth + 1).map(b => b.innerText)""")
    assert clipped == [], clipped
    for button in page.get_by_role("button", name="Normal").all() + page.get_by_role("button", name="Lesion").all():
        box = button.bounding_box()
        assert box and box["y"] + box["height"] <= VIEWPORT["height"] and box["x"] + box["width"] <= VIEWPORT["width"]


@pytest.mark.parametrize("code", sorted(WORDS))
def test_the_trial_screen_in_each_language_fits_a_hospital_laptop(browser, served, code):
    designs, port = served
    design = load_design(next(path for path in designs if path.stem == f"lang-{code}"))
    service = StudyService(open_database(), design, load_case_set(design))
    token = service.enrol()
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    link = f"http://127.0.0.1:{port}/?study={design.id}&token={token}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page.goto(link)
    page.get_by_role("button", name=WORDS[code]["consent"]).wait_for(timeout=30_000)
    idle(page)
    page.screenshot(path=str(ARTIFACTS / f"language-{code}-consent.png"))

    walk(service, token, "trial:0")
    page.reload()
    page.locator(".viewer[data-ready='true']").wait_for(timeout=30_000)
    idle(page)
    for words in WORDS[code]["trial"][:3]:
        page.get_by_text(words).first.wait_for(timeout=30_000)
    page.get_by_role("button", name=WORDS[code]["trial"][3]).wait_for()  # the viewer's buttons too
    fits(page)
    page.screenshot(path=str(ARTIFACTS / f"language-{code}-trial.png"))

    walk(service, token, "complete")
    page.reload()
    page.get_by_text(WORDS[code]["end"]).wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"language-{code}-end.png"))
    context.close()
