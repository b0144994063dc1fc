"""The app's frame: page config, a calm look, and the three pages behind `st.navigation`.

URLs: ``/`` participant (``?study=ID&token=...`` or ``&code=...``), ``/researcher`` (only when a
researcher password is configured) and ``/trainer``. The navigation menu is hidden: a
participant never sees links to the other pages; researchers and trainers open their URL.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from xai_lab.errors import XaiLabError
from xai_lab.study.access import admin_password

# Page files, so AppTest.switch_page can open each. Not a folder named "pages": Streamlit (1.67) finds
# such a folder beside the entry script and serves each file at its own URL (/trainer, /researcher,
# /participant) without this shell - no page config, and a sidebar listing every page to anyone.
PAGES = Path(__file__).resolve().parent / "page_scripts"

# Less empty space above the content, so a trial fits a 1366 x 768 laptop screen without scrolling.
CALM_CSS = "<style>.block-container {padding-top: 3.4rem; padding-bottom: 1rem;}</style>"


def dashboard_enabled() -> bool:
    try:
        return admin_password() is not None
    except XaiLabError:
        return True  # a password is set but unusable: the page explains what to fix


def run() -> None:
    st.set_page_config(page_title="xai-lab", layout="wide", initial_sidebar_state="collapsed")
    st.markdown(CALM_CSS, unsafe_allow_html=True)
    pages = [st.Page(PAGES / "participant.py", title="Study", url_path="participate", default=True)]
    if dashboard_enabled():
        pages.append(st.Page(PAGES / "researcher.py", title="Researcher", url_path="researcher"))
    pages.append(st.Page(PAGES / "trainer.py", title="Trainer", url_path="trainer"))
    st.navigation(pages, position="hidden").run()
