"""Open the study database: URL resolution, engine settings, versioned schema.

- Default: a SQLite file, ``$XAI_LAB_HOME/xai_lab.db``, in WAL mode with foreign keys on.
  Every write transaction starts with ``BEGIN IMMEDIATE``: SQLite then serialises writers
  up front (waiting up to 30 s for the lock) instead of failing a transaction that read
  first and tries to write later, which is what makes concurrent enrolment safe there.
  ``synchronous=NORMAL`` in WAL mode survives a killed process (only a power cut can lose
  the last commits), at a fraction of FULL's fsync cost.
- ``XAI_LAB_DATABASE_URL=postgresql://user@host:port/db`` selects PostgreSQL through psycopg 3;
  allocation and submits take row locks (``SELECT ... FOR UPDATE``), see `xai_lab.store.repository`.

Migrations: the schema carries a version in ``schema_version``; `open_database` applies the
missing steps of `MIGRATIONS` in order, each in its own transaction, and refuses a database
written by a newer xai-lab. A short ordered list of functions rather than Alembic: the lab
creates its own schema on first use, with no migration scripts for users to run or edit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from xai_lab.errors import ConfigError
from xai_lab.paths import lab_home
from xai_lab.store.schema import metadata, panel_entries, participants, schema_version, studies, trials

DATABASE_ENV = "XAI_LAB_DATABASE_URL"
DEFAULT_FILE = "xai_lab.db"


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else $XAI_LAB_DATABASE_URL, else the SQLite default."""
    url = url or os.environ.get(DATABASE_ENV)
    if not url:
        return f"sqlite:///{lab_home() / DEFAULT_FILE}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{DATABASE_ENV} is not a database URL ({url!r}); use sqlite:///path/to/file.db "
                          "or postgresql://user@host:5432/dbname") from None
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        # Plain postgresql:// URLs use the driver this project declares (psycopg 3).
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "postgresql+psycopg"):
        raise ConfigError(f"unsupported database {parsed.drivername!r} in {DATABASE_ENV}; use sqlite:/// "
                          "or postgresql://")
    return parsed.render_as_string(hide_password=False)


def create_database_engine(url: str | None = None) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        _create_private_file(Path(path))
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10,
                           max_overflow=10)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (SQLAlchemy's
        # documented recipe), so that "begin" below can make them IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only (0600), before SQLite does with the
    umask's 0644: it holds participants' answers. SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass  # an existing database keeps the mode its owner gave it


def _migration_1(connection: Connection) -> None:
    metadata.create_all(connection)


def _migration_2(connection: Connection) -> None:
    """participants.enrolled_via: caps and counts enrolments through the shared code (a database
    created at version 2 or later already has it from `metadata.create_all`)."""
    if "enrolled_via" not in {column["name"] for column in inspect(connection).get_columns("participants")}:
        connection.execute(text("ALTER TABLE participants ADD COLUMN enrolled_via VARCHAR(16)"))


def _migration_3(connection: Connection) -> None:
    """trials.initial_score / final_score: each reading as a probability of the positive class (MRMC ROC)."""
    existing = {column["name"] for column in inspect(connection).get_columns("trials")}
    for name in ("initial_score", "final_score"):
        if name not in existing:
            connection.execute(text(f"ALTER TABLE trials ADD COLUMN {name} INTEGER"))


def _migration_4(connection: Connection) -> None:
    """trials.overlay_look (how the map was drawn) and the viewer's use (zoom, pan, contrast)."""
    _add_missing_columns(connection, trials, ("overlay_look", "viewer_max_zoom", "viewer_actions",
                                              "viewer_window_changes"))


def _migration_5(connection: Connection) -> None:
    """trials: the factor levels a trial was read under and how its advice was presented (conditions as factors)."""
    _add_missing_columns(connection, trials, ("conditions", "advice_label", "confidence_display", "ai_requested",
                                              "advice_model", "map_source", "rt_ai_request_ms"))


def _migration_6(connection: Connection) -> None:
    """participants.consent_version: who agreed to which consent text. Before it, a registered study's
    consent text could not change once anyone had enrolled, so everyone who consented agreed to the
    text stored with the study: that is their version."""
    _add_missing_columns(connection, participants, ("consent_version",))
    for study_id, design in connection.execute(select(studies.c.study_id, studies.c.design)).all():
        # The rule of study.design.consent_version, written out: the store does not import the study
        # layer, and a migration keeps the rule of its day (tests/test_upgrade.py pins the two equal).
        version = hashlib.sha256(str(design.get("consent_text", "")).encode()).hexdigest()[:12]
        connection.execute(update(participants).where(
            participants.c.study_id == study_id, participants.c.consent_version.is_(None),
            participants.c.step_key != "consent", participants.c.status != "declined").values(consent_version=version))


def _migration_7(connection: Connection) -> None:
    """panel_entries: recruitment panels' participant ids, kept apart from the answers."""
    panel_entries.create(connection, checkfirst=True)


def _migration_8(connection: Connection) -> None:
    """trials: attention telemetry (time the tab was hidden or the window unfocused; the viewport)."""
    _add_missing_columns(connection, trials, ("hidden_ms", "blurred_ms", "viewport_width", "viewport_height"))


def _add_missing_columns(connection: Connection, table: Table, names: tuple[str, ...]) -> None:
    """ALTER TABLE ... ADD COLUMN for those of `names` the database lacks, typed as `schema` declares
    them (compiled for this database's dialect), so a migration never restates a column's type."""
    existing = {column["name"] for column in inspect(connection).get_columns(table.name)}
    for name in names:
        if name not in existing:
            kind = table.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))


# (version, step): append, never edit, once a version has shipped.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _migration_1), (2, _migration_2),
                                                               (3, _migration_3), (4, _migration_4),
                                                               (5, _migration_5), (6, _migration_6),
                                                               (7, _migration_7), (8, _migration_8)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def open_database(url: str | None = None) -> Engine:
    """An engine on a database at the current schema version (created or upgraded here)."""
    engine = create_database_engine(url)
    try:
        current = _current_version(engine)
    except OperationalError as error:
        engine.dispose()
        reason = str(error.orig).splitlines()[0] if error.orig else str(error)
        raise ConfigError(f"cannot open the study database {engine.url.render_as_string()} ({reason}); "
                          f"check {DATABASE_ENV} or that the server is running") from None
    if current > SCHEMA_VERSION:
        engine.dispose()
        raise ConfigError(f"the study database has schema version {current}, newer than this xai-lab "
                          f"({SCHEMA_VERSION}); upgrade xai-lab")
    for version, step in MIGRATIONS:
        if version > current:
            with engine.begin() as connection:
                step(connection)
                connection.execute(schema_version.delete())
                connection.execute(schema_version.insert().values(version=version))
    return engine


def _current_version(engine: Engine) -> int:
    with engine.connect() as connection:
        if not inspect(connection).has_table("schema_version"):
            return 0
        version = connection.execute(select(schema_version.c.version)).scalar()
    return int(version or 0)


def write_problem(engine: Engine) -> str | None:
    """None when a write transaction can run now; else the database's reason, in one line.

    Runs a real write (a no-op update of the schema version) and rolls it back, so a read-only
    file or role, a full lock or a lost server all show, and nothing changes.
    """
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(update(schema_version).values(version=schema_version.c.version))
            finally:
                transaction.rollback()
    except SQLAlchemyError as error:
        original = getattr(error, "orig", None) or error
        return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    return None
