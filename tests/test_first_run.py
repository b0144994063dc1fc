"""The README's first command on a new machine, idle or busy: the default model learns, is the same
model either way, passes the quality gate, and the trainer guide's steps 1-4 work in Chromium.

Slow (it trains the default synthetic model four times, three of them at once) and served (a real
`xai-lab serve` in Chromium). Screenshots of the trainer at 1366 x 768 go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, served_app
from support.chromium import CHROMIUM_FLAGS, VIEWPORT, chromium_or_skip
from support.trainer_walk import Walk, radiograph_png

pytestmark = [pytest.mark.slow, pytest.mark.served, pytest.mark.browser]

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
GUIDE = (REPO_ROOT / "docs" / "trainer-guide.md").read_text()


def xai_lab(home: Path, *args: str, threads: int | None = None) -> subprocess.Popen:
    """`xai-lab ARGS` as a user runs it, in its own process: with the threads this test process has
    (one under pytest-xdist, see conftest.py; torch's default otherwise) unless `threads` is given."""
    env = {**os.environ, "XAI_LAB_HOME": str(home)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-m", "xai_lab.cli", *args], env=env, cwd=home,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=1800)
    assert process.returncode == 0, err[-2000:]
    return out


def card(home: Path, name: str) -> dict:
    return json.loads((home / "models" / name / "model_card.json").read_text())


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    """`xai-lab demo --no-serve` in a new lab, as the README's first command runs it."""
    home = tmp_path_factory.mktemp("first-run")
    started = time.perf_counter()
    process = xai_lab(home, "demo", "--no-serve", "--quiet")
    out, err = process.communicate(timeout=1800)
    assert process.returncode == 0, err[-2000:]
    print(f"xai-lab demo --no-serve: {time.perf_counter() - started:.0f} s")
    assert "participant (demo): http://localhost:8501/?study=demo&code=" in out
    assert "No runtime found" not in err  # Streamlit's warnings from the screens' check, meaningless here
    return home


def test_the_default_model_is_the_same_on_an_idle_and_a_busy_machine(demo_home, tmp_path):
    """Train the default again with two other trainings running beside it all along: the weights are bit
    for bit those of the demo's run, and the model learned the lesion.

    The other two train on a small set for far more epochs than they get (they are stopped once the
    compared run is done), one thread each, so the cores stay busy throughout at a bounded cost. They
    and the compared model live outside the demo's lab, which the trainer test uses as the README left it."""
    load_home, busy = tmp_path / "load-lab", tmp_path / "busy"
    load_home.mkdir()
    finished(xai_lab(load_home, "data", "synth", "--name", "load", "--n", "400", "--size", "32"))
    others = [xai_lab(load_home, "train", "--data", "load", "--epochs", "100000", "--members", "1", "--quiet",
                      "--seed", str(n), "--out", str(load_home / f"load{n}"), threads=1) for n in (1, 2)]
    try:
        finished(xai_lab(demo_home, "train", "--data", "synthetic", "--out", str(busy), "--quiet"))
        assert all(process.poll() is None for process in others)  # still training beside it at the end
    finally:
        for process in others:
            process.kill()
            process.communicate()
    idle = card(demo_home, "synthetic")
    loaded = json.loads((busy / "model_card.json").read_text())
    assert loaded["weights_sha256"] == idle["weights_sha256"]
    assert loaded["training"]["epochs_run"] == idle["training"]["epochs_run"] == 24
    assert loaded["training"]["budget"]["seconds"] is None  # the default never looks at the clock
    assert idle["metrics"]["test"]["auroc"] >= 0.93, idle["metrics"]["test"]
    assert idle["training"]["config"]["batch_size"] == 32  # the small-set rule (docs/benchmarks.md)
    print(f"idle {idle['training']['seconds']:.0f} s, busy {loaded['training']['seconds']:.0f} s")


def test_trainer_guide_steps_1_to_4_in_chromium(demo_home):
    chromium = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with served_app(REPO_ROOT / "studies" / "demo.toml", demo_home) as port, sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
        walk = Walk(browser.new_context(viewport=VIEWPORT).new_page(), shots=ARTIFACTS)
        page = walk.page
        walk.open(f"http://127.0.0.1:{port}/trainer")
        # the page runs inside the app's shell: wide, no sidebar listing the other pages
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0
        # 1. the guide's dataset, model and first lesion case; the advice with its calibrated percentage
        said = page.locator('[data-testid="stMarkdownContainer"]').filter(has_text="Model says:").inner_text()
        assert "lesion (" in said and "%)" in said and "Truth: lesion" in said, said
        assert "Quality gate passed" in page.content()
        # 2. three methods side by side, whole on the first screen
        maps = page.locator('[data-testid="stImage"]')
        assert maps.count() == 3
        for index, title in enumerate(("Grad-CAM", "Gradient (saliency)", "Integrated Gradients")):
            assert maps.nth(index).inner_text().strip() == title
            assert walk.in_viewport(maps.nth(index).locator("img")), title
        # 3. opacity and clipping: the sliders and the maps they change are on the screen together
        for label in ("Overlay opacity", "Clip at percentile"):
            assert walk.in_viewport(page.get_by_role("slider", name=label)), label
        walk.slider("Overlay opacity", "ArrowRight", "opacity")
        walk.slider("Clip at percentile", "ArrowLeft", "clipping")
        assert page.evaluate("window.scrollY") == 0 and walk.in_viewport(maps.first.locator("img"))
        # 4. the randomisation check on Guided Grad-CAM, offered without adding it to the methods first
        walk.randomise("Guided Grad-CAM")
        captions = [maps.nth(i).inner_text() for i in range(maps.count())]
        blocks = [c for c in captions if "weights randomised from the output back to block" in c]
        assert blocks and any("output layer's weights randomised" in c for c in captions)
        quoted = blocks[0].split(" (SSIM")[0]  # e.g. "... back to block 3 of 3", as the guide says
        assert quoted.split("back to ")[1] in GUIDE, quoted
        assert page.get_by_text("Guided Grad-CAM", exact=False).count() and (
            page.get_by_text("passes on this image").count() + page.get_by_text("FAILS on this image").count())
        walk.randomise("Grad-CAM")
        walk.next_case()
        walk.upload(radiograph_png())
        assert page.get_by_text("does not look like the images the model learned from").count()
        browser.close()
    print("trainer interactions (s): " + ", ".join(f"{k} {v:.1f}" for k, v in walk.seconds.items()))
