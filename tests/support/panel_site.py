"""Test-only: a stand-in for a recruitment panel's web site on a loopback port.

    with panel_site() as site:
        site.url("/invite")          # an invitation page linking to site.study_link
        site.visits                  # the paths (with query) the browser asked for, in order

Serves an invitation page with a link to the study (set `study_link` first), and answers every
other path with a page naming it (the completion and screen-out pages a panel would show).
`PROLIFIC_RECRUITMENT` is a design's [recruitment] section for Prolific's real addresses (tests and
benchmarks that never visit them).
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROLIFIC_RECRUITMENT = """
[recruitment]
panel = "prolific"
completion_url = "https://app.prolific.com/submissions/complete?cc={code}"
completion_code = "C1ABC2DE"
screenout_url = "https://app.prolific.com/submissions/complete?cc=NOCONSENT"
"""


class PanelSite:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server, self.visits, self.study_link = server, [], ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@contextlib.contextmanager
def panel_site() -> Iterator[PanelSite]:
    site: PanelSite

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            site.visits.append(self.path)
            if self.path.startswith("/invite"):
                body = (f"<h1>Invitation</h1><p>You are invited.</p>"
                        f"<a id='go' href='{html.escape(site.study_link, quote=True)}'>Take part</a>")
            else:
                body = f"<h1>Panel page</h1><p id='path'>{html.escape(self.path)}</p>"
            data = f"<!doctype html><html><body>{body}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site = PanelSite(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
