"""The study UI driven by Streamlit's AppTest: every page, every arm, reloads, replays, forgeries, login.

The app runs against the real study engine and a real SQLite database in the module's lab
(`study_home`: a tiny synthetic dataset, a quickly trained model, a prepared 3-arm study `t`
with 6 trials, 1 practice case, 1 attention check, 2 peer ratings and a questionnaire).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from conftest import REPO_ROOT, run_cli, use_lab, write_study
from PIL import Image
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from xai_lab.model.card import read_model_card
from xai_lab.model.storage import update_model_card
from xai_lab.store.database import open_database
from xai_lab.store.schema import allocation_slots, events, participants, ratings, trials
from xai_lab.study.access import enrolment_code
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import ReplayedSubmit, StudyService
from xai_lab.ui import registry
from xai_lab.ui.screens.reading import CALIBRATED

APP = str(REPO_ROOT / "app.py")
PASSWORD = "correct horse battery"
PAGES = "xai_lab/ui/page_scripts"


@pytest.fixture
def lab(study_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_STUDIES", "t")
    monkeypatch.setenv("XAI_LAB_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("XAI_LAB_DATABASE_URL", raising=False)
    registry.close_all()  # the pages' shared resources are per process; each test starts clean
    st.cache_resource.clear()
    st.cache_data.clear()
    yield study_home
    registry.close_all()


def engine():
    return open_database()


def new_app(**params: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        app.query_params[key] = value
    return app.run()


def enrolled_app(study: str = "t") -> AppTest:
    app = new_app(study=study, code=enrolment_code(engine(), study))
    assert not app.exception, app.exception
    assert len(app.title) == 1  # the enrolment run's title is not drawn a second time above consent
    return app


def current_key(app: AppTest) -> str:
    """The step key the page shows, read from the database for this session's token."""
    return service().resume(app.session_state["token:t"]).key


def service() -> StudyService:
    return StudyService(engine(), load_design(_design_path()), _case_set())


def _design_path() -> Path:
    return Path(os.environ["XAI_LAB_HOME"]) / "t.toml"


def _case_set():
    return load_case_set(load_design(_design_path()))


def button(app: AppTest, key_prefix: str, label: str | None = None):
    found = [b for b in app.button if (b.key or "").startswith(key_prefix) and (label is None or b.label == label)]
    assert found, f"no button {key_prefix!r} ({label}) on the page; buttons: {[b.key for b in app.button]}"
    return found[0]


def texts(app: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "subheader", "title", "info", "warning",
                                              "error", "success") for e in getattr(app, kind))


def start(app: AppTest, role: str = "nurse") -> str:
    """Consent, profile, read the instructions; returns the arm the instructions are for."""
    button(app, "agree:").click().run()
    assert [box.label for box in app.selectbox] == ["Your role", "Your specialty", "Years of clinical experience",
                                                    "How often have you used AI tools in your work?"]
    for box in app.selectbox:
        box.select(role if box.key.endswith(":role") else box.options[0]).run()
    button(app, "go:profile").click().run()
    assert not app.exception, app.exception
    return current_key(app).split(":")[1]


def enrol_into(arm: str, role: str = "nurse") -> AppTest:
    """Enrol fresh participants (each in a new browser session) until one is allocated `arm`."""
    for _ in range(6):  # every block of 3 or 6 holds each arm
        app = enrolled_app()
        if start(app, role) == arm:
            return app
    raise AssertionError(f"no {arm} allocation in 6 enrolments")


def answer_trial(app: AppTest, label: str, confidence: int) -> None:
    key = current_key(app)
    app.slider(key=f"confidence:{key}").set_value(confidence).run()
    button(app, f"decide:{key}:{label}").click().run()
    assert not app.exception, app.exception


