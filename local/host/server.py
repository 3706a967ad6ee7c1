"""A WSGI app served on 127.0.0.1 from one thread that ``stop()`` really ends.

Shared by the HTTP triggers and the FC invoke API so both get the same two details right:
TCP_NODELAY (HTTP/1.1 keep-alive without it stalls every small response about 40 ms: Nagle's
algorithm holds the body until the client's delayed ACK of the headers, RFC 896 and RFC 1122
§4.2.3.2) and a serving thread that is joined when the host stops.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("assistflow.host.http")


class _LoopbackRequestHandler(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the query string: RPC requests carry SecurityToken and Signature there.
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


class LoopbackServer:
    """Serves ``app`` on ``127.0.0.1:port`` (0 = a free port) until ``stop()``."""

    def __init__(self, app: WSGIApplication, port: int, name: str) -> None:
        self.name = name
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True,
                                                   request_handler=_LoopbackRequestHandler)
        # Request threads are daemons: a request blocked in a slow invocation must not keep
        # the process alive; the invocation itself fails once the host closes its runtimes.
        self._server.daemon_threads = True  # type: ignore[attr-defined]
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
