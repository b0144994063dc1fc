"""Shared fixtures: an isolated lab home per test, the shared real data, a CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.chromium import CHROMIUM_FLAGS, chromium_or_skip
from support.local_server import free_port, served_app  # noqa: F401  (tests import it from here)

from xai_lab.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # Each pytest-xdist worker (one per core) gets one torch thread, and so does every process it
    # starts (OMP_NUM_THREADS is inherited): two workers training with torch's default two threads
    # each on 2 cores took 324 s per default model instead of 119 s with one thread each (measured
    # 2026-12-04), and that oversubscription nearly doubled CI. Every training recipe is fixed in
    # epochs, so the thread count changes float summation only, never how much a model learns.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for a module's browser tests (`support.chromium`)."""
    executable = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=30_000)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XAI_LAB_HOME pointing at an empty temporary folder."""
    home = tmp_path / "lab"
    home.mkdir()
    monkeypatch.setenv("XAI_LAB_HOME", str(home))
    return home


@contextlib.contextmanager
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab home for a module-scoped fixture to fill once (XAI_LAB_HOME set while it runs).

    Tests then enter it with `use_lab`, since function-scoped monkeypatching ends with each test.
    """
    home = tmp_path_factory.mktemp("lab")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XAI_LAB_HOME", str(home))
        yield home


def use_lab(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XAI_LAB_HOME", str(home))
    return home


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or a clean skip saying what is missing."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: this test needs the shared real data (see ../shared/README.md)")
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Run `xai-lab ARGS` in-process and capture exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse usage errors
            code = int(exit_.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


# ---------------------------------------------------------------- studies

STUDY_TOML = """
id = "{id}"
title = "Test study"
seed = 11
arms = {arms}
withdrawal = "{withdrawal}"
consent = "Consent text."
debrief = "Debrief text."

[instructions]
verify = "Decide, then see the AI, then decide again."
rely = "See the AI and decide."
control = "Decide."

[data]
dataset = "tiny"
model = "tiny"

[cases]
n = {n}
practice = 1
ai_wrong_share = 0.34
advice = "planted"

[allocation]
kind = "{kind}"
strata = ["role"]
block_sizes = {blocks}

[explanation]
method = "gradcam"

[attention]
count = 1
answer = "normal"

[peer_rating]
kind = "peer_record"
per_rater = 2
fallback = "vignette"

[[peer_rating.items]]
id = "competence"
text = "How competent?"

[[peer_rating.items]]
id = "skill"
text = "Clinical skill?"

[[peer_rating.vignettes]]
id = "v-control"
target_arm = "control"
text = "Uses no AI."

[[peer_rating.vignettes]]
id = "v-rely"
target_arm = "rely"
text = "Follows the AI."

[[peer_rating.vignettes]]
id = "v-verify"
target_arm = "verify"
text = "Checks with the AI."

[[questionnaire]]
id = "trust"
title = "Trust"

[[questionnaire.items]]
id = "reliable"
text = "The AI was reliable."
"""


def write_study(folder: Path, study_id: str = "t", arms: str = '["verify", "rely", "control"]', n: int = 6,
                kind: str = "between", blocks: str = "[3, 6]", withdrawal: str = "delete") -> Path:
    path = folder / f"{study_id}.toml"
    text = STUDY_TOML.format(id=study_id, arms=arms, n=n, kind=kind, blocks=blocks, withdrawal=withdrawal)
    # instructions only for the arms the design has (others would be unknown keys)
    lines = [line for line in text.splitlines()
             if not any(line.startswith(f"{arm} = ") and f'"{arm}"' not in arms
                        for arm in ("verify", "rely", "control"))]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def serving(home: Path, study_id: str, edit: Callable[[str], str] | None = None, **study) -> Iterator[tuple[Path, int]]:
    """Study `study_id` written (`write_study(**study)`, then `edit` of its text), prepared and served
    by `xai-lab serve` from `home` on SQLite; yields (design file, port). XAI_LAB_HOME stays set meanwhile."""
    with pytest.MonkeyPatch.context() as patch:
        use_lab(home, patch)
        patch.delenv("XAI_LAB_DATABASE_URL", raising=False)
        design = write_study(home, study_id=study_id, **study)
        if edit is not None:
            design.write_text(edit(design.read_text()))
        assert run_cli("study", "prepare", str(design)).code == 0
        with served_app(design, home) as port:
            yield design, port


@pytest.fixture(scope="session")
def study_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small synthetic dataset, a quickly trained model and a prepared study `t`, built once per test
    session (once per xdist worker); `study_home` gives each module its own copy."""
    with module_lab(tmp_path_factory) as home:
        # A perfectly informative corner marker (--shortcut 1.0): a 4-epoch model learns it on any CPU.
        # Without it the 32-px lesions are at the edge of learnability in 4 epochs, and whether the
        # model learned depended on the CPU's floating-point path (chance AUROC on an AMD EPYC).
        # These tests are about the study engine, not the model; AI errors come from planting.
        assert run_cli("data", "synth", "--name", "tiny", "--n", "400", "--size", "32", "--seed", "3",
                       "--shortcut", "1.0").code == 0
        # one network: these tests are about the study engine, and an ensemble triples every explanation;
        # 64 a batch, the recipe these 4 epochs were chosen for (the default for small sets is 32)
        assert run_cli("train", "--data", "tiny", "--epochs", "4", "--members", "1", "--batch-size", "64",
                       "--quiet").code == 0
        design = write_study(home)
        result = run_cli("study", "prepare", str(design))
        assert result.code == 0, result.err
        yield home


@pytest.fixture(scope="module")
def study_home(study_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab home with the template's dataset, model and prepared study `t`: a module's own copy, so
    what its tests record (participants, new studies) stays in the module. Copying takes
    milliseconds; training the model again took seconds in every module."""
    with module_lab(tmp_path_factory) as home:
        shutil.copytree(study_template, home, dirs_exist_ok=True)
        yield home


def _postgres_admin_url() -> str:
    return os.environ.get("XAI_LAB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[tuple[str, str, str]]:
    """A new PostgreSQL database, dropped afterwards: yields (name, admin URL, URL of the new database).

    Skipped when no server answers, unless XAI_LAB_REQUIRE_POSTGRES=1 (CI sets it), which turns
    a missing server into a failure rather than a silent skip.
    """
    import secrets

    import psycopg

    admin = _postgres_admin_url()
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("XAI_LAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (XAI_LAB_REQUIRE_POSTGRES=1) but {admin} refused: {error}")
        pytest.skip(f"no PostgreSQL at {admin}")
    name = f"xai_lab_test_{secrets.token_hex(4)}"
    connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, admin, admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (see `fresh_postgres_database`)."""
    with fresh_postgres_database() as (_, _, url):
        yield url