def finish_after_trials(app: AppTest) -> None:
    """Ratings, questionnaire and debrief, answering every Likert item with 5."""
    while (key := current_key(app)).startswith(("rating", "questionnaire")):
        for radio in app.radio:
            if radio.key.startswith(key):
                radio.set_value(5).run()
        button(app, f"go:{key}").click().run()
        assert not app.exception, app.exception
    assert current_key(app) == "debrief"
    assert "Thank you" in texts(app)
    button(app, "go:debrief").click().run()
    assert "You have finished" in texts(app)


def run_session(app: AppTest, toggle_overlay: bool = False) -> list[str]:
    """Answer every step up to the ratings; returns the step keys seen."""
    seen = []
    while True:
        key = current_key(app)
        seen.append(key)
        if key.startswith("instructions"):
            button(app, f"go:{key}").click().run()
        elif key.startswith(("trial", "practice")):
            if toggle_overlay and key.endswith("final") and app.toggle:
                app.toggle(key=f"overlay:{key}").set_value(False).run()
            answer_trial(app, "lesion" if len(seen) % 2 else "normal", 40 + len(seen))
        elif key.startswith("attention"):
            button(app, f"attention:{key}:normal").click().run()
        else:
            return seen


def participant_rows(app: AppTest):
    token_hash = hashlib.sha256(app.session_state["token:t"].encode()).hexdigest()
    with engine().connect() as connection:
        person = connection.execute(select(participants).where(participants.c.token_sha256 == token_hash)).first()
        rows = connection.execute(select(trials).where(trials.c.participant_id == person.participant_id)
                                  .order_by(trials.c.trial_index)).mappings().all()
    return person, rows


# ---------------------------------------------------------------- full sessions


def test_full_verify_session(lab):
    app = enrol_into("verify")
    assert "AI suggestion" not in texts(app)
    seen = run_session(app, toggle_overlay=True)
    assert seen[1:3] == ["practice:0:initial", "practice:0:final"]
    assert sum(key.startswith("trial") for key in seen) == 12  # initial and final for each of 6 trials
    finish_after_trials(app)
    person, rows = participant_rows(app)
    assert person.status == "completed" and person.arm == "verify"
    assert len(rows) == 6
    assert all(r["initial_label"] is not None and r["initial_confidence"] is not None for r in rows)
    assert all(r["rt_initial_ms"] is not None for r in rows)
    shown = [r for r in rows if r["overlay_shown"]]
    assert shown, "no trial showed a map: the toggle check below would pass without checking anything"
    assert [r["overlay_toggles"] for r in shown] == [1] * len(shown)
    with engine().connect() as connection:
        rated = connection.execute(select(func.count()).select_from(ratings)
                                   .where(ratings.c.rater_id == person.participant_id)).scalar()
    assert rated == 2 * 2  # two targets, two items each


def test_verify_shows_ai_only_after_the_initial_answer(lab):
    app = enrol_into("verify")
    button(app, "go:instructions").click().run()
    assert current_key(app) == "practice:0:initial"
    assert "AI suggestion" not in texts(app) and not app.toggle
    answer_trial(app, "normal", 30)
    assert current_key(app) == "practice:0:final"
    assert "AI suggestion" in texts(app)
    assert "Your first reading: **normal**, 30% sure." in texts(app)


def test_full_rely_session(lab):
    app = enrol_into("rely")
    button(app, "go:instructions").click().run()
    assert current_key(app) == "practice:0:final"
    assert "AI suggestion" in texts(app)  # advice from the start
    seen = run_session(app)
    assert not any(key.endswith("initial") for key in seen)
    finish_after_trials(app)
    person, rows = participant_rows(app)
    assert person.status == "completed" and person.arm == "rely" and len(rows) == 6
    assert all(r["initial_label"] is None and r["ai_label"] is not None for r in rows)


