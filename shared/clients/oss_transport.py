"""oss2's ``Session`` with a shorter road for the small object calls a collector makes by the
thousand.

oss2 signs, checks and parses every call itself and hands only the HTTP exchange to its
``Session`` (``oss2.Bucket(..., session=...)`` takes any ``oss2.Session``), which goes through
``requests``. For a 500-byte PutObject that road is most of the client's CPU: requests merges
the session's settings, cookies and hooks into every call and rebuilds the headers twice
(requests 2.34 ``sessions.py``: ``request`` -> ``prepare_request`` /
``merge_environment_settings`` -> ``send``); below it urllib3 parses and re-encodes the URL
twice (urllib3 2.x ``connectionpool.urlopen``), and ``http.client`` reads the answer's headers
through the ``email`` package's feed parser (``http.client.parse_headers``), a fifth of what
is left. A collector function has a quarter of a vCPU, so that CPU is billed time.

``LeanSession.do_request`` sends the requests whose body is already in memory and that carry
no query parameters and no proxy — PutObject, GetObject, DeleteObject of one object, which is
what the functions' hot paths call — itself, over kept-alive HTTP/1.1 connections
(``_Connections``), and everything else through oss2's own road, unchanged. Measured against
the local OSS (2-core Xeon, Python 3.11), client CPU per 500-byte PutObject: 1.31 ms through
requests, 0.85 ms through a urllib3 pool, 0.45 ms here.

What it keeps of requests' behaviour: the same request bytes but for the headers requests adds
by itself (oss2 sends its own ``User-Agent``; ``Accept-Encoding: identity`` as ``http.client``
sends it when none is given, so no answer comes compressed); certificates checked against
certifi's bundle with the host name (``ssl.create_default_context``, as urllib3 does for
requests); TCP_NODELAY (urllib3's default socket option); one timeout for connecting and for
each read; a kept connection checked before reuse (readable while idle means the server
closed it, as urllib3's ``is_connection_dropped``); answers framed by ``Content-Length``,
chunked, or by the end of the connection (RFC 9112 §6.3), and a connection given back only
once its answer was read to the end. Network and protocol errors are ``oss2.RequestError``,
whether they happen before the answer or while its body is read. One thing more than
requests: a request sent on a kept connection that the server had closed before answering
(no byte of an answer came, ``http.client.RemoteDisconnected`` or a reset) is sent once more
on a new connection — the server never read it.

oss2's CRC-64 and MD5 checks still run: the body is read through oss2's CRC adapter before it
is sent, and the answer is the same ``oss2.http.Response`` over a body object with the members
it uses (``status_code``, ``headers``, ``iter_content``).

``shared.clients.oss_writes`` (a look's many writes from one thread) sends on the same kept
connections and reads their answers with the same pieces: ``Connection``, ``status_line``,
``read_headers``, ``keeps_connection``, ``check_put`` and ``RETRY_ON``.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import oss2
from oss2.exceptions import RequestError
from requests.structures import CaseInsensitiveDict

from shared.clients.oss_signing import LeanAuthV4

SMALL_BODY = 1 << 20  # bodies up to this size are read into memory and sent in one piece
MAX_LINE = 65536  # longest status or header line read (http.client's _MAXLINE)
MAX_HEADERS = 100  # most header lines in one answer (http.client's _MAXHEADERS)
_NOT_HERE = object()  # a request this session leaves to oss2's own road
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
RETRY_ON = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
            ConnectionAbortedError)


class Connection:
    """One HTTP/1.1 connection (TLS for https) and the buffered reader of its answers."""

    __slots__ = ("reused", "rfile", "sock")

    def __init__(self, scheme: str, host: str, port: int, timeout: Any,
                 tls: Any = None) -> None:
        sock = socket.create_connection((host, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.reused = False

    def idle_and_open(self) -> bool:
        """Nothing to read while idle: still open (a closed one reads its end of file)."""
        try:
            if not hasattr(select, "poll"):  # Windows (the assistflow command)
                return not select.select([self.sock], [], [], 0)[0]
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):  # closed already
            return False

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class _Connections:
    """Kept-alive connections by (scheme, host, port), at most ``size`` idle per origin.
    ``opened`` and ``requests`` count what went through (for tests and measurements)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._lock = threading.Lock()
        self._tls: Any = None
        self.opened = 0
        self.requests = 0

    def take(self, origin: tuple[str, str, int], timeout: Any) -> Connection:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if conn.idle_and_open():
                conn.reused = True
                return conn
            conn.close()
        conn = Connection(*origin, timeout, self._context() if origin[0] == "https" else None)
        with self._lock:
            self.opened += 1
        return conn

    def give_back(self, origin: tuple[str, str, int], conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._size:
                idle.append(conn)
                return
        conn.close()

    def _context(self) -> Any:
        if self._tls is None:
            import ssl

            import certifi  # requests' own dependency: the bundle requests checks against

            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

    def exchange(self, method: str, url: str, headers: Mapping[str, Any], body: bytes | None,
                 timeout: Any) -> _Body:
        timeout = one_timeout(timeout)
        origin, target, host = _address(url)
        head = _head(method, target, host, headers, body)
        data = head + body if body else head
        with self._lock:
            self.requests += 1
        for attempt in (1, 2):
            conn: Connection | None = None
            try:
                conn = self.take(origin, timeout)
                conn.sock.settimeout(timeout)
                conn.sock.sendall(data)
                return _Body.read_head(self, origin, conn, method)
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                if attempt == 1 and conn is not None and conn.reused \
                        and isinstance(exc, RETRY_ON):
                    continue  # the server closed the kept connection before reading this
                raise RequestError(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def one_timeout(timeout: Any) -> float | None:
    """A timeout as one number for connecting and for each read: requests' (connect, read)
    as the longer of the two."""
    if isinstance(timeout, tuple):
        return max(t for t in timeout if t is not None) if any(timeout) else None
    return float(timeout) if timeout is not None else None


def _address(url: str) -> tuple[tuple[str, str, int], str, str]:
    """A URL's origin (scheme, host, port), request target and ``Host`` header."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    named = f"[{host}]" if ":" in host else host
    return ((scheme, host, port), target,
            named if port == _DEFAULT_PORTS.get(scheme) else f"{named}:{port}")


def check_put(bucket: oss2.Bucket, data: bytes, status: int, headers: Mapping[str, str],
              body: bytes) -> None:
    """A PutObject of ``data`` answered ``status``, ``headers`` and ``body`` (read whole):
    oss2's exception for an answer other than 2xx (``make_exception``), or for a CRC-64 that
    does not match what was sent — as ``LeanSession.put_object`` checks it."""
    if status // 100 != 2:
        raise oss2.exceptions.make_exception(oss2.http.Response(_Read(status, headers, body)))
    _check_crc(bucket, data, headers)


def _check_crc(bucket: oss2.Bucket, data: bytes, headers: Mapping[str, str]) -> None:
    stored = headers.get("x-oss-hash-crc64ecma")
    if bucket.enable_crc and stored is not None:
        crc = oss2.utils.Crc64()
        crc.update(data)
        oss2.utils.check_crc("put object", crc.crc, int(stored),
                             headers.get("x-oss-request-id", ""))


class _Read:
    """An answer read whole, with the members ``oss2.http.Response`` uses."""

    __slots__ = ("_body", "headers", "status_code")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status_code, self.headers, self._body = status, headers, body

    def iter_content(self, chunk_size: int = 1) -> Iterator[bytes]:
        body, self._body = self._body, b""
        if body:
            yield body


def _head(method: str, target: str, host: str, headers: Mapping[str, Any],
          body: bytes | None) -> bytes:
    """The request line and headers, as ``http.client`` would send them."""
    lines = [f"{method} {target} HTTP/1.1"]
    given = set()
    for name, value in headers.items():
        if value is None:
            continue
        text = str(value)
        if not _HEADER_NAME.fullmatch(name) or "\r" in text or "\n" in text:
            raise ValueError(f"Invalid header {name!r}: {text!r}")  # as http.client refuses
        given.add(name.lower())
        lines.append(f"{name}: {text}")
    if "host" not in given:
        lines.insert(1, f"Host: {host}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    if "content-length" not in given and (body is not None or method in ("PUT", "POST")):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


class _Body:
    """An answer's status and headers, and its body read from the connection as oss2 asks for
    it; the connection goes back to the pool once the body was read to its end, and is closed
    if the body is left unread (its bytes would be taken for the next answer)."""

    __slots__ = ("_chunk_left", "_chunked", "_conn", "_keep", "_left", "_origin", "_pool",
                 "headers", "status_code")

    def __init__(self, pool: _Connections, origin: tuple[str, str, int], conn: Connection,
                 status: int, headers: CaseInsensitiveDict[str], left: int, chunked: bool,
                 keep: bool) -> None:
        self._pool, self._origin = pool, origin
        self._conn: Connection | None = conn
        self.status_code = status
        self.headers = headers  # case-insensitive, repeated headers joined: as requests
        self._left = left  # body bytes still to read; -1: until the connection ends
        self._chunked = chunked
        self._chunk_left = 0
        self._keep = keep
        if not chunked and left == 0:
            self._done()

    @classmethod
    def read_head(cls, pool: _Connections, origin: tuple[str, str, int], conn: Connection,
                  method: str) -> _Body:
        rfile = conn.rfile
        while True:
            line = rfile.readline(MAX_LINE + 1)
            if not line:
                raise http.client.RemoteDisconnected("Remote end closed connection without "
                                                     "response")
            if len(line) > MAX_LINE:
                raise http.client.LineTooLong("status line")
            version, status = status_line(line)
            headers = read_headers(rfile)
            if not 100 <= status < 200 or status == 101:
                break  # an interim answer (100 Continue, 103) is followed by the real one
        keep = keeps_connection(version, headers)
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            left, chunked = 0, False
        elif chunked:
            left = 0
        elif "Content-Length" in headers:
            try:
                left = int(headers["Content-Length"])
            except ValueError:
                raise http.client.HTTPException(
                    f"bad Content-Length {headers['Content-Length']!r}") from None
            if left < 0:
                raise http.client.HTTPException(f"bad Content-Length {left}")
        else:
            left, keep = -1, False  # framed by the end of the connection
        return cls(pool, origin, conn, status, headers, left, chunked, keep)

    def iter_content(self, chunk_size: int = 1) -> Iterator[bytes]:
        # oss2's ``read(amt)`` asks for a new iterator each time: each goes on from where the
        # last one stopped
        while data := self._read(max(1, chunk_size)):
            yield data

    def close(self) -> None:
        if self._conn is not None:  # left unread: its bytes must not meet the next request
            self._conn.close()
            self._conn = None

    def _done(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._keep:
                self._pool.give_back(self._origin, conn)
            else:
                conn.close()

    def _read(self, size: int) -> bytes:
        if self._conn is None:
            return b""
        try:
            if self._chunked:
                return self._read_chunked(size)
            if self._left < 0:
                data = self._conn.rfile.read(size)
                if not data:
                    self._done()
                return data
            data = self._conn.rfile.read(min(size, self._left))
            if not data:
                raise http.client.IncompleteRead(b"", self._left)
            self._left -= len(data)
            if self._left == 0:
                self._done()
            return data
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise RequestError(exc) from exc

    def _read_chunked(self, size: int) -> bytes:
        assert self._conn is not None
        rfile = self._conn.rfile
        if self._chunk_left == 0:
            line = rfile.readline(MAX_LINE + 1)
            try:
                self._chunk_left = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise http.client.HTTPException(f"bad chunk size line {line[:40]!r}") from None
            if self._chunk_left == 0:
                read_headers(rfile)  # the trailer section, ended by its blank line
                self._done()
                return b""
        data = rfile.read(min(size, self._chunk_left))
        if not data:
            raise http.client.IncompleteRead(b"", self._chunk_left)
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and rfile.read(2) != b"\r\n":
            raise http.client.HTTPException("chunk not ended by CRLF")
        return data


def status_line(line: bytes) -> tuple[str, int]:
    """An answer's HTTP version and status code (``BadStatusLine`` if it is not one)."""
    version, _, rest = line.decode("iso-8859-1").rstrip("\r\n").partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine(repr(line))
    return version, int(code)


def keeps_connection(version: str, headers: Mapping[str, str]) -> bool:
    """May the connection carry the next request once this answer was read?"""
    connection = headers.get("Connection", "").lower()
    return "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)


def read_headers(rfile: Any) -> CaseInsensitiveDict[str]:
    """Header lines up to the blank line, repeated names joined by ``, `` (as urllib3 and
    requests join them); obsolete folded lines joined to the header they continue."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    last = ""
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return headers
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and last:
            headers[last] = f"{headers[last]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            raise http.client.HTTPException(f"malformed header line {line[:80]!r}")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


class LeanSession(oss2.Session):
    """An ``oss2.Session``; ``direct``: False when a proxy may apply (requests reads the proxy
    environment on every call; those calls keep its road)."""

    def __init__(self, pool_size: int | None = None, direct: bool = True) -> None:
        super().__init__(pool_size)
        self._direct = direct
        self.connections = _Connections(pool_size or oss2.defaults.connection_pool_size)

    def do_request(self, req: oss2.http.Request, timeout: Any) -> oss2.http.Response:
        body = self._small_body(req)
        if body is _NOT_HERE:
            return super().do_request(req, timeout)
        return oss2.http.Response(self.connections.exchange(req.method, req.url, req.headers,
                                                            body, timeout))

    def put_object(self, bucket: oss2.Bucket, key: str, data: bytes,
                   headers: Mapping[str, str]) -> None:
        """``bucket.put_object(key, data, headers=headers)`` for a body in memory, on this
        session's road without oss2's request, answer and result objects: oss2 wraps the body
        in a CRC adapter and formats the headers of the request (twice) and of the answer into
        debug messages whether or not debug logging is on (``Bucket.put_object``,
        ``oss2.http.Request`` and ``Response``): a fifth to a quarter of a collector's CPU per
        stored object. Measured against the local OSS: one thread, 0.24-0.28 ms of CPU per PutObject
        this way against 0.34-0.35 ms through ``put_object``; four processes of 16 threads
        (the collectors' shape, ``bench/oss_store.py``), 0.71-0.85 against 0.87-1.01 ms per
        object, their whole processes counted. The same request bytes (oss2's headers, in its
        order, and its ``User-Agent``), the same signer, oss2's exception for an answer other
        than 2xx (``make_exception``) and its CRC-64 check of what was stored. A bucket whose
        calls may go through a proxy, a body over ``SMALL_BODY`` or another signer than
        ``LeanAuthV4`` (``serves_put``): ``put_object`` itself."""
        if not self.serves_put(bucket, data):
            bucket.put_object(key, data, headers=dict(headers))
            return
        request = _Put(bucket, key, headers)
        bucket.auth._sign_request(request, bucket.bucket_name, key)
        answer = self.connections.exchange("PUT", request.url, request.headers, data,
                                           bucket.timeout)
        if answer.status_code // 100 != 2:
            try:
                raise oss2.exceptions.make_exception(oss2.http.Response(answer))
            finally:
                answer.close()  # what make_exception left of a long error body
        for _ in answer.iter_content(8192):  # to its end: the connection is kept
            pass
        _check_crc(bucket, data, answer.headers)

    def serves_put(self, bucket: oss2.Bucket, data: bytes) -> bool:
        """Does ``put_object`` write ``data`` to ``bucket`` on this session's own road?"""
        return self._direct and not bucket.proxies and len(data) <= SMALL_BODY \
            and isinstance(bucket.auth, LeanAuthV4)

    def put_request(self, bucket: oss2.Bucket, key: str, data: bytes,
                    headers: Mapping[str, str]) -> bytes:
        """The signed PutObject request ``put_object`` sends, as bytes (for ``serves_put``
        buckets; ``shared.clients.oss_writes`` sends them itself)."""
        request = _Put(bucket, key, headers)
        bucket.auth._sign_request(request, bucket.bucket_name, key)
        _, target, host = _address(request.url)
        return _head("PUT", target, host, request.headers, data) + data

    @staticmethod
    def origin_of(bucket: oss2.Bucket) -> tuple[str, str, int]:
        """The (scheme, host, port) the bucket's object calls go to (``_Connections``' key)."""
        return _address(bucket._make_url(bucket.bucket_name, ""))[0]

    def _small_body(self, req: oss2.http.Request) -> Any:
        """The request's whole body (None: none) if this session sends it itself, else
        ``_NOT_HERE``."""
        if not self._direct or req.params or req.proxies:
            return _NOT_HERE
        data = req.data
        if data is None or isinstance(data, bytes):
            return data
        size = getattr(data, "len", None)  # oss2's CRC adapter over bytes or a file
        if not isinstance(size, int) or size > SMALL_BODY or not hasattr(data, "read"):
            return _NOT_HERE
        return data.read()  # through the adapter: its CRC is computed on the way


class _Put:
    """What oss2's signer reads of a PutObject request, as ``oss2.http.Request`` would hold it
    for ``Bucket.put_object``: the caller's headers (a ``Content-Type`` guessed from the key if
    none), then oss2's ``Accept-Encoding`` (None: not sent) and ``User-Agent``, in that
    order."""

    __slots__ = ("cloudbox_id", "headers", "method", "params", "product", "proxies", "region",
                 "url")

    def __init__(self, bucket: oss2.Bucket, key: str, headers: Mapping[str, str]) -> None:
        self.method = "PUT"
        self.url = bucket._make_url(bucket.bucket_name, key)
        self.headers: dict[str, Any] = dict(headers)
        if not any(name.lower() == "content-type" for name in self.headers):
            guessed = oss2.utils.content_type_by_name(key)  # as put_object guesses one
            if guessed:
                self.headers["Content-Type"] = guessed
        self.headers["Accept-Encoding"] = None
        self.headers["User-Agent"] = (oss2.http.USER_AGENT + "/" + bucket.app_name
                                      if bucket.app_name else oss2.http.USER_AGENT)
        self.params: dict[str, str] = {}
        self.region, self.product = bucket.region, bucket.product
        self.cloudbox_id, self.proxies = bucket.cloudbox_id, None
