"""Serving an emulator on loopback: a threaded WSGI server and the raw request headers.

One ``EmulatorServer`` per emulator, on ``127.0.0.1`` and a free port unless one is given; the
same app runs in a pytest fixture and under ``assistflow up``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from local.emulators.base import EmulatorApp

log = logging.getLogger(__name__)

RAW_HEADERS = "emulator.raw_headers"


def raw_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """Request headers by lower-case name, exactly as sent.

    The WSGI environ cannot carry a header whose name contains ``_`` (werkzeug drops them),
    but ``x-oss-meta-my_key`` is legal and signed, so the handler keeps the raw list.
    """
    pairs = environ.get(RAW_HEADERS)
    if pairs is None:
        pairs = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
        pairs += [(k.replace("_", "-"), environ[k]) for k in ("CONTENT_TYPE", "CONTENT_LENGTH")
                  if k in environ]
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


class _Handler(WSGIRequestHandler):
    # HTTP/1.1 keep-alive without TCP_NODELAY stalls each small response about 40 ms: Nagle's
    # algorithm holds the body until the client's delayed ACK of the headers (RFC 896,
    # RFC 1122 §4.2.3.2).
    disable_nagle_algorithm = True

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        environ[RAW_HEADERS] = list(self.headers.items())
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the query string: RPC requests carry SecurityToken and Signature there.
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


class EmulatorServer:
    """Serves an app on 127.0.0.1 in a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, app: EmulatorApp, port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_Handler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        app.base_url = self.url
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{self.app.service}-server", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self.app.close()
