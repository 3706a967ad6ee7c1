"""The local dashboard: a read-only WSGI app on 127.0.0.1 (``local.server.LoopbackServer``).

``GET /`` the overview (``local.dashboard.data``, ``local.dashboard.page``); ``GET /o/{key}``
an object of the results bucket under the results prefix, fetched from the local OSS with the
owner's keys and served with its stored ``Content-Type`` — so a report opens in the browser,
and its relative links (``{InstanceId}/output.txt``, ``result.json``) resolve to objects served
the same way. Nothing else: other methods 405, other paths 404.

Loopback only, and only by its own name: a request whose ``Host`` is not
``127.0.0.1:{port}`` or ``localhost:{port}`` is refused (403), so a web page cannot read the
results through DNS rebinding. Every answer carries ``X-Content-Type-Options: nosniff`` (an
``output.txt`` is never sniffed into HTML); objects also get a ``Content-Security-Policy``
header with ``sandbox`` (no script, a unique origin, whatever the object holds) besides the
report's own policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote

from local.dashboard import data, page
from local.server import LoopbackServer
from shared import report
from shared.errors import AssistflowError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from shared.clients import Clients

log = logging.getLogger("assistflow.dashboard")

# the report's own policy (its stylesheet's hash), plus sandbox, which only a header can set
OBJECT_POLICY = "sandbox; " + report.CSP


class DashboardApp:
    def __init__(self, clients: Clients, port: int = 0) -> None:
        self.clients = clients
        self.port = port

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        host = environ.get("HTTP_HOST", "")
        if host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return _answer(start_response, 403, b"unknown Host: the dashboard answers to "
                           b"127.0.0.1 and localhost only\n")
        if method not in ("GET", "HEAD"):
            return _answer(start_response, 405, b"read-only: GET and HEAD only\n",
                           extra=[("Allow", "GET, HEAD")])
        try:
            if path == "/":
                now = time.time()
                body = page.render(data.overview(self.clients), now)
                return _answer(start_response, 200, body, "text/html; charset=utf-8",
                               [("Content-Security-Policy", page.CSP),
                                ("Cache-Control", "no-store")], head=method == "HEAD")
            if path.startswith(page.OBJECTS):
                return self._object(unquote(path[len(page.OBJECTS):]), start_response,
                                    method == "HEAD")
        except AssistflowError as exc:  # the local cloud refused or is gone
            log.warning("dashboard: %s", exc)
            return _answer(start_response, 502, f"the local cloud answered: {exc}\n".encode())
        return _answer(start_response, 404, b"not found\n")

    def _object(self, key: str, start_response: StartResponse, head: bool) -> Iterable[bytes]:
        prefix = self.clients.settings.results_prefix.strip("/") + "/"
        if not key.startswith(prefix) or ".." in key.split("/"):
            return _answer(start_response, 404, b"only objects under the results prefix\n")
        found = self.clients.results.fetch(key)
        if found is None:
            return _answer(start_response, 404, b"no such object\n")
        body, content_type = found
        return _answer(start_response, 200, body, content_type or "application/octet-stream",
                       [("Content-Security-Policy", OBJECT_POLICY)], head=head)


def _answer(start_response: StartResponse, status: int, body: bytes,
            content_type: str = "text/plain; charset=utf-8",
            extra: list[tuple[str, str]] | None = None, head: bool = False) -> list[bytes]:
    reasons = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               502: "Bad Gateway"}
    start_response(f"{status} {reasons[status]}", [
        ("Content-Type", content_type), ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
        *(extra or [])])
    return [] if head else [body]


def serve(clients: Clients, port: int = 0) -> LoopbackServer:
    """The dashboard on 127.0.0.1:``port`` (0: a free one), started."""
    app = DashboardApp(clients)
    server = LoopbackServer(app, port, "dashboard")
    app.port = server.port
    server.start()
    return server
