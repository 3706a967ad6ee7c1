"""The HTTP/1.1 side of every local server (``local.server.LoopbackServer``): reading a request
and writing its answer. Four details that are easy to get wrong:

* HTTP/1.1 keep-alive, as every Alibaba Cloud endpoint offers it and every SDK uses it (oss2 and
  aliyunsdkcore keep a ``requests`` session, aliyun-mns-sdk one ``HTTPConnection``): werkzeug's
  own handler answers every request with ``Connection: close`` (werkzeug 3.1
  ``serving.py``, ``run_wsgi``), which made each API call pay a new TCP connection and a new
  server thread. Here a connection serves request after request: the body an app left unread
  is read past before the next request (``Content-Length`` or chunked), and a connection idle
  for ``IDLE_TIMEOUT`` seconds is closed, as servers do (the SDKs reconnect: urllib3 checks a
  pooled connection before reusing it, aliyun-mns-sdk retries once on a closed one);
* the request line and header block are parsed directly, not through the ``email`` package
  ``http.server`` hands them to (a third of a small request's CPU, measured), and a plain
  request's WSGI environ is built directly with the keys werkzeug's ``make_environ`` gives it;
  a request line or header block outside the plain form (HTTP/0.9, a folded line, a line
  without a colon, an absolute or chunked request) still goes the standard way, so every
  request gets the very answer and headers it got before. An answer's status line, headers
  and first bytes leave in one write (one system call, one wake-up of the client);
* TCP_NODELAY: HTTP/1.1 keep-alive without it stalls every small response about 40 ms —
  Nagle's algorithm holds the body until the client's delayed ACK of the headers (RFC 896,
  RFC 1122 §4.2.3.2);
* the raw request headers: the WSGI environ cannot carry a header whose name contains ``_``
  (werkzeug drops them), but ``x-oss-meta-my_key`` is legal and signed, so the request handler
  keeps the headers exactly as sent (``raw_headers``).

The handler adds the CPU time of each request (its thread's own CPU clock, so time spent
waiting — a profile's delay, a lock, the GIL — does not count) to its server's ``cpu_meter``,
and keeps its connection in the server's ``live_connections`` while it is open.
"""

from __future__ import annotations

import email.parser
import email.utils
import http.client
import logging
import re
import sys
import time
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("assistflow.server")

RAW_HEADERS = "assistflow.raw_headers"
IDLE_TIMEOUT = 60.0  # seconds a kept-alive connection may wait for its next request
DRAIN_LIMIT = 64 << 20  # unread request bytes read past to keep a connection; more: close it


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


_HEADER_NAME = re.compile(r"[\041-\071\073-\176]+")  # what email's feedparser takes for one
_PLAIN_NAMES: set[str] = set()  # header names seen to match _HEADER_NAME


class _PlainHeaders(http.client.HTTPMessage):
    """An ``http.client.HTTPMessage`` of plain ``Name: value`` lines, read back without the
    email policy's per-call work. The values were decoded from ISO-8859-1, so they hold no
    surrogates and compat32's ``header_fetch_parse`` would return each unchanged: ``items``
    and ``get`` answer exactly what the base class would, without it."""

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers)  # type: ignore[attr-defined]

    def get(self, name: str, failobj: Any = None) -> Any:
        name = name.lower()
        for key, value in self._headers:  # type: ignore[attr-defined]
            if key.lower() == name:
                return value
        return failobj


def _fast_message(lines: list[bytes]) -> http.client.HTTPMessage:
    """The header block ``lines`` (its blank line included) as ``http.client.parse_headers``
    would return it: the same (name, value) pairs (compat32's ``header_source_parse``: the
    value after the colon, leading blanks and the line end removed), or that function's own
    result for any line outside the plain form."""
    message = _PlainHeaders()
    pairs = message._headers  # type: ignore[attr-defined]  # what __setitem__ appends to
    for raw in lines[:-1]:
        text = raw.decode("iso-8859-1")
        name, colon, value = text.partition(":")
        if not colon or name not in _PLAIN_NAMES:
            if not colon or not _HEADER_NAME.fullmatch(name):
                return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
                    b"".join(lines).decode("iso-8859-1"))
            if len(_PLAIN_NAMES) < 4096:  # the names clients send, checked once each
                _PLAIN_NAMES.add(name)
        # compat32's header_store_parse keeps (name, value) as they are
        pairs.append((name, value.lstrip(" \t").rstrip("\r\n")))
    return message


