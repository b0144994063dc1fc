"""Bounded memory for browser uploads in the served app (ASGI middleware `UploadBudget`).

Streamlit keeps every uploaded file in memory (`MemoryUploadedFileManager`), accepts any number
of files for any live session at ``PUT /_stcore/upload_file/<session>/<file>``, whatever widget
the page shows, and drops a closed session's files only when the session is shut down; a
session kept for reconnection that then expires is never shut down, so its files stayed for
the life of the process (4 sessions x 40 files x 7 MB: +955 MB, still held a minute later).

The only page with an uploader is the trainer's, one file at a time, so:
- a session may hold `UPLOADS_PER_SESSION` files (the shown one and its replacement in flight),
  and all sessions together `UPLOAD_BYTES_IN_MEMORY`: a PUT that would pass either is refused
  from its ``Content-Length`` (413, or 503 when the server as a whole is full), before its
  body is read;
- files of sessions that are no longer connected are released every `SWEEP_S` seconds (and
  before each upload), so memory comes back soon after the sessions close.

This reads Streamlit's runtime (`Runtime.instance().uploaded_file_mgr.file_storage`, the
in-memory manager's table); tests/test_served_hardening.py fails if that changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.responses import PlainTextResponse

from xai_lab.data.upload_limits import MAX_UPLOAD_BYTES

LOG = logging.getLogger("xai_lab.web")
UPLOADS_PER_SESSION = 2
UPLOAD_BYTES_IN_MEMORY = 64 * 1024 * 1024  # eight trainers' largest images at once
SWEEP_S = 10.0
_UPLOAD_PATH = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)$")


def _uploads():
    """Streamlit's uploaded-file manager, or None before the runtime exists."""
    from streamlit.runtime import Runtime

    return Runtime.instance().uploaded_file_mgr if Runtime.exists() else None


def release_closed_sessions() -> int:
    """Drop the files of sessions that are not connected; the number of sessions released."""
    from streamlit.runtime import Runtime

    manager = _uploads()
    if manager is None:
        return 0
    runtime = Runtime.instance()
    closed = [session for session in list(manager.file_storage) if not runtime.is_active_session(session)]
    for session in closed:
        manager.remove_session_files(session)
    return len(closed)


def refusal(session: str, file_id: str, content_length: int) -> PlainTextResponse | None:
    """Why this upload may not be stored now, as the response to send; None when it may."""
    manager = _uploads()
    if manager is None:
        return None
    release_closed_sessions()
    with manager._lock:
        own = dict(manager.file_storage.get(session, {}))
        total = sum(len(f.data) for files in manager.file_storage.values() for f in files.values())
    replacing = len(own.get(file_id).data) if file_id in own else 0
    if len(own) - (file_id in own) >= UPLOADS_PER_SESSION:
        return PlainTextResponse(f"this page holds at most {UPLOADS_PER_SESSION} uploaded files; remove one first",
                                 status_code=413)
    if total - replacing + content_length > UPLOAD_BYTES_IN_MEMORY:
        LOG.warning("upload refused: %d MB of uploads already held in memory", total // 2**20)
        return PlainTextResponse("the server holds as many uploads as it can; try again in a minute",
                                 status_code=503)
    return None


class UploadBudget:
    """ASGI middleware: the limits above, applied to Streamlit's upload route before it reads a body."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT":
            match = _UPLOAD_PATH.search(scope["path"])
            if match is not None:
                length = _content_length(scope)
                if length is None or length > MAX_UPLOAD_BYTES + 64 * 1024:  # the file and its form headers
                    await PlainTextResponse("send the upload with a Content-Length of at most "
                                            f"{MAX_UPLOAD_BYTES // 2**20} MB", status_code=413)(scope, receive, send)
                    return
                refused = await asyncio.to_thread(refusal, match[1], match[2], length)
                if refused is not None:
                    await refused(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _content_length(scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


@asynccontextmanager
async def sweeping() -> AsyncIterator[None]:
    """While the app runs: release closed sessions' uploads every `SWEEP_S` seconds."""

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await asyncio.to_thread(release_closed_sessions)
            except Exception:  # noqa: BLE001 - a failed sweep must not stop the next one
                LOG.exception("releasing closed sessions' uploads failed")

    task = asyncio.create_task(sweep())
    try:
        yield
    finally:
        task.cancel()
