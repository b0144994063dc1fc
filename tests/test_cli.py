"""The command-line contract: every command has help, the console script is installed."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

from xai_lab.cli import build_parser

COMMANDS = [["data"], ["data", "synth"], ["data", "import"], ["data", "fetch"], ["data", "list"], ["data", "show"],
            ["train"], ["evaluate"], ["demo"], ["explain"], ["explain", "methods"], ["explain", "evaluate"],
            ["explain", "precompute"], ["study"], ["study", "validate"], ["study", "settings"], ["study", "prepare"],
            ["simulate"], ["export"], ["serve"], ["invite"], ["analyze"], ["power"], ["mrmc"], ["model"],
            ["model", "import"], ["advice"], ["advice", "import"], ["erase"], ["preregister"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command):
    result = run_cli(*command, "--help")
    assert result.code == 0
    assert "usage: xai-lab" in result.out


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every command and subcommand, at every depth, found from the parser itself."""
    paths = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths |= {prefix + (name,)} | _command_paths(sub, prefix + (name,))
    return paths


def test_every_command_and_subcommand_is_listed_here():
    assert _command_paths(build_parser()) == {tuple(c) for c in COMMANDS}


def test_the_old_study_file_spelling_still_works_with_a_note(study_home, tmp_path):
    links = tmp_path / "links.csv"
    result = run_cli("invite", "--study", str(study_home / "t.toml"), "--n", "1", "--out", str(links))
    assert result.code == 0, result.err
    assert "--study FILE is deprecated" in result.err and f"--design {study_home / 't.toml'}" in result.err


def test_a_registered_study_is_named_by_its_id(study_home, tmp_path):
    registered = run_cli("invite", "--design", str(study_home / "t.toml"), "--n", "1", "--out", str(tmp_path / "a.csv"))
    assert registered.code == 0
    by_id = run_cli("invite", "--study", "t", "--n", "2", "--out", str(tmp_path / "b.csv"))
    assert by_id.code == 0 and "deprecated" not in by_id.err
    assert len((tmp_path / "b.csv").read_text().splitlines()) == 3
    unknown = run_cli("invite", "--study", "nope", "--n", "1", "--out", str(tmp_path / "c.csv"))
    assert unknown.code == 2 and "study 'nope' is not registered" in unknown.err
    both = run_cli("simulate", "--design", str(study_home / "t.toml"), "--study", "t", "--participants", "1")
    assert both.code == 2 and "name the study with --design FILE" in both.err


@pytest.mark.parametrize("setting, value, message", [
    ("participants", 0, "participants must be a whole number of at least 1"),
    ("concurrency", 65, "concurrency must be from 1 to 64"),
    ("skill", 1.5, "skill must be a probability from 0 to 1"),
])
def test_simulation_settings_are_checked_by_the_library(setting, value, message):
    from xai_lab.errors import ConfigError
    from xai_lab.study.simulate import SimulationConfig

    with pytest.raises(ConfigError, match=message):
        SimulationConfig(**{"participants": 1, setting: value})


def test_console_script_is_installed():
    executable = shutil.which("xai-lab")
    if executable is None:
        pytest.skip("the xai-lab console script is not on PATH (run 'pip install -e .' first)")
    result = subprocess.run([executable, "data", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "synth" in result.stdout


def test_unknown_option_is_a_usage_error():
    result = run_cli("train", "--data", "x", "--frobnicate")
    assert result.code == 2 and "unrecognized arguments" in result.err


def test_data_list_on_an_empty_lab(lab_home):
    result = run_cli("data", "list")
    assert result.code == 0 and "xai-lab demo" in result.out


def test_the_docs_list_every_design_setting_as_declared():
    """docs/studies.md carries `xai-lab study settings` verbatim: the table comes from the declarations."""
    result = run_cli("study", "settings")
    assert result.code == 0
    docs = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text()
    between = docs.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert between == result.out, "docs/studies.md is stale: paste the output of 'xai-lab study settings' there"
