"""The browser page, driven by Streamlit's AppTest (no browser needed for these checks)."""

from __future__ import annotations

from conftest import REPO_ROOT, run_cli
from streamlit.testing.v1 import AppTest

APP = str(REPO_ROOT / "app.py")


def test_empty_lab_says_what_to_do(lab_home):
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "xai-lab demo" in app.info[0].value


def test_case_with_model_advice_and_lesion_outline(lab_home):
    assert run_cli("data", "synth", "--name", "tiny", "--n", "60", "--size", "32").code == 0
    assert run_cli("train", "--data", "tiny", "--epochs", "1", "--quiet").code == 0
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert app.sidebar.selectbox[1].value == "tiny"  # the dataset's own model is chosen by default
    assert app.metric[0].value.endswith("confident")
    assert app.metric[0].label in {"normal", "lesion"}
    app.sidebar.number_input[0].set_value(3).run()
    app.sidebar.checkbox[0].check().run()
    assert not app.exception
    assert app.subheader[0].value == "Truth"
    app.sidebar.selectbox[1].select("(no model)").run()
    assert not app.metric  # no advice without a model
