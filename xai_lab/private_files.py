"""Files that hold tokens, secrets or participants' data: created readable by their owner only.

A file created the usual way gets the umask's mode (typically 0644: readable by every account
on the machine). Invitation links, simulation tokens, exports and the SQLite database are made
0600 from the moment they exist, never chmod-ed afterwards (which would leave a window).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

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
