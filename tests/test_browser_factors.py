"""Conditions as factors in real headless Chromium at 1366 x 768: the AI on demand, the advice source
label, a trial with and without the map, and Back / reload / a reopened link keeping the plan.

Screenshots go to test-artifacts/browser/factors-*.png.
"""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT, run_cli, use_lab
from playwright.sync_api import expect
from support.chromium import idle
from support.local_server import served_app
from support.participant_pages import (
    ARTIFACTS,
    Participant,
    arrive,
    code_link,
    press,
    read_cases,
    start_reading,
    take_part,
)
from test_factors import SOURCE_FACTOR, factor_study

from xai_lab.store.database import open_database

pytestmark = [pytest.mark.browser, pytest.mark.served]

# every participant reads each (explanation, source) combination once: 4 cases, 4 rotations
FACTORS = '''
[factors.explanation]
vary = "within"
levels = ["none", "contour"]
''' + SOURCE_FACTOR


@pytest.fixture(scope="module")
def served(study_home):
    text = factor_study("fb", '["on_demand"]', FACTORS, n=4).replace("practice = 2", "practice = 1")
    design = study_home / "fb.toml"
    design.write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        patch.delenv("XAI_LAB_DATABASE_URL", raising=False)
        result = run_cli("study", "prepare", str(design))
        assert result.code == 0, result.err
        with served_app(design, study_home) as port:
            yield study_home, design, port


def shot(participant: Participant, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    participant.page.screenshot(path=str(ARTIFACTS / f"factors-{name}.png"))


def test_on_demand_source_labels_and_map_levels_in_chromium(browser, served):
    home, design, port = served
    context, participant = arrive(browser, code_link(port, "fb"), design, "factors")
    page = participant.page
    take_part(participant, keyboard=False)
    seen = set()

    def look(key: str) -> None:
        step = participant.service.resume(participant.token)
        levels = step.content.get("levels", {})
        name = f"{key.replace(':', '_')}-{levels.get('explanation', 'practice')}-{levels.get('source', '')}"
        ask = participant.button("Ask the AI")
        expect(ask).to_be_visible(timeout=30_000)
        assert page.get_by_text("AI suggestion").count() == 0 and page.get_by_text("Suggestion from").count() == 0
        shot(participant, f"{name}-before-asking")
        if key == "trial:1:final":  # mid-trial: reload, Back and the reopened link keep the step and its case
            plan = participant.service.resume(participant.token)
            page.reload()
            page.get_by_role("button", name="Ask the AI").wait_for(timeout=30_000)
            page.go_back()
            page.go_forward()
            page.get_by_role("button", name="Ask the AI").wait_for(timeout=30_000)
            page.goto(page.url)  # the personal link opened again
            page.get_by_role("button", name="Ask the AI").wait_for(timeout=30_000)
            again = participant.service.resume(participant.token)
            assert (again.key, again.content["case_id"], again.content["levels"]) == \
                (plan.key, plan.content["case_id"], plan.content["levels"])
        press(ask, keyboard=False)
        label = "AI suggestion" if levels.get("source", "ai") == "ai" else "Suggestion from a senior radiologist"
        page.get_by_text(label).first.wait_for(timeout=30_000)
        idle(page)
        map_toggle = page.get_by_text("Show the AI's map" if levels.get("source", "ai") == "ai" else "Show the map",
                                      exact=True)
        if levels.get("explanation") == "none":
            assert map_toggle.count() == 0
        elif key.startswith("trial"):  # a map unless withheld for a normal suggestion
            assert map_toggle.count() == 1 or page.get_by_text("No map is shown").count() == 1
        shot(participant, f"{name}-after-asking")
        seen.add((levels.get("explanation"), levels.get("source")))

    read_cases(participant, start_reading(participant), look)
    assert seen >= {("none", "ai"), ("none", "radiologist"), ("contour", "ai"), ("contour", "radiologist")}
    context.close()
    with open_database().connect() as connection:
        rows = connection.exec_driver_sql("SELECT ai_requested, advice_label, overlay_shown, conditions "
                                          "FROM trials WHERE study_id = 'fb'").all()
    assert len(rows) == 4 and all(row[0] for row in rows)
    assert {row[1] for row in rows} == {"AI", "a senior radiologist"}


def test_the_shipped_2x2_screens_in_each_explanation_level(browser, study_home, tmp_path):
    """explanation_2x2.toml itself (on the test's small model): a rely participant's trial with and
    without the map."""
    from test_factors import on_tiny

    design = study_home / "explanation_2x2.toml"
    design.write_text(on_tiny((REPO_ROOT / "studies" / "explanation_2x2.toml").read_text())
                      .replace("n = 16", "n = 4").replace("practice = 2", "practice = 1"))
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        patch.delenv("XAI_LAB_DATABASE_URL", raising=False)
        assert run_cli("study", "prepare", str(design)).code == 0
        with served_app(design, study_home) as port:
            shots = set()
            for _ in range(4):  # blocks of 4 units: within four enrolments each workflow comes up
                context, participant = arrive(browser, code_link(port, "explanation_2x2"), design, "2x2")
                page = participant.page
                workflow = take_part(participant, keyboard=False)

                def look(key: str, page=page, participant=participant, workflow=workflow) -> None:
                    if not (key.startswith("trial") and key.endswith("final")):
                        return
                    levels = participant.service.resume(participant.token).content.get("levels", {})
                    page.get_by_text("AI suggestion").first.wait_for(timeout=30_000)
                    has_map = page.get_by_text("Show the AI's map").count() > 0
                    assert has_map == (levels["explanation"] == "contour")
                    shots.add((workflow, levels["explanation"]))
                    shot(participant, f"2x2-{workflow}-{levels['explanation']}-{key.replace(':', '_')}")

                read_cases(participant, start_reading(participant), look)
                context.close()
                if {w for w, _ in shots} == {"verify", "rely"}:
                    break
            assert {level for _, level in shots} == {"none", "contour"}