def test_calibration_sentence_only_when_the_models_test_ece_supports_it(lab, monkeypatch):
    card = read_model_card(lab / "models" / "tiny")
    claim = card.calibration["claim"]
    # the template's model reads a perfect marker: near-certain and right, its test ECE bound is small
    assert claim["supported"], claim
    app = enrol_into("rely")
    button(app, "go:instructions").click().run()
    assert "AI suggestion" in texts(app) and CALIBRATED in texts(app)
    # the same model, had its test ECE bound been too high: a study prepared from it withholds the sentence
    update_model_card(lab / "models" / "tiny", "calibration", {**card.calibration, "claim": {
        **claim, "supported": False}})
    try:
        result = run_cli("study", "prepare", str(write_study(lab, "t2", arms='["rely"]')))
    finally:  # the module's other tests keep the card as trained
        update_model_card(lab / "models" / "tiny", "calibration", card.calibration)
    assert result.code == 0, result.err
    monkeypatch.setenv("XAI_LAB_STUDIES", "t,t2")
    registry.close_all()
    app = enrolled_app("t2")  # one arm: every participant relies on the AI
    button(app, "agree:").click().run()
    for box in app.selectbox:
        box.select(box.options[0]).run()
    button(app, "go:profile").click().run()
    button(app, "go:instructions").click().run()
    assert "AI suggestion" in texts(app) and CALIBRATED not in texts(app)
    assert "Probability of" in texts(app)  # the number itself is still shown


def test_control_session_never_shows_ai(lab):
    app = enrol_into("control")
    button(app, "go:instructions").click().run()
    while (key := current_key(app)).startswith(("trial", "practice", "attention")):
        assert "AI suggestion" not in texts(app) and not app.toggle
        if key.startswith("attention"):
            button(app, f"attention:{key}:normal").click().run()
        else:
            answer_trial(app, "normal", 55)
    finish_after_trials(app)
    person, rows = participant_rows(app)
    assert person.arm == "control" and len(rows) == 6
    assert all(r["ai_label"] is None and r["overlay_shown"] is None for r in rows)


# ---------------------------------------------------------------- the trial screen's rules


def test_a_click_records_and_draws_the_next_step_in_one_transaction(lab, monkeypatch):
    """The step `submit` returns is drawn; the page does not ask the database again with `resume`."""
    app = enrolled_app()
    resumed: list[str] = []
    original = StudyService.resume
    monkeypatch.setattr(StudyService, "resume", lambda self, token: resumed.append(token) or original(self, token))
    button(app, "agree:").click().run()
    assert not app.exception and resumed == [] and app.subheader[0].value == "About you"
    app.run()  # a rerun without an answer (reload, another widget) reads the database again
    assert len(resumed) == 1 and app.subheader[0].value == "About you"


def test_confidence_must_be_touched_before_deciding(lab):
    app = enrol_into("rely")
    button(app, "go:instructions").click().run()
    key = current_key(app)
    assert all(b.disabled for b in app.button if b.key.startswith(f"decide:{key}"))
    app.slider(key=f"confidence:{key}").set_value(50).set_value(70).run()
    assert not any(b.disabled for b in app.button if b.key.startswith(f"decide:{key}"))


def test_reload_mid_trial_returns_to_the_same_trial_without_duplicates(lab):
    app = enrol_into("verify")
    button(app, "go:instructions").click().run()
    answer_trial(app, "normal", 60)  # practice initial
    answer_trial(app, "normal", 60)  # practice final
    answer_trial(app, "lesion", 70)  # trial 0 initial
    assert current_key(app) == "trial:0:final"
    app.slider(key="confidence:trial:0:final").set_value(20).run()  # this tab is about to answer ...
    token = app.session_state["token:t"]
    assert any(f"token={token}" in code.value for code in app.code)  # the personal link to resume with
    reloaded = new_app(study="t", token=token)  # a reload is a new browser session with the same URL
    assert current_key(reloaded) == "trial:0:final"
    assert "Your first reading: **lesion**, 70% sure." in texts(reloaded)
    answer_trial(reloaded, "normal", 80)
    person, rows = participant_rows(reloaded)
    assert len(rows) == 1 and rows[0]["initial_label"] == "lesion" and rows[0]["final_label"] == "normal"
    # ... the old tab now answers the step the reload already answered: refused, nothing duplicated
    button(app, "decide:trial:0:final:lesion").click().run()
    assert "already been answered" in texts(app)
    assert len(participant_rows(app)[1]) == 1


