"""Test-only: the Psych-DS validator's rules, checked in Python.

No Psych-DS validator is published on PyPI or npm (the validator lives in the psych-ds/psychds-validator
repository, run with Deno), so this applies the rules of its default schema (src/setup/defaultSchema.json,
version 1.4.0) that decide whether a dataset is valid - every rule of level "error":

- MISSING_DATASET_DESCRIPTION: `dataset_description.json` in the base directory;
- JSON-LD with the schema.org namespace (`@context` http://schema.org/), `@type` "Dataset"
  (MISSING_DATASET_TYPE, INCORRECT_DATASET_TYPE), and the required keys name, description and
  variableMeasured (JSON_KEY_REQUIRED);
- MISSING_DATA_DIRECTORY: a `data/` directory; MISSING_DATAFILE: at least one CSV datafile in it, named
  by the keyword regex (FILENAME_KEYWORD_FORMATTING_ERROR);
- CSV_HEADER_MISSING, CSV_HEADER_LENGTH_MISMATCH: a header, and rows as long as it; UTF-8;
- CSV_COLUMN_MISSING_FROM_METADATA: every column of every datafile named in variableMeasured;
- ROWID_VALUES_NOT_UNIQUE: a `row_id` column, if any, unique.

Warnings (a README, .psychdsignore, unofficial keywords) are returned apart.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

DATAFILE = re.compile(r"([a-z]+-[a-zA-Z0-9]+)(_[a-z]+-[a-zA-Z0-9]+)*_data\.csv")
OFFICIAL_KEYWORDS = {"study", "site", "subject", "session", "task", "condition", "trial", "stimulus", "description"}
REQUIRED_KEYS = ("name", "description", "variableMeasured")


def psychds_problems(root: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the dataset at `root`; no errors means the validator accepts it."""
    errors: list[str] = []
    warnings: list[str] = []
    description = root / "dataset_description.json"
    if not description.is_file():
        return ["MISSING_DATASET_DESCRIPTION"], warnings
    try:
        meta = json.loads(description.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return ["JSON_INVALID"], warnings
    if str(meta.get("@context", "")).rstrip("/") not in ("http://schema.org", "https://schema.org"):
        errors.append("INVALID_JSONLD_FORMATTING: @context is not schema.org")
    if "@type" not in meta and "type" not in meta:
        errors.append("MISSING_DATASET_TYPE")
    elif meta.get("@type", meta.get("type")) != "Dataset":
        errors.append("INCORRECT_DATASET_TYPE")
    errors += [f"JSON_KEY_REQUIRED: {key}" for key in REQUIRED_KEYS if key not in meta]
    names = {item["name"] if isinstance(item, dict) else item for item in meta.get("variableMeasured", [])}
    data = root / "data"
    if not data.is_dir():
        return errors + ["MISSING_DATA_DIRECTORY"], warnings
    datafiles = [p for p in data.rglob("*.csv") if p.name.endswith("_data.csv")]
    for path in datafiles:
        if not DATAFILE.fullmatch(path.name):
            errors.append(f"FILENAME_KEYWORD_FORMATTING_ERROR: {path.name}")
            continue
        keywords = {part.split("-")[0] for part in path.name.removesuffix("_data.csv").split("_")}
        warnings += [f"FILENAME_UNOFFICIAL_KEYWORD_WARNING: {k}" for k in keywords - OFFICIAL_KEYWORDS]
        errors += _csv_problems(path, names)
    if not any(DATAFILE.fullmatch(p.name) for p in datafiles):
        errors.append("MISSING_DATAFILE")
    if not any((root / f"README{ext}").is_file() for ext in (".md", ".txt")):
        warnings.append("MISSING_README_DOC")
    if not (root / ".psychdsignore").is_file():
        warnings.append("MISSING_PSYCHDSIGNORE")
    return errors, warnings


def _csv_problems(path: Path, names: set[str]) -> list[str]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError:
        return [f"CSV_FORMATTING_ERROR: {path.name} is not UTF-8"]
    if not rows or not any(rows[0]):
        return [f"CSV_HEADER_MISSING: {path.name}"]
    header, problems = rows[0], []
    if any(len(row) != len(header) for row in rows[1:]):
        problems.append(f"CSV_HEADER_LENGTH_MISMATCH: {path.name}")
    missing = [column for column in header if column not in names]
    if missing:
        problems.append(f"CSV_COLUMN_MISSING_FROM_METADATA: {path.name}: {', '.join(missing)}")
    if "row_id" in header:
        index = header.index("row_id")
        values = [row[index] for row in rows[1:]]
        if len(values) != len(set(values)):
            problems.append(f"ROWID_VALUES_NOT_UNIQUE: {path.name}")
    return problems
