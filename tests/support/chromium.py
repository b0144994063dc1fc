"""Test-only: Debian's headless Chromium, driven by Python Playwright through `executable_path`.

Its own browser download fails here, so the browser is the one `apt-get install chromium
chromium-driver` puts in /usr/bin (`.ci/run` installs it). Tests needing it skip when it is
absent, unless XAI_LAB_REQUIRE_BROWSER=1 (CI sets it), which turns the absence into a failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("XAI_LAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 768}  # a hospital laptop's screen


def chromium_or_skip() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("XAI_LAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing but XAI_LAB_REQUIRE_BROWSER=1: apt-get install chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    return CHROMIUM


def idle(page) -> None:
    """The script run finished and no element of the previous screen is left (Streamlit marks them stale)."""
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=30_000)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=30_000)


def stored_cookie(context, name: str, timeout_s: float = 30.0) -> dict:
    """The cookie once the page's request to store it has come back (the address bar changes first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [c for c in context.cookies() if c["name"] == name]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no cookie {name} after {timeout_s:.0f} s")
