"""A WSGI app served on 127.0.0.1 from one thread that ``stop()`` really ends.

Every server of the local cloud is one of these: each emulator (``EmulatorServer``), each HTTP
trigger and the FC invoke API. They share two details that are easy to get wrong:

* TCP_NODELAY: HTTP/1.1 keep-alive without it stalls every small response about 40 ms —
  Nagle's algorithm holds the body until the client's delayed ACK of the headers (RFC 896,
  RFC 1122 §4.2.3.2);
* the raw request headers: the WSGI environ cannot carry a header whose name contains ``_``
  (werkzeug drops them), but ``x-oss-meta-my_key`` is legal and signed, so the request handler
  keeps the headers exactly as sent (``raw_headers``).

Request threads are daemons: a request blocked in a slow invocation must not keep the process
alive. The serving thread is joined by ``stop()``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

log = logging.getLogger("assistflow.server")

RAW_HEADERS = "assistflow.raw_headers"


def raw_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """Request headers by lower-case name, exactly as sent (repeated ones joined by ``,``)."""
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


class _LoopbackRequestHandler(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        environ[RAW_HEADERS] = list(self.headers.items())
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the query string: RPC requests carry SecurityToken and Signature there.
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


class LoopbackServer:
    """Serves ``app`` on ``127.0.0.1:port`` (0 = a free port) until ``stop()``."""

    def __init__(self, app: WSGIApplication, port: int, name: str) -> None:
        self.name = name
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True,
                                                   request_handler=_LoopbackRequestHandler)
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = "127.0.0.1"
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=self.name)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