def test_replayed_submit_is_recorded_once(lab):
    app = enrol_into("rely")
    button(app, "go:instructions").click().run()
    answer_trial(app, "normal", 60)  # practice
    key = current_key(app)
    answer_trial(app, "lesion", 65)
    replay_key = app.session_state[f"idem:{key}"]
    with engine().connect() as connection:
        before = connection.execute(select(func.count()).select_from(events)).scalar()
    with pytest.raises(ReplayedSubmit):
        service().submit(app.session_state["token:t"], key, {"label": "lesion", "confidence": 65, "slider_moved": True},
                         replay_key)
    with engine().connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar() == before
    assert len(participant_rows(app)[1]) == 1


def test_forged_token_and_unknown_study_are_refused(lab):
    with engine().connect() as connection:
        before = connection.execute(select(func.count()).select_from(events)).scalar()
    forged = new_app(study="t", token="not-a-real-token")
    assert not forged.exception
    assert "not recognised" in forged.error[0].value
    assert not forged.button and not forged.slider
    unknown = new_app(study="someone-else", token="x")
    assert "not recognised" in unknown.error[0].value
    wrong_code = new_app(study="t", code="AAAAAAAAAA")
    assert "not right" in wrong_code.error[0].value
    with engine().connect() as connection:
        assert connection.execute(select(func.count()).select_from(events)).scalar() == before


def test_arm_cannot_be_chosen_from_the_url_or_session_state(lab):
    arms = []
    for _ in range(6):  # a stratum no other test uses
        app = AppTest.from_file(APP, default_timeout=60)
        app.query_params.update(study="t", code=enrolment_code(engine(), "t"), arm="control")
        app.session_state["arm"] = "control"
        app.run()
        arms.append(start(app, role="student"))
    with engine().connect() as connection:  # the concealed sequence decided, in order
        sequence = connection.execute(select(allocation_slots.c.arm).where(
            allocation_slots.c.study_id == "t", allocation_slots.c.stratum == "role=student")
            .order_by(allocation_slots.c.slot).limit(6)).scalars().all()
    assert arms == sequence
    assert set(arms) == {"verify", "rely", "control"}  # the first block of 3 or 6 holds every arm


def test_withdrawal_deletes_answers(lab):
    app = enrol_into("rely")
    button(app, "go:instructions").click().run()
    answer_trial(app, "normal", 60)
    answer_trial(app, "normal", 60)
    app.checkbox(key="withdraw:sure").check().run()
    app.button(key="withdraw:go").click().run()
    assert "withdrawn" in texts(app)
    person, rows = participant_rows(app)
    assert person.status == "withdrawn" and rows == []


# ---------------------------------------------------------------- researcher dashboard


def researcher_app() -> AppTest:
    app = new_app()
    return app.switch_page(f"{PAGES}/researcher.py").run()


def test_dashboard_login_failure_shows_nothing_protected(lab):
    app = researcher_app()
    assert not app.exception
    app.text_input[0].input("wrong password")
    app.button[0].click().run()
    assert app.error[0].value == "Wrong password."
    assert not app.metric and not app.dataframe and not app.selectbox


def test_dashboard_login_is_throttled(lab):
    app = researcher_app()
    for _ in range(3):
        app.text_input[0].input("nope")
        app.button[0].click().run()
    app.text_input[0].input(PASSWORD)  # even the right password waits out the delay
    app.button[0].click().run()
    assert "Too many failed attempts" in app.error[0].value
    assert not app.metric


def test_dashboard_after_login_shows_flow_balance_and_exports(lab):
    enrol_into("rely")  # somebody allocated, so there is something to show
    app = researcher_app()
    app.text_input[0].input(PASSWORD)
    app.button[0].click().run()
    assert not app.exception, app.exception
    labels = {metric.label: metric.value for metric in app.metric}
    assert int(labels["Consented"]) >= 1
    assert app.dataframe and "arm" in app.dataframe[0].value.columns
    build = [b for b in app.button if b.label == "Build export files"][0]
    build.click().run()
    assert not app.exception
    assert "export" in app.session_state


