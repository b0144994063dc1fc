"""Shared fixtures: an isolated lab home per test, the shared real data, a CLI runner."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xai_lab.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


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
