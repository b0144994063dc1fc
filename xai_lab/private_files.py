"""Files that hold tokens, secrets or participants' data: created readable by their owner only,
and CSV files of such data written so that no spreadsheet runs a cell as a formula.

A file created the usual way gets the umask's mode (typically 0644: readable by every account
on the machine). Invitation links, simulation tokens, exports and the SQLite database are made
0600 from the moment they exist, never chmod-ed afterwards (which would leave a window).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

PRIVATE_MODE = 0o600


def open_private(path: Path, mode: str = "x", newline: str | None = None) -> IO[str]:
    """Open a text file for writing, created 0600: ``"x"`` (must be new) or ``"a"`` (append).

    An existing file keeps its mode: the owner may have chosen it.
    """
    flags = {"x": os.O_CREAT | os.O_EXCL | os.O_WRONLY, "a": os.O_CREAT | os.O_APPEND | os.O_WRONLY}[mode]
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.fdopen(os.open(path, flags, PRIVATE_MODE), mode, newline=newline, encoding="utf-8")


def private_staging(path: Path) -> Path:
    """An empty 0600 file beside `path` to write into and then `replace` onto it (atomic, private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.unlink(missing_ok=True)
    os.close(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE))
    return staging


def write_private_text(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, the new file 0600."""
    staging = private_staging(path)
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)


# A cell whose first non-blank character is one of these is run as a formula by Excel, LibreOffice
# or Google Sheets ("CSV injection"): leading spaces, tabs and line breaks are skipped by them, and a
# cell starting with a tab or carriage return is suspect whatever follows (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@")
BLANKS = " \t\r\n"


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with an apostrophe (design option
    strings, ids and free text reach exports and reports verbatim). Numbers are never touched;
    Parquet keeps types and needs no such guard."""
    import pandas as pd

    result = frame.copy()
    for column in result.columns:
        if result[column].dtype == object or pd.api.types.is_string_dtype(result[column]):
            result[column] = result[column].map(_neutralise_cell)
    return result


def _neutralise_cell(value):
    if isinstance(value, str) and (value[:1] in ("\t", "\r") or value.lstrip(BLANKS)[:1] in FORMULA_STARTS):
        return "'" + value
    return value


def write_private_csv(path: Path, frame: pd.DataFrame) -> None:
    """Replace `path` atomically with `frame` as CSV, formulas neutralised, the new file 0600."""
    staging = private_staging(path)
    neutralise_formulas(frame).to_csv(staging, index=False)
    staging.replace(path)
