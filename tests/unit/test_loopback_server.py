"""The local cloud's HTTP server (``local.server.LoopbackServer`` over ``local.http11``):
keep-alive as real endpoints offer it, request bodies framed correctly on a kept connection,
and nothing left open by stop() — with a thread per connection and with one thread for all
(``one_thread``), where a request's latency is a timer that holds no other request."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import time
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
from local.server import LoopbackServer, Staged


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


class _StagedApp:
    """``_app`` for the one-thread server: ``?latency=S`` waits S seconds first, ``?wait``
    runs on a thread of its own and blocks until ``released`` is set, ``?boom`` fails."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        staged = self.stage(environ)
        time.sleep(staged.latency)
        return staged.rest(environ, start_response)  # type: ignore[return-value]

    def stage(self, environ: dict[str, Any]) -> Staged:
        query = environ["QUERY_STRING"]
        latency = float(query.split("latency=", 1)[1].split("&")[0]) \
            if "latency=" in query else 0.0
        if "boom" in query:
            def boom(environ: dict[str, Any], start_response: Any) -> list[bytes]:
                raise RuntimeError("boom")
            return Staged(latency, boom)
        if "wait" in query:
            def wait(environ: dict[str, Any], start_response: Any) -> list[bytes]:
                assert self.released.wait(10)
                return _app(environ, start_response)
            return Staged(latency, wait, waits=True)
        return Staged(latency, _app)


@pytest.fixture(params=["thread-per-connection", "one-thread"])
def server(request: pytest.FixtureRequest) -> Iterator[LoopbackServer]:
    one = request.param == "one-thread"
    srv = LoopbackServer(_StagedApp() if one else _app, 0, "test-loopback", one_thread=one)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def one_thread() -> Iterator[LoopbackServer]:
    srv = LoopbackServer(_StagedApp(), 0, "test-one-thread", one_thread=True)
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


@pytest.mark.parametrize("one", [False, True])
def test_stop_ends_kept_connections(one: bool) -> None:
    srv = LoopbackServer(_StagedApp(), 0, "test-loopback-stop", one_thread=one)
    srv.start()
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    resp, _ = _ask(conn, "GET", "/x")
    assert not resp.will_close
    srv.stop()
    # the server ended its side: the next read sees the end of the stream
    assert conn.sock.recv(4096) == b""
    conn.close()


def _read_answer(sock: socket.socket) -> bytes:
    """One answer of ``_app`` (its JSON ends with ``}``) from ``sock``."""
    answer = b""
    while not answer.endswith(b"}"):
        data = sock.recv(65536)
        assert data, f"connection closed after {answer!r}"
        answer += data
    return answer


