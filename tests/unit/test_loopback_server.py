"""The local cloud's HTTP server (``local.server.LoopbackServer`` over ``local.http11``):
keep-alive as real endpoints offer it, request bodies framed correctly on a kept connection,
and nothing left open by stop()."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import oss2
import pytest
from werkzeug.serving import WSGIRequestHandler

from local.emulators.keyring import KeyRing
from local.emulators.oss import OssApp
from local.emulators.server import EmulatorServer
from local.http11 import LoopbackRequestHandler
from local.server import LoopbackServer


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Reads ``?read=N`` bytes of the body (all when absent); streams when ``?stream``."""
    query = dict(p.split("=", 1) if "=" in p else (p, "") for p in
                 environ["QUERY_STRING"].split("&") if p)
    stream = environ["wsgi.input"]
    want = int(query["read"]) if "read" in query else -1
    body = stream.read(want) if want >= 0 else stream.read()
    answer = json.dumps({"read": len(body), "path": environ["PATH_INFO"]}).encode()
    if "stream" in query:  # no Content-Length: the server frames it
        start_response("200 OK", [("Content-Type", "application/json")])
        return [answer[:5], answer[5:]]
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(answer)))])
    return [answer]


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer(_app, 0, "test-loopback")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _ask(conn: http.client.HTTPConnection, method: str, path: str,
         body: bytes | Iterator[bytes] | None = None,
         headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, Any]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    return resp, json.loads(raw) if raw else None


