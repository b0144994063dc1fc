"""One person, one participant, and the hardening around it, without a served app (that is
test_served_hardening.py and the browser tests): throttles and client identity, enrolment caps,
design bounds, prepare's order, private files, CSV formulas, rebuild, the calm error page."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from http.cookies import SimpleCookie
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from conftest import REPO_ROOT, run_cli, use_lab, write_study
from sqlalchemy import create_engine, event, select
from starlette.requests import Request
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.testing.v1 import AppTest

from xai_lab.private_files import neutralise_formulas
from xai_lab.store.database import create_database_engine, open_database, write_problem
from xai_lab.store.schema import events, participants
from xai_lab.study.access import (
    ATTACK_FAILURES,
    CLIENT_POLICY,
    AccessGuard,
    Attempt,
    ConfigError,
    OneEnrolmentPerBrowser,
    RateWindow,
    client_identity,
    legacy_participant_cookie,
    participant_cookie,
    trusted_proxies,
)
from xai_lab.study.cases import load_case_set, prepared_path
from xai_lab.study.design import MAX_BLOCK_SIZE
from xai_lab.study.design_file import load_design
from xai_lab.study.export import export_study, table_file
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.serve_setup import register_design_files
from xai_lab.study.service import MAX_READING_EVENTS_PER_STEP, EnrolmentClosed, StudyService
from xai_lab.study.simulate import SimulationConfig, simulate, tokens_path
from xai_lab.ui import registry
from xai_lab.ui.message_filter import ConnectionWidgets, json_problem
from xai_lab.ui.web import same_site


@pytest.fixture
def home(study_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("XAI_LAB_DATABASE_URL", raising=False)
    return use_lab(study_home, monkeypatch)


def fresh_service(home: Path, **design) -> StudyService:
    path = write_study(home, **design) if design else home / "t.toml"
    loaded = load_design(path)
    if design:
        assert run_cli("study", "prepare", str(path)).code == 0
    return StudyService.open(loaded, load_case_set(loaded), url=f"sqlite:///{home}/{uuid.uuid4().hex}.db")


# ---------------------------------------------------------------- who is asking


def test_forwarded_for_is_believed_only_from_a_trusted_proxy():
    proxies = ("127.0.0.1", "10.0.0.0/8")
    assert client_identity("203.0.113.5", "1.2.3.4") == "203.0.113.5"  # no proxy trusted: header ignored
    assert client_identity("127.0.0.1", "1.2.3.4") == "127.0.0.1"
    assert client_identity("127.0.0.1", "1.2.3.4", proxies) == "1.2.3.4"
    # nginx appends what it saw; what the client wrote comes before it and is never believed
    assert client_identity("127.0.0.1", "6.6.6.6, 1.2.3.4", proxies) == "1.2.3.4"
    assert client_identity("127.0.0.1", "1.2.3.4, 10.1.2.3", proxies) == "1.2.3.4"  # through two proxies
    assert client_identity("198.51.100.7", "1.2.3.4", proxies) == "198.51.100.7"  # not a proxy of ours
    assert client_identity(None, "1.2.3.4", proxies) == "unknown"


def test_trusted_proxies_setting_is_checked(monkeypatch):
    monkeypatch.setenv("XAI_LAB_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    assert trusted_proxies() == ("127.0.0.1", "10.0.0.0/8")
    monkeypatch.setenv("XAI_LAB_TRUSTED_PROXIES", "nginx.local")
    with pytest.raises(ConfigError, match="XAI_LAB_TRUSTED_PROXIES lists 'nginx.local'"):
        trusted_proxies()


def test_guard_throttles_each_client_for_its_own_failures_only():
    now = [0.0]
    guard = AccessGuard(clock=lambda: now[0])
    for _ in range(CLIENT_POLICY.free):
        assert guard.wait_seconds("researcher", "a") == 0
        guard.failed("researcher", "a")
        now[0] += 1.5  # a person retyping: seconds apart, which must not forgive anything yet
    assert guard.wait_seconds("researcher", "a") == pytest.approx(CLIENT_POLICY.first_wait_s - 1.5)
    assert guard.wait_seconds("researcher", "b") == 0  # another client is not blocked by a's typos
    assert guard.wait_seconds("code:t", "a") == 0  # nor is a's enrolment code
    guard.failed("researcher", "a")
    assert guard.wait_seconds("researcher", "a") == pytest.approx(2 * CLIENT_POLICY.first_wait_s)
    # failures are forgiven with time, one per 10 minutes: 40 minutes later a's four cost nothing
    now[0] += 4 * CLIENT_POLICY.forgive_s
    assert guard.wait_seconds("researcher", "a") == 0 and guard.clients.failures("researcher|a") < 1
    for _ in range(CLIENT_POLICY.free - 1):
        guard.failed("researcher", "a")
    assert guard.wait_seconds("researcher", "a") == 0


def test_an_attack_from_many_addresses_slows_wrong_guesses_and_locks_nobody_out():
    now = [0.0]
    guard = AccessGuard(clock=lambda: now[0])
    for index in range(ATTACK_FAILURES + 30):  # many addresses, one wrong code each, within seconds
        assert guard.try_secret("code:t", f"attacker{index}", lambda: False) == Attempt(matched=False)
        now[0] += 0.5
    assert guard.under_attack("code:t")
    # a genuine participant with the right code is never refused for what others did
    assert guard.try_secret("code:t", "genuine", lambda: True) == Attempt(matched=True)
    assert guard.try_secret("researcher", "genuine", lambda: True) == Attempt(matched=True)  # other scope
    # while the attack lasts, a wrong guess from a fresh address costs it its free attempts
    assert guard.try_secret("code:t", "fresh", lambda: False) == Attempt(matched=False)
    assert guard.wait_seconds("code:t", "fresh") == pytest.approx(CLIENT_POLICY.first_wait_s)
    # ten minutes after the attack, one wrong code is an ordinary typo again: free attempts, nobody waits
    now[0] += 600
    assert not guard.under_attack("code:t")
    assert guard.try_secret("code:t", "typo", lambda: False) == Attempt(matched=False)
    assert guard.wait_seconds("code:t", "typo") == 0
    assert guard.try_secret("code:t", "typo", lambda: True) == Attempt(matched=True)
    assert guard.try_secret("code:t", "someone-else", lambda: True) == Attempt(matched=True)


def test_typos_over_a_long_study_never_add_up_to_an_attack():
    now = [0.0]
    guard = AccessGuard(clock=lambda: now[0])
    for index in range(500):  # one typo a minute, for over eight hours
        guard.failed("code:t", f"person{index}")
        now[0] += 60
        assert not guard.under_attack("code:t")


def test_a_throttled_attempt_is_refused_without_checking_the_secret():
    now, checked = [0.0], []
    guard = AccessGuard(clock=lambda: now[0])

    def wrong() -> bool:
        checked.append(1)
        return False

    for _ in range(CLIENT_POLICY.free):
        assert guard.try_secret("researcher", "a", wrong) == Attempt(matched=False)
    throttled = guard.try_secret("researcher", "a", lambda: True)  # even the right password waits
    assert not throttled.matched and throttled.wait_s == pytest.approx(CLIENT_POLICY.first_wait_s)
    assert len(checked) == CLIENT_POLICY.free  # the throttled attempt never reached the check
    now[0] += CLIENT_POLICY.first_wait_s
    assert guard.try_secret("researcher", "a", lambda: True) == Attempt(matched=True)
    guard.enrolled("code:t", "b")
    assert guard.try_secret("code:t", "b", lambda: True, enrolling=True).matched  # one enrolment is fine


def test_enrolments_per_client_are_limited_in_a_sliding_window():
    now = [0.0]
    window = RateWindow(limit=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert window.wait_seconds("x") == 0
        window.record("x")
        now[0] += 1
    assert window.wait_seconds("x") == pytest.approx(57)
    assert window.wait_seconds("y") == 0
    now[0] += 57
    assert window.wait_seconds("x") == 0


def test_every_study_has_its_own_cookie_and_old_names_are_still_read():
    assert participant_cookie("demo") == "xai_lab_demo"
    assert participant_cookie("demo-x") != participant_cookie("demo_x") != participant_cookie("demo.x")
    names = {participant_cookie(study) for study in ("demo-x", "demo_x", "demo.x", "Demo-x")}
    assert len(names) == 4 and all(SimpleCookie(f"{name}=v").get(name).value == "v" for name in names)
    assert legacy_participant_cookie("site-a.v2") == "xai_lab_site_a_v2"  # what releases before 2026-12 set
    assert legacy_participant_cookie("demo") is None


def test_one_browser_enrols_once_however_many_sessions_ask_at_once():
    now = [0.0]
    once = OneEnrolmentPerBrowser(window_s=600, clock=lambda: now[0])
    made: list[str] = []

    def enrol() -> str:
        time.sleep(0.05)  # the database's time: every other session asks meanwhile
        made.append(f"token{len(made)}")
        return made[-1]

    results: list[tuple[str, bool]] = []
    sessions = [threading.Thread(target=lambda: results.append(once.enrol("s|browser-1", enrol))) for _ in range(5)]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join()
    assert sorted(results) == [("token0", False)] * 4 + [("token0", True)] and made == ["token0"]
    assert once.enrol("s|browser-2", enrol) == ("token1", True)  # another browser: another participant
    assert once.enrol("t|browser-1", enrol) == ("token2", True)  # the same browser in another study
    now[0] += 601  # after the window the participant cookie does this job
    assert once.enrol("s|browser-1", enrol) == ("token3", True)


@pytest.mark.parametrize("origin, host, same", [
    ("http://127.0.0.1:8501", "127.0.0.1:8501", True),
    ("http://127.0.0.1:8502", "127.0.0.1:8501", False),  # another app on the same host
    ("http://evil.example", "127.0.0.1:8501", False),
    ("https://study.example", "study.example", True),  # a proxy on 443 passing Host without the port
    ("https://study.example:8443", "study.example:8443", True),
    ("https://study.example:8443", "study.example", False),  # the proxy dropped the port: docs/deploy.md
    ("http://127.0.0.1:x", "127.0.0.1:8501", False),
])
def test_the_remember_route_takes_requests_from_its_own_host_and_port_only(origin, host, same):
    request = Request({"type": "http", "method": "POST", "path": "/", "scheme": "http",
                       "headers": [(b"origin", origin.encode()), (b"host", host.encode())]})
    assert same_site(request) is same


# ---------------------------------------------------------------- enrolment


def test_code_enrolments_stop_at_the_cap_and_invitations_do_not_count(home, tmp_path):
    path = write_study(tmp_path, study_id="capped")
    path.write_text(path.read_text() + "\n[enrolment]\nmax_enrolments = 2\n")
    assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    assert design.enrolment.max_enrolments == 2
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{tmp_path}/cap.db")
    service.enrol(via="code")
    service.enrol(via="invite")
    service.enrol(via="code")
    with pytest.raises(EnrolmentClosed, match="closed to new participants"):
        service.enrol(via="code")
    service.enrol(via="invite")  # a personal link was made for one person: never capped
    with service.engine.connect() as connection:
        routes = sorted(r[0] for r in connection.execute(select(participants.c.enrolled_via)))
    assert routes == ["code", "code", "invite", "invite"]


def test_people_who_never_consented_are_counted_apart(home, tmp_path):
    service = fresh_service(home)
    opened = service.enrol(via="code")
    service.resume(opened)  # saw the consent screen, left
    declined = service.enrol(via="code")
    service.submit(declined, service.resume(declined).key, {"agree": False}, "k1")
    agreed = service.enrol(via="code")
    service.submit(agreed, service.resume(agreed).key, {"agree": True}, "k2")
    counts = export_study(service.engine, "t", tmp_path / "export")
    flow = json.loads((tmp_path / "export" / "flow.json").read_text())
    assert flow["enrolled"] == 3 and flow["opened_not_consented"] == 1 and flow["declined_consent"] == 1
    assert flow["consented"] == 1 and flow["not_yet_allocated"] == 1
    assert counts["participants"] == 1  # only the person who agreed is a participant


# ---------------------------------------------------------------- designs


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("block_sizes = [3, 6]", "block_sizes = [20000000]"),
     f"multiples of 3 (the number of arms) up to {MAX_BLOCK_SIZE}"),
    (lambda t: t.replace("block_sizes = [3, 6]", "block_sizes = [" + ", ".join(["3"] * 2000) + "]"),
     "must list 1-8 multiples"),
    (lambda t: t.replace('arms = ["verify", "rely", "control"]\n', ""), "arms is missing; list the arms"),
    (lambda t: t.replace("seed = 11", "seed = 99999999999999999999"), "seed must be an integer from 0 to"),
    (lambda t: t.replace("seed = 11", "seed = -1"), "seed must be an integer from 0"),
    (lambda t: t + "\n[enrolment]\nmax_enrolments = 0\n", "enrolment.max_enrolments must be an integer from 1"),
    (lambda t: t + "\n[enrolment]\nmax_enrolments = 1000001\n", "to 100000"),
    (lambda t: t + "\n[enrolment]\nmax_per_day = 3\n", "unknown key enrolment.max_per_day"),
    (lambda t: t.replace("n = 6", "n = 501"), "cases.n must be an integer from 0 to 500"),
    (lambda t: t + "\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nests arrays or tables too deeply"),
    (lambda t: t + "\n# " + "x" * 300_000 + "\n", "larger than 256 KiB"),
])
def test_design_bounds_are_one_line_errors(tmp_path, edit, message):
    path = write_study(tmp_path)
    path.write_text(edit(path.read_text()))
    result = run_cli("study", "validate", str(path))
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err
    assert len(result.err) < 600  # a pasted list of thousands is cut short in the message


@pytest.mark.parametrize("path, message", [("/dev/zero", "is not a regular file"), (".", "is not a regular file")])
def test_design_files_that_are_not_files_are_refused_before_reading(path, message):
    result = run_cli("study", "validate", path)
    assert result.code == 2 and message in result.err, result.err


def test_refused_prepare_leaves_the_prepared_study_untouched(home, tmp_path):
    path = write_study(home, study_id="frozen")
    assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    StudyService.open(design, load_case_set(design)).enrol()  # the study now has a participant
    before = prepared_path("frozen").read_bytes()
    path.write_text(path.read_text().replace("n = 6", "n = 5"))  # a changed design under the same id
    result = run_cli("study", "prepare", str(path))
    assert result.code == 2 and "give the changed design a new id" in result.err
    assert prepared_path("frozen").read_bytes() == before


# ---------------------------------------------------------------- files and exports


def test_files_with_tokens_or_data_are_private(home, tmp_path):
    database = tmp_path / "private.db"
    engine = open_database(f"sqlite:///{database}")
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    engine.dispose()
    links = tmp_path / "links.csv"
    assert run_cli("invite", "--design", str(home / "t.toml"), "--n", "2", "--out", str(links),
                   "--database", f"sqlite:///{database}").code == 0
    assert stat.S_IMODE(links.stat().st_mode) == 0o600
    service = StudyService.open(load_design(home / "t.toml"), load_case_set(load_design(home / "t.toml")),
                                url=f"sqlite:///{database}")
    simulate(service, SimulationConfig(participants=2, seed=3, dropout=0.0, pilot=True))  # beside invited people
    assert stat.S_IMODE(tokens_path(service).stat().st_mode) == 0o600
    export_study(service.engine, "t", tmp_path / "export")
    for exported in (tmp_path / "export").rglob("*"):  # files owner-only; the data/ folder owner-only too
        assert stat.S_IMODE(exported.stat().st_mode) == (0o700 if exported.is_dir() else 0o600), exported.name


def test_csv_cells_that_spreadsheets_would_run_are_neutralised(home, tmp_path):
    frame = pd.DataFrame({"role": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\t=1", " =1+1", "\n=cmd",
                                   "nurse", " nurse", None],
                          "score": [1, -2, 3, 4, 5, 6, 7, 8, 9, 10]})
    safe = neutralise_formulas(frame)
    assert safe["role"].tolist()[:9] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\t=1", "' =1+1",
                                         "'\n=cmd", "nurse", " nurse"]
    assert safe["score"].tolist() == [1, -2, 3, 4, 5, 6, 7, 8, 9, 10]  # numbers are never touched
    path = write_study(tmp_path, study_id="formula")
    path.write_text(path.read_text() + '\n[profile]\nrole = ["=cmd|\' /C calc\'!A0", "nurse"]\n')
    assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{tmp_path}/f.db")
    token = service.enrol()
    service.submit(token, service.resume(token).key, {"agree": True}, "a")
    service.submit(token, service.resume(token).key, {"role": "=cmd|' /C calc'!A0", "specialty": "radiology",
                                      "experience_years": "0-2", "prior_ai_use": "never"}, "b")
    export_study(service.engine, "formula", tmp_path / "export")
    assert "'=cmd" in table_file(tmp_path / "export", "participants").read_text()
    assert "apostrophe" in (tmp_path / "export" / "codebook.md").read_text()


def test_rebuild_keeps_the_completion_of_a_participant_who_then_withdrew(home, tmp_path):
    service = fresh_service(home)
    simulate(service, SimulationConfig(participants=2, seed=5, dropout=0.0))
    first = tokens_path(service).read_text().splitlines()[0].split("\t")[1]
    assert service.resume(first).status == "completed"
    service.withdraw(first)  # the design deletes the data on withdrawal: only a tombstone event stays
    before = _completion(service)
    assert sum(completed is not None for _, completed in before) == 2
    rebuild_derived(service.engine, "t")
    assert _completion(service) == before


def _completion(service: StudyService) -> list[tuple[str, str | None]]:
    with service.engine.connect() as connection:
        return sorted(connection.execute(select(participants.c.participant_id, participants.c.completed_at)).all())


def test_write_problem_names_a_locked_sqlite_database(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path}/locked.db")
    assert write_problem(engine) is None
    blocker = create_engine(f"sqlite:///{tmp_path}/locked.db", connect_args={"isolation_level": None}).raw_connection()
    blocker.execute("BEGIN EXCLUSIVE")
    quick = create_database_engine(f"sqlite:///{tmp_path}/locked.db")
    event.listen(quick, "connect", lambda connection, _: connection.execute("PRAGMA busy_timeout=100"))
    try:
        assert "locked" in (write_problem(quick) or "")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert write_problem(engine) is None


# ---------------------------------------------------------------- the page


@pytest.fixture
def page_lab(study_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_lab(study_home, monkeypatch)
    monkeypatch.setenv("XAI_LAB_STUDIES", "t")
    monkeypatch.delenv("XAI_LAB_DATABASE_URL", raising=False)
    registry.close_all()
    st.cache_data.clear()
    yield study_home
    registry.close_all()


def app_with(**params: str) -> AppTest:
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60)
    for key, value in params.items():
        app.query_params[key] = value
    return app.run()


def test_a_wrong_code_in_the_link_offers_the_box(page_lab):
    from xai_lab.study.access import enrolment_code

    app = app_with(study="t", code="WRONGCODE")
    assert "not right for this study" in app.error[0].value
    assert app.text_input[0].label == "Enrolment code from your invitation"
    app.text_input[0].input(enrolment_code(registry.database(), "t"))
    app.button[0].click().run()  # the form's Start
    assert not app.exception and app.button(key="agree:consent")


def test_an_unreachable_database_gets_a_calm_page(page_lab, monkeypatch):
    monkeypatch.setenv("XAI_LAB_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")  # nothing listens on 9
    app = app_with(study="t", code="ANY")
    assert not app.exception
    assert "busy or restarting" in app.warning[0].value and "answers so far are saved" in app.warning[0].value


def test_the_personal_link_is_offered_to_continue_later(page_lab):
    from xai_lab.study.access import enrolment_code

    app = app_with(study="t", code=enrolment_code(registry.database(), "t"))
    app.button(key="agree:consent").click().run()
    token = app.session_state["token:t"]
    assert any(f"token={token}" in code.value for code in app.code)
    assert app.expander[0].label == "Continue later"



def test_uploads_unlike_the_training_images_are_flagged(home):
    """The tiny test model: its own test images pass; real radiographs and blank or noise images do not."""
    import numpy as np
    import torch
    from conftest import shared_file

    from xai_lab.data.storage import load_dataset
    from xai_lab.model.familiarity import FamiliarityCheck
    from xai_lab.model.storage import load_model

    data = load_dataset("tiny")
    model, _ = load_model(home / "models" / "tiny")
    check = FamiliarityCheck.fit(model, data["train"].images, data["val"].images)
    flagged = sum(check.is_unfamiliar(image) for image in data["test"].images)
    assert flagged <= 2, flagged  # a 99th-percentile rule with a margin: rare on the model's own kind of image
    assert check.is_unfamiliar(torch.ones(1, 32, 32)) and check.is_unfamiliar(torch.rand(1, 32, 32))
    radiographs = np.load(shared_file("kermany_cxr_test_224.npz"))["images"][:40]
    real = torch.nn.functional.interpolate(torch.from_numpy(radiographs).float()[:, None] / 255, size=32,
                                           mode="bilinear", antialias=True)
    assert all(check.is_unfamiliar(image) for image in real)


def test_training_saves_the_familiarity_check_beside_the_weights(home):
    """The trainer's first upload reads it instead of fitting it (seconds); it judges as the fitted one."""
    import numpy as np

    from xai_lab.data.storage import load_dataset
    from xai_lab.model.familiarity import FAMILIARITY_FILE, FamiliarityCheck
    from xai_lab.model.storage import load_model

    data = load_dataset("tiny")
    model, _ = load_model(home / "models" / "tiny")
    saved = FamiliarityCheck.load(home / "models" / "tiny" / FAMILIARITY_FILE, model)
    fitted = FamiliarityCheck.fit(model, data["train"].images, data["val"].images)
    # float summation differs between processes and thread counts: equal to 1e-4, not bit for bit
    assert saved is not None and saved.threshold == pytest.approx(fitted.threshold, rel=1e-4)
    distances = [(saved.distance(image), fitted.distance(image)) for image in data["test"].images[:10]]
    np.testing.assert_allclose(*zip(*distances, strict=True), rtol=1e-4)
    (home / "models" / "tiny" / "broken.npz").write_bytes(b"not numpy")
    assert FamiliarityCheck.load(home / "models" / "tiny" / "broken.npz", model) is None
    assert FamiliarityCheck.load(home / "models" / "tiny" / "absent.npz", model) is None


