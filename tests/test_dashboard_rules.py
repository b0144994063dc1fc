"""The rules behind the researcher dashboard: password source, throttling, enrolment codes, quality flags."""

from __future__ import annotations

import pytest
from conftest import use_lab

from xai_lab.errors import ConfigError
from xai_lab.store.database import open_database
from xai_lab.study.access import (
    FIRST_WAIT_S,
    PASSWORD_ENV,
    Throttle,
    admin_password,
    code_matches,
    enrolment_code,
    password_matches,
)
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.monitor import monitor_study
from xai_lab.study.service import StudyService


def test_password_from_env_then_secrets_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert admin_password() is None  # nothing configured: no dashboard
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('admin_password = "from-secrets-file"\n')
    assert admin_password() == "from-secrets-file"
    monkeypatch.setenv(PASSWORD_ENV, "from-environment")
    assert admin_password() == "from-environment"
    monkeypatch.setenv(PASSWORD_ENV, "short")
    with pytest.raises(ConfigError, match="shorter than 8"):
        admin_password()
    monkeypatch.delenv(PASSWORD_ENV)
    (tmp_path / ".streamlit" / "secrets.toml").write_text("admin_password = [\n")
    with pytest.raises(ConfigError, match="cannot read"):
        admin_password()


def test_password_compare():
    assert password_matches("correct horse", "correct horse")
    assert not password_matches("correct hors", "correct horse")
    assert not password_matches("", "correct horse")


def test_throttle_doubles_the_wait_after_three_failures_and_clears_on_success():
    now = [1000.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_seconds("a") == 0
        throttle.failed("a")
    assert throttle.wait_seconds("a") == pytest.approx(FIRST_WAIT_S)
    assert throttle.wait_seconds("b") == 0  # per client
    now[0] += FIRST_WAIT_S
    assert throttle.wait_seconds("a") == 0
    throttle.failed("a")
    assert throttle.wait_seconds("a") == pytest.approx(2 * FIRST_WAIT_S)
    throttle.succeeded("a")
    assert throttle.wait_seconds("a") == 0


def test_enrolment_code_is_per_study_and_checked(study_home, monkeypatch):
    use_lab(study_home, monkeypatch)
    engine = open_database()
    code = enrolment_code(engine, "t")
    assert len(code) == 10 and code.isalnum()
    assert code_matches(engine, "t", code.lower()) and code_matches(engine, "t", f" {code[:5]} {code[5:]} ")
    # a link as an e-mail client ends it ("...&code=XXXX." or "(...&code=XXXX)"), or a code read aloud with dashes
    assert code_matches(engine, "t", f"{code}.") and code_matches(engine, "t", f"{code})")
    assert code_matches(engine, "t", f"{code[:5]}-{code[5:]}")
    assert not code_matches(engine, "t", code[:-1]) and not code_matches(engine, "t", f"{code}A")
    assert not code_matches(engine, "t", code[:-1] + ("A" if code[-1] != "A" else "B"))
    with pytest.raises(ConfigError, match="no study 'nope'"):
        enrolment_code(engine, "nope")


def test_quality_flags_catch_unmoved_confidence_and_fast_answers(study_home, monkeypatch):
    use_lab(study_home, monkeypatch)
    design = load_design(study_home / "t.toml")
    service = StudyService.open(design, load_case_set(design))
    token = service.enrol()
    step = service.resume(token)
    n = 0
    while step.kind not in ("rating", "questionnaire", "debrief", "complete"):
        n += 1
        if step.kind == "consent":
            answer = {"agree": True}
        elif step.kind == "profile":
            answer = {name: options[0] for name, options in step.content["fields"].items()}
        elif step.kind in ("trial", "practice"):
            # the same confidence every time, instantly
            answer = {"label": "normal", "confidence": 50, "slider_moved": True}
        elif step.kind == "attention":
            answer = {"label": "lesion"}  # wrong: the check's answer is normal
        else:
            answer = {}
        step = service.submit(token, step.key, answer, f"k{n}")
    status = monitor_study(open_database(), "t")
    participant_id = next(flag.participant_id for flag in status.flags if flag.flag == "confidence_never_moved")
    kinds = {flag.flag for flag in status.flags if flag.participant_id == participant_id}
    assert kinds == {"attention_failed", "confidence_never_moved", "implausibly_fast"}
    assert status.trials >= 6 and status.median_rt_final_ms is not None
    assert sum(row["enrolled"] for row in status.by_arm) == status.flow["enrolled"] - \
        status.flow["declined_consent"] - status.flow["not_yet_allocated"] - status.flow["opened_not_consented"]