def test_one_thread_answers_pipelined_requests_in_order(one_thread: LoopbackServer) -> None:
    with socket.create_connection((one_thread.host, one_thread.port), timeout=10) as sock:
        # two requests in one write: the second is in the server's buffer, not on the socket
        sock.sendall(b"POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
                     b"GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = b""
        while answers.count(b"}") < 2:
            data = sock.recv(65536)
            assert data
            answers += data
    first, second = answers.split(b"HTTP/1.1 200 ")[1:]
    assert first.endswith(b'{"read": 2, "path": "/p1"}')
    assert second.endswith(b'{"read": 0, "path": "/p2"}')


def test_one_thread_latency_holds_no_other_request(one_thread: LoopbackServer) -> None:
    with socket.create_connection((one_thread.host, one_thread.port), timeout=10) as slow, \
            socket.create_connection((one_thread.host, one_thread.port), timeout=10) as fast:
        begun = time.monotonic()
        slow.sendall(b"GET /slow?latency=1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # the slow request is staged first
        fast.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(fast).endswith(b'"path": "/fast"}')
        fast_took = time.monotonic() - begun
        assert _read_answer(slow).endswith(b'"path": "/slow"}')
        slow_took = time.monotonic() - begun
    assert fast_took < 0.9 <= 1.0 <= slow_took, (fast_took, slow_took)
    deadline = time.monotonic() + 5  # (counted once the answer is out)
    while one_thread.cpu.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert one_thread.cpu.requests == 2


def test_one_thread_runs_a_waiting_request_on_a_thread_of_its_own(
        one_thread: LoopbackServer) -> None:
    app = one_thread._server.app
    with socket.create_connection((one_thread.host, one_thread.port), timeout=10) as waiting, \
            socket.create_connection((one_thread.host, one_thread.port), timeout=10) as other:
        waiting.sendall(b"GET /w?wait HTTP/1.1\r\nHost: x\r\n\r\n")
        other.sendall(b"GET /o HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(other).endswith(b'"path": "/o"}')  # while /w still waits
        app.released.set()
        assert _read_answer(waiting).endswith(b'"path": "/w"}')
        # the connection came back to the loop: it serves the next request
        waiting.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(waiting).endswith(b'"path": "/again"}')


def test_one_thread_closes_a_connection_left_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    import local.server

    monkeypatch.setattr(local.server, "IDLE_TIMEOUT", 0.3)
    srv = LoopbackServer(_StagedApp(), 0, "test-one-thread-idle", one_thread=True)
    srv.start()
    try:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            sock.sendall(b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_answer(sock).endswith(b'"path": "/once"}')
            begun = time.monotonic()
            assert sock.recv(4096) == b""  # closed by the server, as a thread's read times out
            assert 0.3 <= time.monotonic() - begun < 5
        assert not srv._live
    finally:
        srv.stop()


def test_one_thread_survives_an_app_that_fails(one_thread: LoopbackServer) -> None:
    conn = http.client.HTTPConnection(one_thread.host, one_thread.port, timeout=10)
    conn.request("GET", "/x?boom")
    resp = conn.getresponse()
    assert resp.status == 500
    resp.read()
    conn.close()
    conn = http.client.HTTPConnection(one_thread.host, one_thread.port, timeout=10)
    _, answer = _ask(conn, "GET", "/after")
    assert answer == {"read": 0, "path": "/after"}
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


def test_oss_latency_and_a_faults_stall_hold_no_other_call(tmp_path: Path) -> None:
    """The OSS emulator is served from one thread: four PutObjects of 0.5 s latency each run
    side by side, and a GetObject stalled 1 s by a fault rule (answered on a thread of its
    own) holds no other call either."""
    from local.emulators.faults import FaultRule

    app = OssApp(KeyRing({"test-ak": ("test-secret", None)}), tmp_path)
    assert app.one_thread
    srv = EmulatorServer(app).start()
    try:
        def bucket() -> oss2.Bucket:
            session = oss2.Session()
            session.session.trust_env = False
            return oss2.Bucket(oss2.Auth("test-ak", "test-secret"), srv.url, "timers",
                               session=session)

        bucket().create_bucket()
        bucket().put_object("stalled", b"s")
        app.pacing.latency = lambda action: 0.5 if action == "PutObject" else 0.0  # type: ignore[method-assign]
        app.faults.add(FaultRule(action="GetObject", delay=1.0))
        took: dict[str, float] = {}
        begun = time.monotonic()

        def timed(name: str, call: Any) -> None:
            call()
            took[name] = time.monotonic() - begun

        threads = [threading.Thread(target=timed, args=(
            f"put{n}", lambda n=n: bucket().put_object(f"k{n}", b"v"))) for n in range(4)]
        threads.append(threading.Thread(target=timed, args=(
            "stalled", lambda: bucket().get_object("stalled").read())))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert set(took) == {"put0", "put1", "put2", "put3", "stalled"}
        puts = [took[f"put{n}"] for n in range(4)]
        # one after the other, four puts would take 2 s; the stall 1 s more
        assert min(puts) >= 0.5 and max(puts) < 1.8, took
        assert 1.0 <= took["stalled"] < 2.0, took
        assert [o.key for o in oss2.ObjectIterator(bucket())] == [
            "k0", "k1", "k2", "k3", "stalled"]
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