def test_no_password_means_no_dashboard(lab, monkeypatch):
    monkeypatch.delenv("XAI_LAB_ADMIN_PASSWORD")
    monkeypatch.chdir(lab)  # no .streamlit/secrets.toml here
    app = new_app()
    with pytest.raises(ValueError):
        app.switch_page(f"{PAGES}/researcher.py")  # not registered: the page does not exist


# ---------------------------------------------------------------- trainer page


def trainer_app() -> AppTest:
    return new_app().switch_page(f"{PAGES}/trainer.py").run()


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad", "gradient_shap", "deeplift",
                                    "occlusion", "gradcam", "guided_gradcam"])
def test_trainer_page_with_each_method(lab, method):
    app = trainer_app()
    assert not app.exception, app.exception
    app.multiselect[0].set_value([method]).run()
    assert not app.exception, app.exception
    assert len(app.get("image")) == 1  # one panel: the chosen method
    with engine().connect() as connection:
        before = connection.execute(select(func.count()).select_from(events)).scalar()
    app.button[0].click().run()  # the randomisation check
    assert not app.exception, app.exception
    assert "on this image" in texts(app)
    with engine().connect() as connection:  # nothing is logged from the trainer page
        assert connection.execute(select(func.count()).select_from(events)).scalar() == before


def test_trainer_upload_is_checked(lab):
    from xai_lab.data.uploads import read_uploaded_image
    from xai_lab.errors import DataError

    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.random.default_rng(0).integers(0, 255, (40, 50)))).save(buffer, format="PNG")
    assert read_uploaded_image(buffer.getvalue(), 32).shape == (1, 32, 32)
    with pytest.raises(DataError, match="PNG or JPEG"):
        read_uploaded_image(b"GIF89a not really", 32)
    gif = io.BytesIO()
    Image.new("L", (10, 10)).save(gif, format="GIF")
    with pytest.raises(DataError, match="is a GIF, not a PNG or JPEG"):
        read_uploaded_image(gif.getvalue(), 32)
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")  # 25 M pixels in a few kB
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(DataError, match="more than 16,777,216 pixels"):
        read_uploaded_image(bomb.getvalue(), 32)
    with pytest.raises(DataError, match="damaged"):
        read_uploaded_image(buffer.getvalue()[:200], 32)


def test_sixteen_bit_uploads_are_windowed_not_saturated():
    """A 12-bit radiograph in a 16-bit PNG reads as the same picture as its 8-bit export, not as white."""
    from xai_lab.data.uploads import read_uploaded_image

    ramp = np.linspace(0, 1, 64 * 64, dtype=np.float64).reshape(64, 64)
    eight, sixteen = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.uint8(np.round(ramp * 255))).save(eight, format="PNG")
    Image.fromarray(np.uint16(np.round(ramp * 4095))).save(sixteen, format="PNG")  # mode I;16
    assert Image.open(io.BytesIO(sixteen.getvalue())).mode.startswith("I")
    from_eight, from_sixteen = (read_uploaded_image(b.getvalue(), 32) for b in (eight, sixteen))
    assert float(from_sixteen.mean()) == pytest.approx(0.5, abs=0.02)  # saturation gave about 1.0
    assert float((from_eight - from_sixteen).abs().max()) < 0.02
    assert read_uploaded_image(sixteen.getvalue(), 32, channels=3).shape == (3, 32, 32)
    flat = io.BytesIO()
    Image.fromarray(np.full((20, 20), 1000, dtype=np.uint16)).save(flat, format="PNG")
    assert float(read_uploaded_image(flat.getvalue(), 32).abs().max()) == 0.0


# ---------------------------------------------------------------- serve and invite on the command line