def test_prepare_for_another_database_never_replaces_the_case_set_a_registration_uses(home, tmp_path, monkeypatch):
    path = write_study(tmp_path, study_id="twodb")
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    assert run_cli("study", "prepare", str(path), "--database", first).code == 0
    case_file = prepared_path("twodb")
    written = case_file.read_bytes()
    assert stat.S_IMODE(case_file.stat().st_mode) == 0o600  # it names the cases the AI gets wrong
    service = StudyService.open(load_design(path), load_case_set(load_design(path)), url=first)
    service.enrol()  # the first database's study is running

    import xai_lab.study.prepare as preparing

    chosen = preparing.select_cases  # the model or data changed since: a new preparation picks other cases
    monkeypatch.setattr(preparing, "select_cases",
                        lambda *args, **kwargs: replace(chosen(*args, **kwargs),
                                                        cases=tuple(reversed(chosen(*args, **kwargs).cases))))
    refused = run_cli("study", "prepare", str(path), "--database", second)
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert "registered in sqlite:///" in refused.err and "new id" in refused.err
    assert case_file.read_bytes() == written
    assert register_design_files(open_database(first), [path], say=lambda _: None) == ["twodb"]  # still served

    monkeypatch.setattr(preparing, "select_cases", chosen)  # the same cases: both databases may use the file
    assert run_cli("study", "prepare", str(path), "--database", second).code == 0
    assert case_file.read_bytes() == written


