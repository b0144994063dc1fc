"""Response times measured on the server: a monotonic reading and the boot it belongs to.

monotonic_ns readings compare only on the same boot of the same machine, so each "shown"
event records which clock took it; a step answered on another app server (several servers on
one database) falls back to wall time.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xai_lab.store.repository import now_iso


def _clock_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


CLOCK_ID = _clock_id()


def shown_reading() -> dict[str, Any]:
    """The payload of a "shown" event: the monotonic reading, its clock, the wall time."""
    return {"ns": time.monotonic_ns(), "clock": CLOCK_ID, "at": now_iso()}


def elapsed_ms(row: Any) -> int:
    """Milliseconds since the participant's current step was shown."""
    if row["shown_clock"] == CLOCK_ID and row["shown_ns"] is not None:
        return max(0, (time.monotonic_ns() - int(row["shown_ns"])) // 1_000_000)
    elapsed = datetime.now(UTC) - datetime.fromisoformat(row["shown_at"])
    return max(0, int(elapsed.total_seconds() * 1000))
