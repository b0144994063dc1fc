"""The ``xai-lab`` command line: a thin layer over the library.

Each command validates its arguments, calls one library function, and prints the result.
Domain errors (`XaiLabError`) become one line on stderr and exit status 2, like argparse's
own usage errors; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from xai_lab.cli.advice import add_advice_commands
from xai_lab.cli.analysis import add_analysis_commands
from xai_lab.cli.common import EXIT_USAGE
from xai_lab.cli.data import add_data_commands
from xai_lab.cli.explain import add_explain_commands
from xai_lab.cli.governance import add_governance_commands
from xai_lab.cli.model import add_evaluate_command, add_train_command
from xai_lab.cli.model_import import add_model_commands
from xai_lab.cli.serve import add_demo_command, add_serve_commands
from xai_lab.cli.study import add_study_commands
from xai_lab.errors import XaiLabError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args) or 0
    except XaiLabError as error:
        print(f"xai-lab: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xai-lab: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xai-lab", description="Explainable-AI clinician trust lab: data, calibrated models, studies.",
        epilog="Generated files live under $XAI_LAB_HOME (default: the current directory) in data/ and models/.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_data_commands(commands)
    add_train_command(commands)
    add_evaluate_command(commands)
    add_model_commands(commands)
    add_advice_commands(commands)
    add_explain_commands(commands)
    add_study_commands(commands)
    add_serve_commands(commands)
    add_analysis_commands(commands)
    add_governance_commands(commands)
    add_demo_command(commands)
    return parser