def test_one_connection_serves_request_after_request(server: LoopbackServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    resp, answer = _ask(conn, "POST", "/a", b"x" * 1000)
    assert answer == {"read": 1000, "path": "/a"}
    assert resp.getheader("Connection") is None and not resp.will_close
    first = conn.sock
    # the app reads 10 of 5000 bytes: the rest is skipped, the next request line is found
    _, answer = _ask(conn, "POST", "/b?read=10", b"y" * 5000)
    assert answer == {"read": 10, "path": "/b"}
    _, answer = _ask(conn, "GET", "/c")
    assert answer == {"read": 0, "path": "/c"}
    assert conn.sock is first  # never reconnected
    conn.close()


def test_chunked_bodies_both_ways(server: LoopbackServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    # an iterable body without a length: http.client sends it chunked
    resp, answer = _ask(conn, "PUT", "/up?read=3", iter([b"abcd", b"efgh"]))
    assert answer == {"read": 3, "path": "/up"}  # the unread chunks skipped
    resp, answer = _ask(conn, "GET", "/down?stream")
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert answer == {"read": 0, "path": "/down"}
    first = conn.sock
    _, answer = _ask(conn, "GET", "/again")
    assert answer["path"] == "/again" and conn.sock is first
    conn.close()


def test_client_asking_to_close_is_answered_and_closed(server: LoopbackServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    resp, _ = _ask(conn, "GET", "/bye", headers={"Connection": "close"})
    assert resp.getheader("Connection") == "close" and resp.will_close


def test_stop_ends_kept_connections() -> None:
    srv = LoopbackServer(_app, 0, "test-loopback-stop")
    srv.start()
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    resp, _ = _ask(conn, "GET", "/x")
    assert not resp.will_close
    srv.stop()
    # the server ended its side: the next read sees the end of the stream
    assert conn.sock.recv(4096) == b""
    conn.close()


def test_oss2_reuses_one_connection(tmp_path: Path) -> None:
    srv = EmulatorServer(OssApp(KeyRing({"test-ak": ("test-secret", None)}), tmp_path)).start()
    try:
        session = oss2.Session()
        session.session.trust_env = False  # no proxy from the environment for loopback
        bucket = oss2.Bucket(oss2.Auth("test-ak", "test-secret"), srv.url, "keepalive",
                             session=session)
        bucket.create_bucket()
        for n in range(5):
            bucket.put_object(f"k{n}", b"v" * n)
            assert bucket.get_object(f"k{n}").read() == b"v" * n
        assert len(srv._live) == 1  # one kept connection served all eleven requests
    finally:
        srv.stop()


@pytest.mark.parametrize("block", [
    b"Host: x\r\nContent-Type: text/plain\r\nx-oss-meta-my_key: a b \r\nX-Dup: 1\r\nx-dup: 2\r\n",
    b"Host: x\r\nX-Folded: first\r\n  second\r\n",  # obs-fold: the standard parser's way
    b"Host: x\r\nno colon here\r\nX-After: 1\r\n",
    b"Host:x\r\nX-Empty:\r\nX-Tabs:\t\tv\t\r\n",
])
def test_headers_parse_as_the_standard_library_parses_them(block: bytes) -> None:
    from local.http11 import _fast_message

    lines = [line + b"\n" for line in block.split(b"\n") if line] + [b"\r\n"]
    standard = http.client.parse_headers(io.BytesIO(b"".join(lines)))
    fast = _fast_message(lines)
    assert fast.items() == standard.items()
    assert fast.get("x-dup") == standard.get("x-dup") and fast.get_all("X-Dup") == \
        standard.get_all("X-Dup")


def test_expect_100_continue_is_answered_once(server: LoopbackServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in answer
        assert answer.endswith(b'{"read": 3, "path": "/e"}')


class _BothEnvirons(LoopbackRequestHandler):
    """Builds each plain request's environ both ways and keeps them for the test."""

    seen: ClassVar[list[tuple[dict[str, Any], dict[str, Any]]]] = []

    def _plain_environ(self) -> Any:
        lean = super()._plain_environ()
        self.seen.append((dict(lean), WSGIRequestHandler.make_environ(self)))
        return lean


@contextlib.contextmanager
def _werkzeug_server(handler: type[WSGIRequestHandler]) -> Iterator[tuple[str, int]]:
    """``_app`` served by werkzeug's own threaded server with ``handler``; its address."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, _app, threaded=True, request_handler=handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[:2]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("target, headers", [
    ("/b/k%C3%BC%20x?acl&x-oss-date=1&empty=", {"X-Dup": "1", "Content-Type": "text/plain"}),
    ("/b//a/./c%2F?q=%E4%B8%AD", {"x-oss-meta-my_key": "v", "Content-Length": "0"}),
    ("/", {"Host": "h:1", "X-Folded": "a\r\n b"}),
])
def test_the_plain_environ_is_werkzeugs(target: str, headers: dict[str, str]) -> None:
    _BothEnvirons.seen = []
    with _werkzeug_server(_BothEnvirons) as address, \
            socket.create_connection(address, timeout=10) as sock:
        block = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {target} HTTP/1.1\r\nX-Dup: 2\r\n{block}\r\n".encode("latin-1"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    [(lean, standard)] = _BothEnvirons.seen
    assert lean.pop("wsgi.input") is standard.pop("wsgi.input")
    assert lean == standard


class _CountedWrites(LoopbackRequestHandler):
    """Keeps every write to its connection (then passes it on) for the test."""

    writes: ClassVar[list[bytes]] = []

    def setup(self) -> None:
        super().setup()
        wfile, writes = self.wfile, self.writes

        class Recorder:
            def write(self, data: bytes) -> int:
                writes.append(bytes(data))
                return wfile.write(data)

            def flush(self) -> None:
                wfile.flush()

        self.wfile = Recorder()  # type: ignore[assignment]


def test_an_answers_head_and_body_go_out_in_one_write() -> None:
    _CountedWrites.writes = []
    with _werkzeug_server(_CountedWrites) as address, \
            socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(65536)
    [first] = _CountedWrites.writes  # the status line, the headers and the body together
    assert first == answer
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'"path": "/one"}')
    head = first.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[1].startswith(b"Server: ") and head[2].startswith(b"Date: ")