class _HeaderTap:
    """Stands in for ``rfile`` while ``http.server`` reads the header block: reads the block
    from the connection itself and shows an empty one, which the email parser parses in no
    time."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.lines: list[bytes] | None = None

    def readline(self, limit: int = -1) -> bytes:
        if self.lines is None:
            self.lines = http.client._read_headers(self.rfile)  # type: ignore[attr-defined]
            return b"\r\n"
        line: bytes = self.rfile.readline(limit)
        return line


class LoopbackRequestHandler(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def parse_request(self) -> bool:
        if self._plain_request_line():
            try:
                lines = http.client._read_headers(self.rfile)  # type: ignore[attr-defined]
            except http.client.HTTPException as err:  # as http.server answers these
                self.send_error(431, "Line too long" if isinstance(err, http.client.LineTooLong)
                                else "Too many headers", str(err))
                return False
            return self._after_headers(_fast_message(lines))
        rfile, tap = self.rfile, _HeaderTap(self.rfile)
        self.rfile = tap  # type: ignore[assignment]
        try:
            if not super().parse_request():
                return False
        finally:
            self.rfile = rfile
        if tap.lines is None:  # an HTTP/0.9 request line: no headers were read
            return True
        return self._after_headers(_fast_message(tap.lines))

    def _plain_request_line(self) -> bool:
        """The request line when it is the plain ``METHOD /path HTTP/1.x`` form: set what
        ``http.server``'s ``parse_request`` sets from it, and True; False for any other form
        (http.server then parses it, answering its errors)."""
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0") \
                or words[1].startswith("//"):
            return False
        self.requestline = requestline
        self.command, self.path, self.request_version = words
        self.close_connection = not (words[2] == "HTTP/1.1"
                                     and self.protocol_version >= "HTTP/1.1")
        return True

    def _after_headers(self, headers: http.client.HTTPMessage) -> bool:
        """What http.server's ``parse_request`` decides from the headers."""
        self.headers = headers
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "").lower()
        if expect == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    timeout = IDLE_TIMEOUT  # the socket's timeout: an idle keep-alive connection ends

    def setup(self) -> None:
        super().setup()
        live = getattr(self.server, "live_connections", None)
        if live is not None:
            live.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            live = getattr(self.server, "live_connections", None)
            if live is not None:
                live.discard(self.connection)

    def handle_one_request(self) -> None:
        """One request on a thread of its own: what ``http.server`` does (read the request,
        then ``do_<METHOD>``, which werkzeug maps to ``run_wsgi`` for every method), through
        ``begin_request``, the one reader of a request line both ways to serve use."""
        begin = time.thread_time()
        try:
            if self.begin_request():
                self.run_wsgi()
                self.wfile.flush()
        finally:
            meter = getattr(self.server, "cpu_meter", None)
            if meter is not None:
                # a keep-alive connection that closes instead of sending a request: no request
                meter.add(time.thread_time() - begin,
                          1 if getattr(self, "raw_requestline", b"") else 0)

    def make_environ(self) -> WSGIEnvironment:
        plain = self.path.startswith("/") and "#" not in self.path \
            and "transfer-encoding" not in self.headers
        environ = self._plain_environ() if plain else super().make_environ()
        environ[RAW_HEADERS] = list(self.headers.items())
        if not environ.get("wsgi.input_terminated"):  # not chunked: framed by Content-Length
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:  # a body that cannot be framed: read none, keep nothing alive
                length, self.close_connection = 0, True
            environ["wsgi.input"] = LimitedStream(cast("IO[bytes]", self.rfile), length)
            environ["wsgi.input_terminated"] = True
        return environ

    def _plain_environ(self) -> WSGIEnvironment:
        """What werkzeug's ``make_environ`` builds (werkzeug 3.1 ``serving.py``) for a
        plain-form target (``/path?query``, no fragment) on a TCP connection without TLS and a
        body that is not chunked; the other requests take werkzeug's own."""
        path, _, query = self.path.partition("?")
        server = self.server
        environ: WSGIEnvironment = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": self.rfile,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": server.multithread,
            "wsgi.multiprocess": server.multiprocess,
            "wsgi.run_once": False,
            "werkzeug.socket": self.connection,
            "SERVER_SOFTWARE": self.server_version,
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path).encode().decode("latin1"),
            "QUERY_STRING": query.encode().decode("latin1"),
            "REQUEST_URI": self.path.encode().decode("latin1"),
            "RAW_URI": self.path.encode().decode("latin1"),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": self.client_address[1],
            "SERVER_NAME": server.server_address[0],
            "SERVER_PORT": str(server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
        }
        for name, value in self.headers.items():
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            value = value.replace("\r\n", "")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = f"HTTP_{key}"
                if key in environ:
                    value = f"{environ[key]},{value}"
            environ[key] = value
        return environ

    def run_wsgi(self) -> None:
        """One request, answered on a connection that stays open (werkzeug's own
        ``run_wsgi`` closes every connection)."""
        # (an ``Expect: 100-continue`` was answered by ``parse_request``)
        self.answer_with(self.server.app, self.make_environ())

    def begin_request(self) -> bool:
        """The next request's line and headers, as ``http.server``'s ``handle_one_request``
        reads them before it calls ``run_wsgi``: True when a request is to be answered, False
        when there is none (the connection ended, timed out, or the request was refused with
        an error answer already). Then ``run_wsgi`` (a thread per connection), or
        ``make_environ()`` and later ``answer_with`` (``local.server``'s one thread)."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return False
            if not self.raw_requestline:
                self.close_connection = True
                return False
            return self.parse_request()
        except TimeoutError as err:
            self.log_error("Request timed out: %r", err)
            self.close_connection = True
            return False

    def answer_with(self, app: Any, environ: WSGIEnvironment) -> None:
        """Answer the request ``environ`` describes with the WSGI app ``app``; then read past
        what it left of the body, unless the connection is to close."""
        self.environ = environ
        answer = _Answer(self, environ)
        try:
            result = app(environ, answer.start_response)
            try:
                for data in result:
                    answer.write(data)
                answer.end()
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:
            log.exception("%s: error answering %s %s", self.server.server_address,
                          self.command, self.path.split("?", 1)[0])
            self.close_connection = True
            if not answer.sent:
                self.send_error(500)
            return
        if not self.close_connection:
            self._skip_unread(environ["wsgi.input"])

    def _skip_unread(self, body: Any) -> None:
        """Read past what the app left of the request body, so the next request starts at its
        request line; a connection whose rest is too long or broken is closed instead."""
        read = 0
        try:
            while chunk := body.read(1 << 16):
                read += len(chunk)
                if read > DRAIN_LIMIT:
                    self.close_connection = True
                    return
        except Exception:
            self.close_connection = True

    def unread_body(self) -> int:
        """Bytes of a Content-Length body the app has not read (0 for chunked bodies)."""
        body = self.environ.get("wsgi.input")
        if isinstance(body, LimitedStream):
            return max(0, body.limit - body.tell())
        return 0

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):  # an idle keep-alive connection ended
            log.debug("idle connection closed")
            return
        log.warning(format, *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the query string: RPC requests carry SecurityToken and Signature there.
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


class _Answer:
    """The WSGI ``start_response`` / ``write`` of one request: the status line and headers
    when the first bytes (or the end) come, in the same write as those bytes, the body framed
    by the app's ``Content-Length`` or else chunked (HTTP/1.1) or ended by closing the
    connection (HTTP/1.0)."""

    def __init__(self, handler: LoopbackRequestHandler, environ: WSGIEnvironment) -> None:
        self.handler = handler
        self.head_only = environ["REQUEST_METHOD"] == "HEAD"
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False
        self.chunked = False

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        if exc_info and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        return self.write

    def _head(self) -> bytes:
        """The status line and headers as ``http.server``'s ``send_response``,
        ``send_header`` and ``end_headers`` write them (``Server`` and ``Date`` first), in
        one piece."""
        h = self.handler
        assert self.status is not None, "write() before start_response"
        code_str, _, message = self.status.partition(" ")
        code = int(code_str)
        h.log_request(code)
        if h.request_version == "HTTP/0.9":  # no status line, no headers
            self.sent = True
            return b""
        lines = [f"{h.protocol_version} {code} {message}", f"Server: {h.version_string()}",
                 f"Date: {_http_date()}"]
        names = set()
        for name, value in self.headers:
            lines.append(f"{name}: {value}")
            lower = name.lower()
            names.add(lower)
            if lower == "connection":  # as send_header decides
                if value.lower() == "close":
                    h.close_connection = True
                elif value.lower() == "keep-alive":
                    h.close_connection = False
        bodiless = self.head_only or 100 <= code < 200 or code in (204, 304)
        if "content-length" not in names and not bodiless:
            if h.request_version >= "HTTP/1.1":
                self.chunked = True
                lines.append("Transfer-Encoding: chunked")
            else:
                h.close_connection = True
        if h.unread_body() > DRAIN_LIMIT:
            h.close_connection = True
        if h.close_connection:
            lines.append("Connection: close")
        self.sent = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")

    def write(self, data: bytes) -> None:
        head = b"" if self.sent else self._head()
        if data and self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        if head or data:
            self.handler.wfile.write(head + data)

    def end(self) -> None:
        head = b"" if self.sent else self._head()
        last = head + b"0\r\n\r\n" if self.chunked else head
        if last:
            self.handler.wfile.write(last)
        self.handler.wfile.flush()


_date: tuple[int, str] = (0, "")


def _http_date() -> str:
    """``Date``'s value now, as ``http.server``'s ``date_time_string`` writes it (formatted
    once a second)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]
