"""What every command module shares: the usage exit, argument parsers for names and lists."""

from __future__ import annotations

import argparse
import sys

from xai_lab.errors import ConfigError
from xai_lab.paths import check_name

EXIT_USAGE = 2


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def dataset_name(name: str) -> str:
    return check_name(name, "dataset name")


def check_size(size: int | None) -> None:
    if size is not None and not 16 <= size <= 1024:
        raise ConfigError(f"--size must be between 16 and 1024 pixels, got {size}")
