"""A study on a vendor's advice set in real headless Chromium at 1366 x 768: the trial shows the vendor's
suggestion and its map in the design's look, labelled as the vendor's.

Screenshots go to test-artifacts/browser/vendor-*.png.
"""

from __future__ import annotations

import pytest
from conftest import run_cli, use_lab, write_study
from playwright.sync_api import expect
from support.chromium import idle
from support.local_server import served_app
from support.participant_pages import ARTIFACTS, arrive, code_link, read_cases, start_reading, take_part
from support.vendor_files import vendor_files

from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design

pytestmark = [pytest.mark.browser, pytest.mark.served]


def one_arm_study(home, study_id: str, model_line: str, advice: str):
    design = write_study(home, study_id=study_id, arms='["rely"]', blocks="[1, 2]", n=4)
    text = design.read_text().replace('model = "tiny"', model_line).replace("ai_wrong_share = 0.34",
                                                                           "ai_wrong_share = 0.0")
    text = text.replace('advice = "planted"', f'advice = "{advice}"')
    design.write_text(text if advice == "model" else text.replace('method = "gradcam"', ""))
    return design


def test_a_trial_with_the_vendors_advice_and_map_in_chromium(browser, study_home, tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        patch.delenv("XAI_LAB_DATABASE_URL", raising=False)
        on_model = one_arm_study(study_home, "vm", 'model = "tiny"', "model")
        assert run_cli("study", "prepare", str(on_model)).code == 0
        files = vendor_files("tiny", "tiny", load_case_set(load_design(on_model)), tmp_path)
        imported = run_cli("advice", "import", str(files.table), "--data", "tiny", "--name", "acme",
                           "--maps", str(files.rounded_maps), "--threshold", str(files.threshold))
        assert imported.code == 0, imported.err
        design = one_arm_study(study_home, "vendor", "", "imported:acme")
        result = run_cli("study", "prepare", str(design))
        assert result.code == 0, result.err
        with served_app(design, study_home) as port:
            context, participant = arrive(browser, code_link(port, "vendor"), design, "vendor")
            page = participant.page
            take_part(participant, keyboard=False)
            maps_seen = []

            def look(key: str) -> None:
                page.get_by_text("AI suggestion").first.wait_for(timeout=30_000)
                idle(page)
                if page.get_by_text("Show the vendor's map", exact=True).count():
                    assert page.get_by_text("Show the AI's map", exact=True).count() == 0
                    expect(page.get_by_text("The map comes from the AI's vendor")).to_be_visible()
                    maps_seen.append(key)
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / f"vendor-{key.replace(':', '_')}.png"))
                else:
                    assert page.get_by_text("No map is shown").count() == 1  # withheld for a normal suggestion

            read_cases(participant, start_reading(participant), look)
            assert maps_seen
            context.close()
