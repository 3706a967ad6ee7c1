"""A WSGI app served on 127.0.0.1 from one thread that ``stop()`` really ends.

Every server of the local cloud is one of these: each emulator (``EmulatorServer``), each HTTP
trigger, the FC invoke API and the dashboard. How a request is read and its answer written —
keep-alive, the direct parse, TCP_NODELAY, the raw headers — is ``local.http11``'s.

Request threads are daemons: a request blocked in a slow invocation must not keep the process
alive. The serving thread is joined by ``stop()``, which also ends the kept-alive connections.

Each server adds up the CPU time its request threads spend on requests (``cpu``): the
benchmarks read it to tell which part of the local cloud's process costs what.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, make_server

from local.http11 import LoopbackRequestHandler

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class CpuMeter:
    """CPU seconds and requests, added up from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.requests = 0

    def add(self, seconds: float, requests: int = 1) -> None:
        with self._lock:
            self.seconds += seconds
            self.requests += requests


def listening_socket(port: int) -> socket.socket:
    """A socket listening on ``127.0.0.1:port`` (0 = a free port) as ``LoopbackServer``'s own
    would (werkzeug's ``BaseWSGIServer``: address reuse, a backlog of 128): for a server that
    another process will run (``fd``). Connections made before it serves wait in the backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class LoopbackServer:
    """Serves ``app`` on ``127.0.0.1:port`` (0 = a free port) until ``stop()``; or, with
    ``fd``, on that listening socket (``listening_socket``, made by a parent process)."""

    def __init__(self, app: WSGIApplication, port: int, name: str,
                 fd: int | None = None) -> None:
        self.name = name
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True,
                                                   request_handler=LoopbackRequestHandler,
                                                   fd=fd)
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        if fd is not None:
            # A socket other processes may serve too (``local.emulators.serve --processes``):
            # each wakes for every new connection and only one gets it, so the others' accept
            # must not block (socketserver skips a failed accept) - or a process would wait in
            # accept() for a connection that is not coming, deaf to stop().
            self._server.socket.setblocking(False)
        self.cpu = CpuMeter()
        self._server.cpu_meter = self.cpu  # type: ignore[attr-defined]
        self._live: set[socket.socket] = set()
        self._server.live_connections = self._live  # type: ignore[attr-defined]
        self.host = "127.0.0.1"
        self.port = int(self._server.server_address[1])  # (server_port: not with fd)
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
        # Kept-alive connections end too: a client must not reach a stopped app through one
        # (a restarted cloud serves the same port with a new app).
        for conn in list(self._live):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
