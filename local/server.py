"""A WSGI app served on 127.0.0.1 until ``stop()`` really ends it.

Every server of the local cloud is one of these: each emulator (``EmulatorServer``), each HTTP
trigger, the FC invoke API and the dashboard. How a request is read and its answer written —
keep-alive, the direct parse, TCP_NODELAY, the raw headers — is ``local.http11``'s.

Two ways to serve:

* a thread per connection (the default): any app, however long its requests wait — a function
  invocation, a long poll. Request threads are daemons: a request blocked in a slow invocation
  must not keep the process alive;
* one thread for all (``one_thread=True``), for an app whose requests only compute and wait
  for a latency of their own (the OSS emulator: ``Staged``). One thread waits on every
  connection at once (``selectors``), reads and answers one request after the other, and keeps
  each request's latency as a timer instead of a sleeping thread; a request that may wait on
  something else (``Staged.waits``: a control call that asks the other processes, a fault's
  stall) is answered on a thread of its own. Measured on the 2-core machine of the bench, 64
  clients storing result-sized objects: 13 context switches per request and 1.1–1.2 ms of
  the emulator's CPU per object with a thread per connection, under 0.2 and 0.7–0.8 ms with
  one thread — with a thread per connection every wait of a request (a socket, an SQLite
  statement, a lock) hands the GIL to one of the dozens of other request threads ready to
  run, and each hand-over is a context switch. The loop reads each request whole and writes
  each answer whole: a client that stops halfway through a request, or does not read a large
  answer, holds it until the socket's timeout (``IDLE_TIMEOUT``) — the SDKs send a request in
  one go and read what they asked for.

The serving thread is joined by ``stop()``, which also ends the kept-alive connections.

Each server adds up the CPU time its request threads spend on requests (``cpu``): the
benchmarks read it to tell which part of the local cloud's process costs what.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, make_server

from local.http11 import IDLE_TIMEOUT, LoopbackRequestHandler

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

log = logging.getLogger("assistflow.server")


@dataclass
class Staged:
    """A request its app has taken up to its latency (the app's ``stage(environ)``, for the
    one-thread server): wait ``latency`` seconds, then answer with ``rest`` (a WSGI app) — on
    the serving thread, or on a thread of its own when ``waits`` (the rest may block on
    something other than the CPU)."""

    latency: float
    rest: WSGIApplication
    waits: bool = False


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
                 fd: int | None = None, one_thread: bool = False) -> None:
        """``one_thread``: serve every connection from one thread; ``app`` then has
        ``stage(environ) -> Staged``."""
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
        self._loop = _OneThread(self._server, app.stage,  # type: ignore[attr-defined]
                                self.cpu) if one_thread else None

    def start(self) -> None:
        serve = self._loop.serve if self._loop is not None else self._server.serve_forever
        self._thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=self.name)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            if self._loop is not None:
                self._loop.stop()
            else:
                self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        # Kept-alive connections end too: a client must not reach a stopped app through one
        # (a restarted cloud serves the same port with a new app).
        for conn in list(self._live):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()


class _OneThread:
    """The one-thread way to serve (``LoopbackServer(one_thread=True)``): a selector loop
    over the listening socket and every idle connection. A connection with bytes to read is
    taken off the selector, its next request read (``begin_request``) and staged by the app;
    the rest of the request runs at once, when its latency's timer is due, or on a thread of
    its own (``Staged.waits``), which hands the connection back through ``_back``. Once
    answered, a connection is watched again — or closed, when the request asked for it or
    it stayed idle ``IDLE_TIMEOUT`` seconds."""

    def __init__(self, server: BaseWSGIServer, stage: Callable[[WSGIEnvironment], Staged],
                 meter: CpuMeter) -> None:
        self.server = server  # its live_connections: every open connection (``setup``)
        self.stage = stage
        self.meter = meter
        self.selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, LoopbackRequestHandler,
                                 Callable[[LoopbackRequestHandler], None]]] = []
        self._order = itertools.count()  # ties between timers: first set, first run
        self._back: queue.SimpleQueue[LoopbackRequestHandler] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._idle: dict[LoopbackRequestHandler, float] = {}  # watched: since when
        self._stopping = False

    def serve(self, poll_interval: float = 0.05) -> None:
        listening = self.server.socket
        listening.setblocking(False)
        self.selector.register(listening, selectors.EVENT_READ, None)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        swept = time.monotonic()
        try:
            while not self._stopping:
                timeout = poll_interval
                if self._timers:
                    timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
                for key, _ in self.selector.select(timeout):
                    if key.data is None:
                        self._accept(listening)
                    elif key.data is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._unwatch(key.data)
                        self._guarded(self._take, key.data)
                while not self._back.empty():
                    self._guarded(self._answered, self._back.get())
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, handler, run = heapq.heappop(self._timers)
                    self._guarded(run, handler)
                if now - swept > 1.0:
                    swept = now
                    self._sweep(now)
        finally:
            for handler in list(self._idle):
                self._close(handler)
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _accept(self, listening: socket.socket) -> None:
        while True:
            try:
                conn, address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none left (or another process of the emulator took it)
            except OSError:
                log.warning("%s: accept failed", self.server.server_address, exc_info=True)
                return
            handler = LoopbackRequestHandler.__new__(LoopbackRequestHandler)
            handler.request = handler.connection = conn
            handler.client_address = address
            handler.server = self.server
            try:
                handler.setup()  # the socket's timeout, TCP_NODELAY, rfile and wfile
            except OSError:
                conn.close()
                continue
            self._watch(handler)

    def _guarded(self, step: Callable[[LoopbackRequestHandler], None],
                 handler: LoopbackRequestHandler) -> None:
        """One step for one connection; whatever goes wrong ends that connection, never the
        loop."""
        try:
            step(handler)
        except Exception:
            log.exception("%s: connection dropped", self.server.server_address)
            handler.close_connection = True
            with contextlib.suppress(Exception):
                self._close(handler)

    def _watch(self, handler: LoopbackRequestHandler) -> None:
        self._idle[handler] = time.monotonic()
        self.selector.register(handler.connection, selectors.EVENT_READ, handler)

    def _unwatch(self, handler: LoopbackRequestHandler) -> None:
        self.selector.unregister(handler.connection)
        del self._idle[handler]

    def _take(self, handler: LoopbackRequestHandler) -> None:
        """Read and stage the connection's next request; answer it now, later or elsewhere."""
        begin = time.thread_time()
        try:
            if not handler.begin_request():
                self._answered(handler)
                return
            environ = handler.make_environ()
            staged = self.stage(environ)
        except Exception:  # a broken connection, or a bug
            log.debug("%s: request not read", self.server.server_address, exc_info=True)
            handler.close_connection = True
            self._answered(handler)
            return
        spent = time.thread_time() - begin
        if staged.waits:
            threading.Thread(target=self._answer_elsewhere, args=(handler, staged, environ),
                             daemon=True, name=f"{threading.current_thread().name}-wait").start()
            self.meter.add(spent)
        elif staged.latency > 0:
            heapq.heappush(self._timers, (
                time.monotonic() + staged.latency, next(self._order), handler,
                lambda h: self._answer(h, staged, environ, spent)))
        else:
            self._answer(handler, staged, environ, spent)

    def _answer(self, handler: LoopbackRequestHandler, staged: Staged,
                environ: WSGIEnvironment, spent: float) -> None:
        begin = time.thread_time()
        self._respond(handler, staged, environ)
        self.meter.add(spent + time.thread_time() - begin)
        self._answered(handler)

    def _answer_elsewhere(self, handler: LoopbackRequestHandler, staged: Staged,
                          environ: WSGIEnvironment) -> None:
        if staged.latency > 0:
            time.sleep(staged.latency)
        begin = time.thread_time()
        self._respond(handler, staged, environ)
        self.meter.add(time.thread_time() - begin, 0)
        self._back.put(handler)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    @staticmethod
    def _respond(handler: LoopbackRequestHandler, staged: Staged,
                 environ: WSGIEnvironment) -> None:
        try:
            handler.answer_with(staged.rest, environ)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _answered(self, handler: LoopbackRequestHandler) -> None:
        """After a request: the connection's next one, if its bytes are here already (a
        pipelined request, which the selector would not report); else watch it."""
        if handler.close_connection or self._stopping:
            self._close(handler)
        elif self._pending(handler):
            self._take(handler)
        else:
            self._watch(handler)

    @staticmethod
    def _pending(handler: LoopbackRequestHandler) -> bool:
        """Whether bytes of the next request wait in the connection's buffer (or on its
        socket) — a request the selector would not report, being read already."""
        sock = handler.connection
        try:
            sock.setblocking(False)
            return bool(handler.rfile.peek(1))  # type: ignore[attr-defined]
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(handler.timeout)

    def _close(self, handler: LoopbackRequestHandler) -> None:
        if handler in self._idle:
            self._unwatch(handler)
        try:
            handler.finish()  # flushes wfile; out of ``live``
        except OSError:
            pass
        finally:
            self.server.shutdown_request(handler.connection)

    def _sweep(self, now: float) -> None:
        """Close connections idle for ``IDLE_TIMEOUT`` seconds, as a request thread's read
        times out."""
        for handler, since in list(self._idle.items()):
            if now - since > IDLE_TIMEOUT:
                log.debug("idle connection closed")
                self._close(handler)
