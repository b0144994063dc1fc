"""Who may do what: the researcher password, login throttling and study enrolment codes.

No Streamlit here, so the rules are testable and the UI only calls them.

- The researcher password comes from ``XAI_LAB_ADMIN_PASSWORD`` or ``admin_password`` in a
  Streamlit ``secrets.toml`` (``./.streamlit/`` or ``~/.streamlit/``). With neither, the
  dashboard is not served at all (`admin_password` returns None and the app leaves the page out).
- Passwords are compared with `hmac.compare_digest` on SHA-256 digests: constant time, and the
  same length whatever was typed, so timing says nothing about the password.
- `LoginThrottle`: after `FREE_ATTEMPTS` failures from one client, each further attempt must
  wait twice as long as the last (10 s, 20 s, 40 s ... up to 5 minutes); a success clears it.
  At most about 300 guesses a day per client: enough for a researcher with typos, useless for
  guessing a password of 8+ characters.
- An enrolment code is derived from the study's secret allocation key (HMAC), so it needs no
  storage, is different per study and cannot be guessed from the study id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
import tomllib
from pathlib import Path

from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.store.schema import studies

PASSWORD_ENV = "XAI_LAB_ADMIN_PASSWORD"
FREE_ATTEMPTS = 3
FIRST_WAIT_S = 10.0
MAX_WAIT_S = 300.0
MAX_TRACKED = 10_000
MIN_PASSWORD_LENGTH = 8


def secrets_files() -> list[Path]:
    """Where Streamlit looks for secrets.toml, project first."""
    return [Path.cwd() / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"]


def admin_password() -> str | None:
    """The configured researcher password, or None when there is none (dashboard off)."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = _from_secrets()
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the researcher password is shorter than {MIN_PASSWORD_LENGTH} characters; set a longer "
                          f"{PASSWORD_ENV} (or admin_password in .streamlit/secrets.toml)")
    return password


def _from_secrets() -> str | None:
    for path in secrets_files():
        if not path.is_file():
            continue
        try:
            value = tomllib.loads(path.read_text(encoding="utf-8")).get("admin_password")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read {path} ({error}); fix it or set {PASSWORD_ENV} instead") from None
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"{path}: admin_password must be a string in quotes")
            return value
    return None


def password_matches(typed: str, expected: str) -> bool:
    digest = hashlib.sha256
    return hmac.compare_digest(digest(typed.encode()).digest(), digest(expected.encode()).digest())


class LoginThrottle:
    """Failed logins per client key; thread-safe (one instance per server process)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last one)
        self._lock = threading.Lock()
        self._clock = clock

    def wait_seconds(self, key: str) -> float:
        """How long this client must still wait before the next attempt (0 = may try now)."""
        with self._lock:
            failures, last = self._failures.get(key, (0, 0.0))
        if failures < FREE_ATTEMPTS:
            return 0.0
        delay = min(MAX_WAIT_S, FIRST_WAIT_S * 2.0 ** (failures - FREE_ATTEMPTS))
        return max(0.0, last + delay - self._clock())

    def failed(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            if len(self._failures) > MAX_TRACKED:  # forget clients idle past the longest wait: bounded memory
                self._failures = {k: v for k, v in self._failures.items() if now - v[1] < MAX_WAIT_S}
            failures, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (failures + 1, now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def enrolment_code(engine: Engine, study_id: str) -> str:
    """The study's enrolment code: 10 characters from an HMAC of its secret allocation key."""
    with engine.connect() as connection:
        secret = connection.execute(select(studies.c.allocation_secret)
                                    .where(studies.c.study_id == study_id)).scalar()
    if secret is None:
        raise ConfigError(f"no study {study_id!r} in the database; prepare it with 'xai-lab study prepare FILE'")
    mac = hmac.new(bytes.fromhex(secret), f"enrol:{study_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode()[:10]


def code_matches(engine: Engine, study_id: str, typed: str) -> bool:
    cleaned = "".join(typed.split()).upper()
    return hmac.compare_digest(cleaned.encode(), enrolment_code(engine, study_id).encode())
