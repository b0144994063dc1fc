"""The app shell with nothing prepared: each page says what to do instead of failing."""

from __future__ import annotations

import pytest
import streamlit as st
from conftest import REPO_ROOT
from streamlit.testing.v1 import AppTest

APP = str(REPO_ROOT / "app.py")


@pytest.fixture
def empty_lab(lab_home, monkeypatch):
    monkeypatch.delenv("XAI_LAB_STUDIES", raising=False)
    monkeypatch.delenv("XAI_LAB_DATABASE_URL", raising=False)
    st.cache_resource.clear()
    return lab_home


def test_no_study_served_says_how_to_start_one(empty_lab):
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "xai-lab serve --design" in app.info[0].value


def test_trainer_page_without_data_says_how_to_make_it(empty_lab):
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("xai_lab/ui/page_scripts/trainer.py").run()
    assert not app.exception
    assert "xai-lab demo" in app.info[0].value


def test_trainer_page_opens_on_the_guides_dataset_not_the_alphabetically_first(empty_lab):
    from conftest import run_cli

    for name in ("marker-control", "synthetic"):
        assert run_cli("data", "synth", "--name", name, "--n", "40", "--size", "32").code == 0
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("xai_lab/ui/page_scripts/trainer.py").run()
    assert not app.exception
    assert app.selectbox(key="trainer:dataset").value == "synthetic"
    assert "There is no model for dataset 'synthetic' yet" in app.info[0].value
