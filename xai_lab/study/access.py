"""Who may do what: the researcher password, login throttling and study enrolment codes.

No Streamlit here, so the rules are testable and the UI only calls them.

- The researcher password comes from ``XAI_LAB_ADMIN_PASSWORD`` or ``admin_password`` in a
  Streamlit ``secrets.toml`` (``./.streamlit/`` or ``~/.streamlit/``). With neither, the
  dashboard is not served at all (`admin_password` returns None and the app leaves the page out).
- Passwords are compared with `hmac.compare_digest` on SHA-256 digests: constant time, and the
  same length whatever was typed, so timing says nothing about the password.
- `AccessGuard` throttles guessing per client: after `FREE_ATTEMPTS` failures from one client
  (its address, per scope: the researcher account or one study's enrolment code), each further
  attempt must wait twice as long as the last (10 s, 20 s, 40 s ... up to 5 minutes); a success
  clears it, and failures are forgiven one per 10 minutes. At most about 300 guesses a day per
  client: enough for a researcher with typos, useless for guessing a password of 8+ characters.
  A correct secret is never refused because *other* clients failed: 20 failures in a scope within
  5 minutes (all clients together) only take the free attempts away from clients that then guess
  wrong, so a guesser spread over many addresses is slowed and nobody is locked out.
  It also limits enrolments per client.
- The client is the connection's address; a ``X-Forwarded-For`` header counts only from a
  proxy listed in ``XAI_LAB_TRUSTED_PROXIES`` (`client_identity`).
- An enrolment code is derived from the study's secret allocation key (HMAC), so it needs no
  storage, is different per study and cannot be guessed from the study id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.store.schema import studies

logger = logging.getLogger(__name__)

PASSWORD_ENV = "XAI_LAB_ADMIN_PASSWORD"
FREE_ATTEMPTS = 3
FIRST_WAIT_S = 10.0
MAX_WAIT_S = 300.0
MAX_TRACKED = 10_000
MIN_PASSWORD_LENGTH = 8
# Enrolments through one code from one client: a browser that enrolled resumes from its cookie,
# so only a shared computer (or a ward behind one NAT address) enrols many; personal invitation
# links (`xai-lab invite`) are never limited. Past this the client waits (RateWindow).
ENROLMENTS_PER_CLIENT = 20
ENROLMENT_WINDOW_S = 600.0
TRUSTED_PROXIES_ENV = "XAI_LAB_TRUSTED_PROXIES"
REMEMBER_PATH = "/xai-lab/remember"  # the served app's route that stores the participant cookie (xai_lab.ui.web)


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


@dataclass(frozen=True)
class ThrottlePolicy:
    """How a throttle answers failures: `free` failures cost nothing, then each further attempt
    waits twice as long as the last, from `first_wait_s` up to `max_wait_s`. One failure is
    forgiven every `forgive_s` seconds, so ordinary typos never add up over a study's life."""

    free: int
    first_wait_s: float
    max_wait_s: float
    forgive_s: float

    def wait_after(self, failures: float) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_wait_s, self.first_wait_s * 2.0 ** (failures - self.free))


# One client (browser address): a person with typos tries again at once; a guesser gets ~300 tries a
# day (at the 5-minute wait, one failure forgiven per 10 minutes still leaves the count growing).
CLIENT_POLICY = ThrottlePolicy(free=FREE_ATTEMPTS, first_wait_s=FIRST_WAIT_S, max_wait_s=MAX_WAIT_S, forgive_s=600.0)
# One account or one enrolment code, all clients together: this many failures within the window
# means someone is guessing (typos come one every few minutes), and a client's wrong guess then costs
# it its free attempts. Never a wait of its own, and over once the window has passed without them.
ATTACK_FAILURES = 20
ATTACK_WINDOW_S = 300.0


@dataclass(frozen=True)
class _Failures:
    count: float  # failures, less those forgiven, at the time of the last one
    last: float


