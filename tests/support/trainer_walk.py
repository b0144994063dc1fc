"""Drive the trainer page in Chromium the way docs/trainer-guide.md tells a trainer to, timing each step.

Used by tests/test_first_run.py (the guide's steps pass as written, at 1366 x 768) and by
benchmarks/trainer_bench.py (how long each interaction takes). A step's time runs from the
action to the end of the script run that redraws the page: the maps' images have changed (their
media URLs) and Streamlit reports that no script is running and no element is stale.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from support.chromium import VIEWPORT

TIMEOUT_MS = 120_000


@dataclass
class Walk:
    page: object
    seconds: dict[str, float] = field(default_factory=dict)
    shots: Path | None = None

    def idle(self) -> None:
        self.page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=TIMEOUT_MS)
        self.page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=TIMEOUT_MS)

    def images(self) -> list[str]:
        return self.page.locator('[data-testid="stImage"] img').evaluate_all("els => els.map(e => e.src)")

    def timed(self, name: str, action: Callable[[], None], expect_new_images: bool = True) -> float:
        """Run `action`, wait until the page has been redrawn, and record the seconds it took."""
        before = self.images()
        started = time.perf_counter()
        action()
        if expect_new_images:
            deadline = started + TIMEOUT_MS / 1000
            while self.images() == before:
                if time.perf_counter() > deadline:
                    raise AssertionError(f"{name}: the maps were not redrawn")
                time.sleep(0.02)
        self.idle()
        self.seconds[name] = time.perf_counter() - started
        self.shot(name)
        return self.seconds[name]

    def shot(self, name: str) -> None:
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.shots / f"trainer-{name}.png"))

    def open(self, url: str) -> None:
        def go() -> None:
            self.page.goto(url)
            self.page.get_by_text("Sanity check: randomise the model").wait_for(timeout=TIMEOUT_MS)
        self.timed("open", go)

    def next_case(self) -> None:
        box = self.page.get_by_label("Test case", exact=True)
        self.timed("next case", lambda: (box.fill(str(int(box.input_value()) + 1)), box.press("Enter")))

    def slider(self, label: str, key: str, name: str) -> None:
        handle = self.page.get_by_role("slider", name=label)
        self.timed(name, lambda: (handle.focus(), handle.press(key)))

    def randomise(self, method_title: str) -> None:
        box = self.page.locator('[data-testid="stSelectbox"]').filter(has_text="Method to check")
        box.click()
        self.page.keyboard.type(method_title)  # the option list is virtualised: filter it to the one wanted
        self.page.get_by_role("option", name=method_title, exact=True).click()
        self.idle()
        button = self.page.get_by_role("button", name="Run the randomisation check")
        self.timed(f"randomise {method_title}", button.click)

    def upload(self, png: bytes) -> None:
        self.page.get_by_text("... or your own image").click()
        chooser = self.page.locator('input[type="file"]')
        self.timed("upload", lambda: chooser.set_input_files(
            files=[{"name": "own.png", "mimeType": "image/png", "buffer": png}]))

    def in_viewport(self, locator) -> bool:
        box = locator.bounding_box()
        return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"] \
            and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]


def radiograph_png(size: int = 160, seed: int = 0) -> bytes:
    """A small grey PNG (about 24 kB) standing in for a trainer's own upload."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    pixels = 120 + 60 * np.sin(6 * x) * np.cos(4 * y) + rng.normal(0, 25, (size, size))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
