"""The local cloud's HTTP server (``local.server.LoopbackServer``): keep-alive as real endpoints
offer it, request bodies framed correctly on a kept connection, and nothing left open by stop()."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oss2
import pytest

from local.emulators.keyring import KeyRing
from local.emulators.oss import OssApp
from local.emulators.server import EmulatorServer
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