class Throttle:
    """Failed attempts per key under one policy; thread-safe (one instance per server process)."""

    def __init__(self, policy: ThrottlePolicy = CLIENT_POLICY, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def failures(self, key: str) -> float:
        """Failures still counted now (each forgiven after `policy.forgive_s`)."""
        with self._lock:
            return self._forgiven(self._failures.get(key), self._clock())

    def wait_seconds(self, key: str) -> float:
        """How long this key must still wait before the next attempt (0 = may try now)."""
        with self._lock:
            record = self._failures.get(key)
        if record is None:
            return 0.0
        return max(0.0, record.last + self.policy.wait_after(record.count) - self._clock())

    def failed(self, key: str, at_least: float = 0.0) -> None:
        """Count a failure; `at_least` raises the count to that many (free attempts taken away)."""
        with self._lock:
            now = self._clock()
            if len(self._failures) > MAX_TRACKED:  # forget keys whose failures are all forgiven: bounded memory
                self._failures = {k: v for k, v in self._failures.items() if self._forgiven(v, now) > 0}
            count = self._forgiven(self._failures.get(key), now) + 1
            self._failures[key] = _Failures(max(count, at_least), now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _forgiven(self, record: _Failures | None, now: float) -> float:
        if record is None:
            return 0.0
        # whole failures only: a fraction forgiven between two quick tries must not make the third free
        return max(0.0, record.count - math.floor((now - record.last) / self.policy.forgive_s))


class RateWindow:
    """At most `limit` events per key in any `window_s` seconds (sliding window); thread-safe."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._events: dict[str, deque[float]] = {}  # the last `limit` events per key: all the rule needs
        self._lock = threading.Lock()

    def wait_seconds(self, key: str) -> float:
        with self._lock:
            recent = self._recent(key)
            return 0.0 if len(recent) < self.limit else max(0.0, recent[0] + self.window_s - self._clock())

    def record(self, key: str) -> None:
        with self._lock:
            if len(self._events) > MAX_TRACKED:
                now = self._clock()
                self._events = {k: v for k, v in self._events.items() if v and now - v[-1] < self.window_s}
            self._recent(key).append(self._clock())

    def _recent(self, key: str) -> deque[float]:
        events = self._events.setdefault(key, deque(maxlen=self.limit))
        while events and events[0] <= self._clock() - self.window_s:
            events.popleft()
        return events


# A random id per browser (set by the served app's web layer on its first response), so one browser
# opening the shared code link in two tabs at once enrols one participant. Dashes: never a study's cookie.
BROWSER_COOKIE = "xai-lab-browser"
ONE_ENROLMENT_WINDOW_S = 600.0


class OneEnrolmentPerBrowser:
    """Enrolments through a shared code, at most one per browser and study within `window_s`: the
    first session of a browser enrols, any other session of it that asks meanwhile (a second tab
    opened at the same moment, before the participant cookie exists) gets the same participant.
    After the window the participant cookie does this job. Thread-safe; bounded memory."""

    def __init__(self, window_s: float = ONE_ENROLMENT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self._clock = window_s, clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def enrol(self, key: str, enrol: Callable[[], str]) -> tuple[str, bool]:
        """The token this key enrolled within the window, else a new one from `enrol()`; and whether it is new."""
        with self._lock:
            if len(self._tokens) > MAX_TRACKED:
                now = self._clock()
                self._tokens = {k: v for k, v in self._tokens.items() if now - v[1] < self.window_s}
                self._locks = {k: v for k, v in self._locks.items() if k in self._tokens}
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:  # a second tab waits here while the first enrols
            with self._lock:
                found = self._tokens.get(key)
            if found is not None and self._clock() - found[1] < self.window_s:
                return found[0], False
            token = enrol()
            with self._lock:
                self._tokens[key] = (token, self._clock())
            return token, True


@dataclass(frozen=True)
class Attempt:
    matched: bool
    wait_s: float = 0.0  # > 0: throttled, so the secret was not checked; try again after this long


class AccessGuard:
    """Every throttle of a served app: password and enrolment-code guessing, and enrolments per client.

    A *scope* is what is guarded: ``"researcher"`` (the one account) or ``"code:<study id>"``
    (one enrolment code). A client waits only for its own failures in that scope, so a correct
    secret is never refused because others guessed wrong, and wrong codes never touch the
    researcher's account. Each failure also counts against the scope from all clients together:
    while `ATTACK_FAILURES` came within `ATTACK_WINDOW_S`, a client's first wrong guess already makes it
    wait, which slows a guesser spread over many addresses and no one who types the right secret.
    Lives in a process-level registry, never in Streamlit's caches, so a client's ``clear_cache``
    message cannot reset it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 enrolments_per_client: int = ENROLMENTS_PER_CLIENT, window_s: float = ENROLMENT_WINDOW_S) -> None:
        self.clients = Throttle(CLIENT_POLICY, clock)
        self.scope_failures = RateWindow(ATTACK_FAILURES, ATTACK_WINDOW_S, clock)
        self.enrolments = RateWindow(enrolments_per_client, window_s, clock)
        self.browser_enrolments = OneEnrolmentPerBrowser(clock=clock)

    def wait_seconds(self, scope: str, client: str) -> float:
        return self.clients.wait_seconds(f"{scope}|{client}")

    def under_attack(self, scope: str) -> bool:
        """More recent failures in this scope, from all clients together, than typos explain."""
        return self.scope_failures.wait_seconds(scope) > 0

    def failed(self, scope: str, client: str) -> None:
        attacked = self.under_attack(scope)
        self.clients.failed(f"{scope}|{client}", at_least=CLIENT_POLICY.free if attacked else 0.0)
        self.scope_failures.record(scope)
        if not attacked and self.under_attack(scope):  # once per attack: the researcher should know
            logger.warning("%d wrong attempts at %s within %.0f minutes: someone may be guessing; each address "
                           "now waits after its first wrong attempt", ATTACK_FAILURES, scope, ATTACK_WINDOW_S / 60)

    def succeeded(self, scope: str, client: str) -> None:
        self.clients.succeeded(f"{scope}|{client}")

    def try_secret(self, scope: str, client: str, matches: Callable[[], bool], enrolling: bool = False) -> Attempt:
        """One guarded attempt at a secret (a password, an enrolment code), the only way the pages
        check one: refused unchecked while this client is throttled; otherwise checked, with the
        failure or success counted. `enrolling` also applies the per-client enrolment rate."""
        wait = self.wait_seconds(scope, client)
        if enrolling:
            wait = max(wait, self.enrolment_wait(scope, client))
        if wait > 0:
            return Attempt(matched=False, wait_s=wait)
        if not matches():
            self.failed(scope, client)
            return Attempt(matched=False)
        self.succeeded(scope, client)
        return Attempt(matched=True)

    def enrolment_wait(self, scope: str, client: str) -> float:
        """Seconds until this client may enrol again through this code (0 = now)."""
        return self.enrolments.wait_seconds(f"{scope}|{client}")

    def enrolled(self, scope: str, client: str) -> None:
        self.enrolments.record(f"{scope}|{client}")


def client_identity(peer: str | None, forwarded_for: str | None = None,
                    trusted_proxies: tuple[str, ...] = ()) -> str:
    """Who a request comes from, for throttling: the peer address, or behind a trusted proxy the
    right-most ``X-Forwarded-For`` address that is not itself a trusted proxy.

    Forwarded headers from any other peer are ignored: anyone can write them. ``xai-lab serve``
    hands the same list to uvicorn (``FORWARDED_ALLOW_IPS``), which applies this rule before the
    app sees the connection; this function states the rule and is what the tests check it against.
    """
    if not peer:
        return "unknown"
    if forwarded_for and _trusted(peer, trusted_proxies):
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            if not _trusted(hop, trusted_proxies):
                return hop
    return peer


def _trusted(address: str, trusted_proxies: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in trusted_proxies)


def trusted_proxies() -> tuple[str, ...]:
    """The proxies whose ``X-Forwarded-For`` is believed: ``XAI_LAB_TRUSTED_PROXIES`` (addresses or
    networks, comma-separated). Empty by default: behind no proxy, nothing forwarded is trusted."""
    raw = os.environ.get(TRUSTED_PROXIES_ENV, "")
    entries = tuple(part.strip() for part in raw.split(",") if part.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{TRUSTED_PROXIES_ENV} lists {entry!r}, which is not an IP address or network; "
                              "give addresses such as 127.0.0.1 or 10.0.0.0/8, comma-separated") from None
    return entries


def participant_cookie(study_id: str) -> str:
    """The cookie that lets a browser that enrolled in a study resume it from the shared code link.
    Study ids use only letters, digits, ``_``, ``.`` and ``-``, all allowed in a cookie name, so
    every study has its own cookie (``demo-x`` and ``demo_x`` never share one)."""
    return f"xai_lab_{study_id}"


def legacy_participant_cookie(study_id: str) -> str | None:
    """The name releases before 2026-12 gave the cookie (``-`` and ``.`` written as ``_``), read so that
    browsers which enrolled then still resume; None when it is the current name. A token found under
    it counts only if it belongs to the study, since two studies could share that name."""
    old = f"xai_lab_{study_id.replace('-', '_').replace('.', '_')}"
    return None if old == participant_cookie(study_id) else old


def enrolment_code(engine: Engine, study_id: str) -> str:
    """The study's enrolment code: 10 characters from an HMAC of its secret allocation key."""
    with engine.connect() as connection:
        secret = connection.execute(select(studies.c.allocation_secret)
                                    .where(studies.c.study_id == study_id)).scalar()
    if secret is None:
        raise ConfigError(f"no study {study_id!r} in the database; prepare it with 'xai-lab study prepare FILE'")
    mac = hmac.new(bytes.fromhex(secret), f"enrol:{study_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode()[:10]


CODE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")  # base32, as `enrolment_code` writes it


def code_matches(engine: Engine, study_id: str, typed: str) -> bool:
    # Only the code's own alphabet counts: e-mail clients end a link with the sentence's "." or ")",
    # and people type spaces or dashes into a code read aloud.
    cleaned = "".join(c for c in typed.upper() if c in CODE_ALPHABET)
    return hmac.compare_digest(cleaned.encode(), enrolment_code(engine, study_id).encode())