def test_invite_links_resume_at_consent(lab, tmp_path):
    from conftest import run_cli

    links = tmp_path / "links.csv"
    result = run_cli("invite", "--design", str(_design_path()), "--n", "3", "--out", str(links))
    assert result.code == 0, result.err
    rows = links.read_text().splitlines()
    assert rows[0] == "number,link" and len(rows) == 4
    token = rows[1].split("token=")[1]
    app = new_app(study="t", token=token)
    assert current_key(app) == "consent" and app.button(key="agree:consent")
    again = run_cli("invite", "--design", str(_design_path()), "--n", "3", "--out", str(links))
    assert again.code == 2 and "exists" in again.err  # never overwrites the only copy of tokens


@pytest.mark.parametrize("args, message", [
    ([], "name at least one study to serve"),
    (["--design", "nowhere.toml"], "no study design at nowhere.toml"),
    (["--design", "STUDY", "--port", "0"], "--port must be from 1 to 65535"),
    (["--design", "UNPREPARED"], "xai-lab study prepare"),
])
def test_serve_bad_input_is_one_line_and_exit_2(lab, tmp_path, args, message):
    from conftest import run_cli, write_study

    unprepared = write_study(tmp_path, study_id="never-prepared")
    args = [str(_design_path()) if a == "STUDY" else str(unprepared) if a == "UNPREPARED" else a for a in args]
    result = run_cli("serve", *args)
    assert result.code == 2 and message in result.err, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_serve_refuses_a_port_in_use(lab):
    import socket

    from conftest import run_cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("serve", "--design", str(_design_path()), "--port", str(busy.getsockname()[1]))
    assert result.code == 2 and "choose another --port" in result.err


@pytest.mark.parametrize("ai, expected", [
    ({"label": "lesion", "confidence": 0.48, "threshold": 0.427},
     "Probability of lesion: 48%, at or above the AI's threshold of 43%, so the AI suggests lesion."),
    ({"label": "normal", "confidence": 0.88, "threshold": 0.427},
     "Probability of lesion: 12%, below the AI's threshold of 43%, so the AI suggests normal."),
    ({"label": "normal", "confidence": 1 - 0.4265, "threshold": 0.427},  # rounds onto the threshold
     "Probability of lesion: just under 43%, below the AI's threshold of 43%, so the AI suggests normal."),
    ({"label": "normal", "confidence": 0.9996, "threshold": 0.53},  # never "0%"
     "Probability of lesion: <1%, below the AI's threshold of 53%, so the AI suggests normal."),
    ({"label": "lesion", "confidence": 0.9996, "threshold": 0.53},  # never "100%"
     "Probability of lesion: >99%, at or above the AI's threshold of 53%, so the AI suggests lesion."),
    ({"label": "lesion", "confidence": 0.998, "threshold": 0.996},  # a threshold near 1 is never "100%"
     "Probability of lesion: 99.8%, at or above the AI's threshold of 99.6%, so the AI suggests lesion."),
    ({"label": "normal", "confidence": 1 - 0.9955, "threshold": 0.996},
     "Probability of lesion: just under 99.6%, below the AI's threshold of 99.6%, so the AI suggests normal."),
    ({"label": "lesion", "confidence": 0.99996, "threshold": 0.996},  # nor the probability with decimals
     "Probability of lesion: >99.9%, at or above the AI's threshold of 99.6%, so the AI suggests lesion."),
    ({"label": "normal", "confidence": 0.999, "threshold": 0.003},  # nor near 0 "0%"
     "Probability of lesion: 0.1%, below the AI's threshold of 0.3%, so the AI suggests normal."),
    ({"label": "lesion", "confidence": 0.48, "threshold": None}, "Probability of lesion: 48%."),
    ({"label": "lesion", "confidence": 0.999, "threshold": None}, "Probability of lesion: >99%."),
])
def test_the_advice_number_never_contradicts_the_label(ai, expected):
    from xai_lab.ui.screens.reading import advice_probability

    assert advice_probability(ai, ["normal", "lesion"]) == expected


