"""Many small PutObjects sent from one thread: the writes of a collector look.

A look stores two objects per finished instance — ``output.txt``, then ``result.json`` — for
up to a hundred instances. Sent from a pool of threads (``shared.parallel``), each write in
flight holds a thread, and every wait on its socket hands the GIL to another one. ``Writes``
sends them from one thread over up to ``width`` (``WRITES_AT_ONCE``) kept-alive connections of
the bucket's ``LeanSession`` (``shared.clients.oss_transport``): a request goes out on every
free connection, one ``selectors`` wait takes whichever answer comes first, and the connection
that answered carries that instance's next object, or the next instance's first. A write in
flight costs a connection, not a thread, so a look keeps twice as many going as it did on 16
threads, for less CPU (the figures are at ``WRITES_AT_ONCE``). One client process alone, 16
at a time: 0.35-0.36 ms of CPU per object this way, 0.39 from 16 threads.

A *chain* is one instance's objects, written in order: its next object is sent only once the
one before was stored, so a reader that sees ``result.json`` finds ``output.txt`` too.

What the one thread does not finish is finished the usual way, once its chains are done
(``settle``): a chain whose write met a transient error — a 5xx or a throttling answer, a
network error, an answer it cannot frame — goes on from that write through ``Results.put`` on
the calls' pool (``shared.parallel``), that write counted as the first attempt of its retries
(``shared.retry.retrying``), within the invocation's patience; a CRC-64 that does not match
what was sent is such an error too, as through ``Results.put``. A permanent refusal (a 403, a
missing bucket) ends its chain with the ``CloudCallError`` ``Results.put`` would raise. A
request sent on a kept connection that the server had closed before answering is sent once
more on a new one, as ``LeanSession`` does. A bucket the lean road does not serve (a proxy,
another signer, a body over ``SMALL_BODY``) writes every chain through ``Results.put`` on the
pool, as before.

Every chain runs to its own end (a look keeps whatever was stored: ``stop_on_error=False``);
``settle`` answers each chain's outcome, in order, once nothing is left in flight.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import oss2

from shared.clients.oss_transport import (
    RETRY_ON,
    Connection,
    LeanSession,
    check_put,
    keeps_connection,
    one_timeout,
    read_headers,
    status_line,
)
from shared.clients.results import as_cloud_error
from shared.parallel import STORE_POOL_SIZE, WRITES_AT_ONCE, Calls
from shared.results import Put

if TYPE_CHECKING:
    from shared.clients.results import Results
    from shared.errors import CloudCallError

MAX_HEAD = 65536  # bytes an answer's status line and headers may take


@dataclass
class _Sent:
    """A request in flight on a connection: its chain, its place there, its answer so far."""

    chain: int
    step: int
    deadline: float
    resent: bool = False
    answer: bytearray = field(default_factory=bytearray)


class Writes:
    """Chains of PutObjects given in one or more ``extend``s, written from one thread, and
    ``settle``d once (every chain's outcome, in order: None or its error). Call ``settle`` in
    a ``finally``: no write may outlive the invocation."""

    def __init__(self, results: Results, width: int = WRITES_AT_ONCE) -> None:
        self._results = results
        self._width = width
        self._chains: list[Sequence[Put]] = []
        self._outcomes: list[BaseException | None] = []
        self._tails: list[tuple[int, int, CloudCallError]] = []  # (chain, step, first error)
        self._fallback: Calls[None] | None = None  # chains written the usual way
        self._fallback_chains: list[int] = []
        self._lock = threading.Lock()
        self._ready: deque[tuple[int, int]] = deque()  # (chain, step) to send
        self._closed = False
        self._driver: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # --- the caller's side --------------------------------------------------------------------
    def extend(self, chains: Iterable[Sequence[Put]]) -> None:
        new = list(chains)
        if not new:
            return
        first = len(self._chains)
        self._chains.extend(new)
        self._outcomes.extend([None] * len(new))
        if not self._lean(new):
            if self._fallback is None:
                self._fallback = Calls(STORE_POOL_SIZE, stop_on_error=False)
            self._fallback_chains.extend(range(first, first + len(new)))
            self._fallback.extend(self._tail(n, 0) for n in range(first, first + len(new)))
            return
        with self._lock:
            self._ready.extend((n, 0) for n in range(first, first + len(new)))
        if self._driver is None:
            self._wake = socket.socketpair()
            # a thread of its own, one per look: never queued behind another's calls
            self._driver = threading.Thread(target=self._run, name="assistflow-writes",
                                            daemon=True)
            self._driver.start()
        else:
            self._poke()

    def settle(self) -> list[BaseException | None]:
        """Wait for every chain; each one's outcome (None: all of it stored), in order. A
        failure of the one thread itself (a bug, not a refusal) is raised, once every call
        started on the pool has ended too."""
        if self._driver is not None:
            with self._lock:
                self._closed = True
            self._poke()
            self._driver.join()
            for end in self._wake or ():
                end.close()
        if self._crash is None and self._tails:
            group: Calls[None] = Calls(STORE_POOL_SIZE, stop_on_error=False)
            group.extend(self._tail(chain, step, error) for chain, step, error in self._tails)
            for (chain, _, _), outcome in zip(self._tails, group.settle(), strict=True):
                self._outcomes[chain] = outcome if isinstance(outcome, BaseException) else None
        if self._fallback is not None:
            for chain, outcome in zip(self._fallback_chains, self._fallback.settle(),
                                      strict=True):
                self._outcomes[chain] = outcome if isinstance(outcome, BaseException) else None
        if self._crash is not None:
            raise self._crash
        return list(self._outcomes)

    def _lean(self, chains: list[Sequence[Put]]) -> bool:
        bucket = self._results.bucket
        session = bucket.session
        return isinstance(session, LeanSession) and all(
            session.serves_put(bucket, put.data) for chain in chains for put in chain)

    def _tail(self, chain: int, step: int, error: CloudCallError | None = None
              ) -> Callable[[], None]:
        """Chain ``chain`` from ``step`` on, through ``Results.put``; ``error``: how its first
        write failed already (an attempt of its retries)."""
        puts = self._chains[chain][step:]
        results = self._results

        def write() -> None:
            for n, put in enumerate(puts):
                results.put(put.key, put.data, put.content_type,
                            failed=error if n == 0 else None)

        return write

    def _poke(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"\0")

    # --- the one thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._drive()
        except BaseException as exc:  # handed to settle
            self._crash = exc

    def _drive(self) -> None:
        bucket = self._results.bucket
        session: LeanSession = bucket.session
        timeout = one_timeout(bucket.timeout)
        wait_for = timeout or 60.0  # no answer by then: a network error
        assert self._wake is not None
        wake = self._wake[0]
        wake.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(wake, selectors.EVENT_READ, None)
        free: list[Connection] = []  # connections of this look with nothing in flight
        flight: dict[Connection, _Sent] = {}
        ready: deque[tuple[int, int]] = deque()
        origin = session.origin_of(bucket)

        def send(conn: Connection | None, chain: int, step: int, resent: bool = False) -> None:
            put = self._chains[chain][step]
            request = session.put_request(bucket, put.key, put.data,
                                          {"Content-Type": put.content_type})
            try:
                if conn is None:
                    conn = session.connections.take(origin, timeout)
                conn.sock.settimeout(timeout)
                conn.sock.sendall(request)
            except OSError as exc:
                if conn is not None:
                    conn.close()
                    if not resent and conn.reused and isinstance(exc, RETRY_ON):
                        send(None, chain, step, resent=True)  # closed before it read this
                        return
                self._failed(chain, step, oss2.exceptions.RequestError(exc))
                return
            flight[conn] = _Sent(chain, step, time.monotonic() + wait_for, resent)
            selector.register(conn.sock, selectors.EVENT_READ, conn)

        def answered(conn: Connection, sent: _Sent, error: BaseException | None,
                     keep: bool = True) -> None:
            selector.unregister(conn.sock)
            del flight[conn]
            if error is not None:
                conn.close()
                if not sent.resent and conn.reused and not sent.answer \
                        and isinstance(error, (*RETRY_ON, EOFError)):
                    send(None, sent.chain, sent.step, resent=True)  # never read: again
                    return
                self._failed(sent.chain, sent.step, error)
                return
            kept: Connection | None = conn
            conn.reused = True  # it answered: a close before its next answer is a kept one's
            if not keep:
                conn.close()
                kept = None
            if sent.step + 1 < len(self._chains[sent.chain]):
                send(kept, sent.chain, sent.step + 1)  # the chain's next object, in order
            elif kept is not None:
                free.append(kept)

        try:
            while True:
                with self._lock:
                    ready.extend(self._ready)
                    self._ready.clear()
                    closed = self._closed
                while ready and len(flight) < self._width:
                    chain, step = ready.popleft()
                    send(free.pop() if free else None, chain, step)
                if not flight and not ready and closed:
                    break
                soonest = min((s.deadline for s in flight.values()), default=None)
                pause = None if soonest is None else max(0.0, soonest - time.monotonic())
                for key, _ in selector.select(pause):
                    conn = key.data
                    if conn is None:  # extend or settle: look at the chains again
                        with contextlib.suppress(OSError):
                            wake.recv(4096)
                        continue
                    sent = flight[conn]
                    try:
                        keep = self._read(bucket, conn, sent)
                    except (OSError, EOFError, http.client.HTTPException,
                            oss2.exceptions.OssError) as exc:
                        answered(conn, sent, exc)
                        continue
                    if keep is not None:  # the whole answer came: stored
                        answered(conn, sent, None, keep)
                now = time.monotonic()
                for conn, sent in list(flight.items()):
                    if sent.deadline <= now:
                        answered(conn, sent, oss2.exceptions.RequestError(
                            TimeoutError("no answer within the bucket's timeout")))
        finally:
            for conn in flight:
                conn.close()
            for conn in free:
                session.connections.give_back(origin, conn)
            selector.close()

    def _read(self, bucket: oss2.Bucket, conn: Connection, sent: _Sent) -> bool | None:
        """Read what came of ``sent``'s answer: None while it is not whole; once it is,
        whether the connection may be kept. Raises oss2's exception for an answer other than
        2xx or a CRC-64 that does not match, ``RequestError`` for one it cannot frame."""
        data = conn.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        answer = sent.answer
        answer.extend(data)
        pending = getattr(conn.sock, "pending", None)  # TLS: bytes decrypted, not read yet
        while pending is not None and pending():
            answer.extend(conn.sock.recv(65536))
        end = answer.find(b"\r\n\r\n")
        if end < 0:
            if len(answer) > MAX_HEAD:
                raise oss2.exceptions.RequestError(ValueError("answer head too long"))
            return None
        stream = io.BytesIO(answer)
        line = stream.readline()
        version, status = status_line(line)
        headers = read_headers(stream)
        length = headers.get("Content-Length", "")
        if not length.isdigit() or status < 200 or "Transfer-Encoding" in headers:
            # not framed as OSS frames a PutObject's answer: the usual road sends it again
            raise oss2.exceptions.RequestError(ValueError(f"unframed answer {line[:80]!r}"))
        body_at = end + 4
        if len(answer) < body_at + int(length):
            return None
        if len(answer) > body_at + int(length):
            raise oss2.exceptions.RequestError(ValueError("bytes past the end of the answer"))
        put = self._chains[sent.chain][sent.step]
        check_put(bucket, put.data, status, headers, bytes(answer[body_at:]))
        return keeps_connection(version, headers)

    def _failed(self, chain: int, step: int, error: BaseException) -> None:
        """``chain``'s write ``step`` failed: retried the usual way if transient, else the
        chain's outcome."""
        failure = as_cloud_error("PutObject", error)
        if failure.transient:
            self._tails.append((chain, step, failure))
        else:
            self._outcomes[chain] = failure