def test_a_wrong_path_is_refused_before_the_heavy_imports():
    """`study prepare nope.toml` and `data import /nope` answer at once (12 s and 9 s on a busy
    machine before): their one line comes before torch is imported."""
    probe = ("import sys; from xai_lab.cli import main; codes = [main(['study', 'prepare', 'nope.toml']), "
             "main(['data', 'import', '/nope', '--name', 'x'])]; print(codes, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[2, 2] False", done.stdout + done.stderr
    assert "no study design at nope.toml" in done.stderr and "no such file or folder: /nope" in done.stderr


def test_widget_states_of_the_wrong_kind_or_bad_json_are_dropped():
    shown = ForwardMsg()
    shown.delta.new_element.slider.id = "slider-1"
    widgets = ConnectionWidgets()
    widgets.learn(shown.SerializeToString())
    message = BackMsg()
    states = message.rerun_script.widget_states.widgets
    for widget_id, field, value in (("slider-1", "int_value", 7), ("viewer-1", "json_value", "{not json"),
                                    ("viewer-1", "json_value", "[" * 5000 + "]" * 5000),
                                    ("viewer-1", "json_value", '"a string"'), ("viewer-1", "json_value", '{"ok": 1}'),
                                    ("other-1", "string_value", "kept")):
        state = states.add()
        state.id = widget_id
        setattr(state, field, value)
    slider_state = states.add()
    slider_state.id = "slider-1"
    slider_state.double_array_value.data.extend([70.0])
    cleaned = BackMsg()
    cleaned.ParseFromString(widgets.clean(message.SerializeToString()))
    kept = [(s.id, s.WhichOneof("value")) for s in cleaned.rerun_script.widget_states.widgets]
    assert kept == [("viewer-1", "json_value"), ("other-1", "string_value"), ("slider-1", "double_array_value")]
    assert widgets.dropped == 4
    assert json_problem("[" * 40_000 + "]" * 40_000, object_only=False) == "component JSON of 80000 characters"
    assert widgets.clean(b"\xff\xfe not a protobuf") == b"\xff\xfe not a protobuf"  # Streamlit refuses it itself


def test_map_toggles_and_viewer_reports_are_bounded_per_step(home):
    service = fresh_service(home, study_id="flood", arms='["rely"]', n=3, blocks="[1]")
    token = service.enrol()
    step = service.submit(token, service.resume(token).key, {"agree": True}, "a")
    step = service.submit(token, step.key, {name: options[0] for name, options in step.content["fields"].items()}, "b")
    step = service.submit(token, step.key, {}, "c")
    for index in range(MAX_READING_EVENTS_PER_STEP + 50):
        service.record_toggle(token, step.key, index % 2 == 0, f"t{index}")
        service.record_viewer(token, step.key, {"max_zoom": 2.0}, f"v{index}")
    with service.engine.connect() as connection:
        kinds = connection.execute(select(events.c.kind).where(events.c.step_key == step.key)).scalars().all()
    assert kinds.count("overlay_toggle") == kinds.count("viewer") == MAX_READING_EVENTS_PER_STEP