def test_a_threshold_with_decimals_is_written_the_study_languages_way():
    from xai_lab.ui.i18n import use
    from xai_lab.ui.screens.reading import advice_probability

    try:
        use("de")
        said = advice_probability({"label": "lesion", "confidence": 0.998, "threshold": 0.996}, ["normal", "lesion"])
    finally:
        use("en")
    assert "99,6 %" in said and "100" not in said


def test_practice_feedback_when_the_design_asks_for_it(lab, monkeypatch):
    from conftest import run_cli, write_study

    path = write_study(lab, study_id="pf", arms='["rely"]', blocks="[2]")
    path.write_text(path.read_text().replace('score = ', 'practice_feedback = true\nscore = ')
                    if "[trials]" in path.read_text() else path.read_text() + "\n[trials]\npractice_feedback = true\n")
    assert run_cli("study", "prepare", str(path)).code == 0
    monkeypatch.setenv("XAI_LAB_STUDIES", path.stem)
    registry.close_all()
    app = new_app(study="pf", code=enrolment_code(engine(), "pf"))
    start_service = StudyService(engine(), load_design(path), load_case_set(load_design(path)))
    button(app, "agree:").click().run()
    for box in app.selectbox:
        box.select(box.options[0]).run()
    button(app, "go:profile").click().run()
    button(app, "go:instructions").click().run()
    key = start_service.resume(app.session_state["token:pf"]).key
    assert key.startswith("practice")
    truth = start_service.case_set.practice[0].true_label
    app.slider(key=f"confidence:{key}").set_value(70).run()
    button(app, f"decide:{key}:normal").click().run()
    assert not app.exception, app.exception
    shown = " ".join(str(info.value) for info in app.info)
    assert f"Practice case: this image shows {truth}." in shown and "The study cases will not say." in shown
    # the first study case gives no feedback
    key = start_service.resume(app.session_state["token:pf"]).key
    app.slider(key=f"confidence:{key}").set_value(70).run()
    button(app, f"decide:{key}:normal").click().run()
    assert not any("Practice case" in str(info.value) for info in app.info)


def test_trainer_captions_are_plain_words():
    from xai_lab.ui.trainer import cascade_caption, map_columns, render_size

    blocks = ["head", "features.3", "features.2", "features.1", "features.0"]
    assert cascade_caption("features.1", blocks) == "weights randomised from the output back to block 2 of 4"
    assert cascade_caption("head", blocks) == "output layer's weights randomised"
    assert cascade_caption("original", blocks) == "trained weights"
    imported = ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert cascade_caption("layer4", imported) == "weights randomised from the output back to block 6 of 6"
    assert cascade_caption("conv1", imported) == "weights randomised from the output back to block 1 of 6"
    # a single map takes half the row (whole on a 768-px screen); maps are drawn at twice the width shown
    assert map_columns(1) == 2 and map_columns(3) == 3 and render_size(1) == render_size(2) == 960
    assert render_size(4) == 480


def test_the_second_model_opens_on_one_that_answers_with_the_same_classes(lab_home):
    """On synthetic images the shortcut model comes before a chest X-ray model of the same input size."""
    import json

    from support.cards import a_model_card

    from xai_lab.ui.trainer import _models_for

    def model(name: str, dataset: str, sha: str, classes: list[str]) -> None:
        folder = lab_home / "models" / name
        folder.mkdir(parents=True)
        (folder / "weights.pt").write_bytes(b"")
        card = a_model_card(name, dataset=dataset, content_sha256=sha, class_names=tuple(classes), input_size=128)
        (folder / "model_card.json").write_text(json.dumps(card.to_json()))

    model("synthetic", "synthetic", "s", ["normal", "lesion"])
    model("kermany", "kermany", "k", ["normal", "pneumonia"])  # sorts before "shortcut"
    model("shortcut", "shortcut", "c", ["normal", "lesion"])
    shown = list(_models_for("s", 128, ["normal", "lesion"]))
    assert shown == ["synthetic", "shortcut (trained on shortcut)", "kermany (trained on kermany)"]
