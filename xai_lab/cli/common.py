"""What every command module shares: the usage exit, argument parsers for names and lists."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


# ------------------------------------------------------------ --design FILE and --study ID

def add_study_choice(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """`--design FILE` (a design file) or `--study ID` (a study already registered in the database)."""
    action = {"action": "append", "default": []} if many else {}
    parser.add_argument("--design", metavar="FILE", help="a prepared design file, e.g. studies/demo.toml"
                        + (" (repeat for several)" if many else ""), **action)
    parser.add_argument("--study", metavar="ID", help="the id of a study already registered in the database"
                        + (" (repeat for several)" if many else ""), **action)


def split_study_choice(designs: list[str], studies: list[str]) -> tuple[list[Path], list[str]]:
    """(design files, study ids). `--study FILE` was the spelling before `--design`: it still works for
    one release, with a one-line note (a value naming an existing file or ending in .toml is a file)."""
    files = [Path(value) for value in designs]
    ids = []
    for value in studies:
        if value.endswith(".toml") or Path(value).is_file():
            print(f"xai-lab: note: --study FILE is deprecated and will mean a study id only; use --design {value}",
                  file=sys.stderr)
            files.append(Path(value))
        else:
            ids.append(check_name(value, "study id"))
    return files, ids


def open_study_service(args: argparse.Namespace):
    """The `StudyService` of `--design FILE` (registered now if it is not yet) or `--study ID`."""
    from xai_lab.store.database import open_database
    from xai_lab.study.cases import load_case_set
    from xai_lab.study.catalogue import open_catalogue
    from xai_lab.study.design_file import load_design
    from xai_lab.study.service import StudyService

    files, ids = split_study_choice([args.design] if args.design else [], [args.study] if args.study else [])
    if len(files) + len(ids) != 1:
        raise ConfigError("name the study with --design FILE (a prepared design) or --study ID (a registered study)")
    if files:
        design = load_design(files[0])
        return StudyService.open(design, load_case_set(design), url=args.database)
    return open_catalogue(open_database(args.database), (ids[0],))[ids[0]].service
