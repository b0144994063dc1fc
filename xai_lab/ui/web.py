"""The served app's web layer: what `xai-lab serve` adds around Streamlit (an ASGI `st.App`).

- What browsers send over the websocket (``clear_cache`` messages, widget states) is filtered in
  `xai_lab.ui.message_filter`; bounded uploads are `xai_lab.ui.upload_budget`.
- `HealthIncludesDatabase`: ``/_stcore/health`` answers 200 only when the study database takes
  a write (`xai_lab.store.database.write_problem`), else 503 with the reason, so a load balancer
  or supervisor stops sending participants to a replica that would lose their answers.
- ``POST /xai-lab/remember``: stores a participant's token in an HttpOnly cookie for their
  study (after checking it belongs to that study and that the request comes from this site), so
  the same browser reopening the study's shared code link resumes instead of enrolling again.
  HttpOnly keeps the token away from page scripts; SameSite=Lax sends it when a link is opened.
- `BrowserId`: a random id cookie per browser, so one browser opening the code link in two tabs at
  once enrols one participant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from xai_lab.store.database import write_problem
from xai_lab.study.access import BROWSER_COOKIE, REMEMBER_PATH, participant_cookie
from xai_lab.ui import registry
from xai_lab.ui.upload_budget import sweeping

LOG = logging.getLogger("xai_lab.web")
ENTRY = Path(__file__).resolve().parent / "entry.py"  # the Streamlit script (the pages)
COOKIE_MAX_AGE_S = 60 * 60 * 24 * 60  # two months: a study's recruitment window, not longer
HEALTH_TIMEOUT_S = 5.0
MAX_REMEMBER_BYTES = 2048


class HealthIncludesDatabase:
    """ASGI middleware: ``/_stcore/health`` is 503 while the study database cannot be written."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/_stcore/health") and scope["method"] in ("GET", "HEAD"):
            problem = await _database_problem()
            if problem is not None:
                await PlainTextResponse(f"study database not writable: {problem}", status_code=503)(scope, receive,
                                                                                                       send)
                return
        await self.app(scope, receive, send)


async def _database_problem() -> str | None:
    try:
        return await asyncio.wait_for(asyncio.to_thread(lambda: write_problem(registry.database())),
                                      HEALTH_TIMEOUT_S)
    except TimeoutError:
        return f"no write lock within {HEALTH_TIMEOUT_S:.0f} s"
    except Exception as error:  # noqa: BLE001 - any failure to open the database is unhealthy
        return str(error).splitlines()[0] if str(error) else type(error).__name__


async def remember_participant(request: Request) -> Response:
    """Store ``{"study", "token"}`` in the study's participant cookie, if the token is that study's."""
    if not same_site(request):
        return PlainTextResponse("refused: not from this site", status_code=403)
    body = await request.body()
    try:
        values = json.loads(body[:MAX_REMEMBER_BYTES + 1]) if len(body) <= MAX_REMEMBER_BYTES else None
        study_id, token = str(values["study"]), str(values["token"])
    except (ValueError, TypeError, KeyError):
        return PlainTextResponse("send JSON {\"study\": ID, \"token\": TOKEN}", status_code=400)
    if not await asyncio.to_thread(_token_belongs, study_id, token):
        return PlainTextResponse("unknown study or token", status_code=404)
    response = Response(status_code=204)
    response.set_cookie(participant_cookie(study_id), token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    return response


def _token_belongs(study_id: str, token: str) -> bool:
    served = registry.catalogue().get(study_id)
    return served is not None and served.service.knows(token)


def same_site(request: Request) -> bool:
    """The request was sent by a page of this site: its Origin names the host and port it was sent to
    (a page served on another port of the same host is another site here; behind a proxy, pass the
    port on with ``proxy_set_header Host $http_host``, see docs/deploy.md)."""
    origin, host = request.headers.get("origin"), request.headers.get("host")
    if not origin or not host:
        return False
    sent_from, sent_to = urlsplit(origin), urlsplit(f"//{host}")
    try:
        return (sent_from.hostname, _port(sent_from.port, sent_from.scheme)) == \
            (sent_to.hostname, _port(sent_to.port, sent_from.scheme))
    except ValueError:  # a port that is not a number
        return False


def _port(port: int | None, scheme: str) -> int | None:
    return port if port is not None else {"http": 80, "https": 443}.get(scheme)


class BrowserId:
    """ASGI middleware: a random id cookie for every browser that has none (`BROWSER_COOKIE`), set
    on the first response it gets. Two tabs opened at once each receive one, the second replacing
    the first before either page opens its websocket, so both sessions see the same id and the
    shared code link enrols one participant (`xai_lab.study.access.OneEnrolmentPerBrowser`)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or BROWSER_COOKIE in HTTPConnection(scope).cookies:
            await self.app(scope, receive, send)
            return
        cookie = (f"{BROWSER_COOKIE}={secrets.token_urlsafe(16)}; Max-Age={COOKIE_MAX_AGE_S}; Path=/; HttpOnly; "
                  f"SameSite=Lax{'; Secure' if scope.get('scheme') == 'https' else ''}")

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


@asynccontextmanager
async def lifespan(_app) -> AsyncIterator[None]:
    async with sweeping():  # closed sessions' uploads released while the app runs
        yield
    registry.close_all()  # return every pooled database connection on shutdown


def routes() -> list[Route]:
    return [Route(REMEMBER_PATH, remember_participant, methods=["POST"])]
