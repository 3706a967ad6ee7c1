"""``shared.clients.oss_transport.LeanSession`` under oss2, against the local OSS: every call
answers as through oss2's own session, oss2's CRC-64 check still runs, connections are kept,
large bodies, query calls and proxied calls keep requests' road, errors are oss2's."""

from __future__ import annotations

import http.server
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import oss2
import pytest

from local.emulators.server import EmulatorServer
from shared.clients.oss_signing import LeanAuthV4
from shared.clients.oss_transport import SMALL_BODY, LeanSession
from tests.unit.oss_fixtures import AK, BUCKET, REGION, SK, client_crc

KEYS = ["plain.json", "dir/ü ?&=+%#.txt", "a//b/./c"]


def lean_bucket(url: str, session: LeanSession | None = None) -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(AK, SK), url, BUCKET, region=REGION,
                       session=session or LeanSession())


@pytest.mark.parametrize("key", KEYS)
def test_object_calls_answer_as_through_oss2s_own_session(server: EmulatorServer,
                                                          bucket: oss2.Bucket, key: str) -> None:
    lean = lean_bucket(server.url)
    put = lean.put_object(key, b'{"a": 1}', headers={"Content-Type": "application/json",
                                                     "x-oss-meta-who": "lean"})
    assert put.status == 200 and put.crc == client_crc(b'{"a": 1}')
    got = bucket.get_object(key)  # written by the lean session, read by the default one
    assert got.read() == b'{"a": 1}'
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["x-oss-meta-who"] == "lean"
    again = lean.get_object(key)
    assert again.read() == b'{"a": 1}' and again.headers["ETag"] == got.headers["ETag"]
    assert lean.get_object(key, byte_range=(1, 3)).read() == b'"a"'
    assert lean.object_exists(key)  # a query call: oss2's own road
    with pytest.raises(oss2.exceptions.OssError) as taken:
        lean.put_object(key, b"", headers={"x-oss-forbid-overwrite": "true"})
    assert (taken.value.status, taken.value.code) == (409, "FileAlreadyExists")
    assert lean.delete_object(key).status == 204
    with pytest.raises(oss2.exceptions.NoSuchKey):
        lean.get_object(key)
    assert not bucket.object_exists(key)


def test_connections_are_kept_across_every_kind_of_answer(server: EmulatorServer,
                                                          bucket: oss2.Bucket) -> None:
    session = LeanSession()
    lean = lean_bucket(server.url, session)
    for n in range(20):
        lean.put_object(f"k/{n}", b"x" * n)  # 200, empty body
        assert lean.get_object(f"k/{n}").read() == b"x" * n  # 200 with a body
        with pytest.raises(oss2.exceptions.NoSuchKey):  # 404 with an XML body
            lean.get_object(f"missing/{n}")
        lean.delete_object(f"k/{n}")  # 204
    assert session.connections.requests == 80
    assert session.connections.opened == 1


def test_an_answer_closed_before_its_end_does_not_leave_bytes_on_a_kept_connection(
        server: EmulatorServer, bucket: oss2.Bucket) -> None:
    lean = lean_bucket(server.url)
    lean.put_object("long", b"x" * 100_000)
    for _ in range(3):
        partial = lean.get_object("long")
        assert partial.read(10) == b"x" * 10
        partial.close()  # 99,990 bytes never read
        assert lean.get_object("long").read() == b"x" * 100_000
        assert lean.put_object("small", b"y").status == 200


def test_large_bodies_and_streams_keep_requests_road(server: EmulatorServer,
                                                     bucket: oss2.Bucket) -> None:
    session = LeanSession()
    lean = lean_bucket(server.url, session)
    big = bytes(range(256)) * (SMALL_BODY // 256 + 1)
    assert lean.put_object("big.bin", big).crc == client_crc(big)
    lean.put_object("stream.bin", iter([b"ab", b"cd"]))  # an iterable: chunked, by requests
    assert lean.get_object("big.bin").read() == big
    assert lean.get_object("stream.bin").read() == b"abcd"
    assert session.connections.requests == 2  # only the two GETs went the lean road


def test_a_proxy_in_the_environment_is_honoured(server: EmulatorServer, bucket: oss2.Bucket,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    through_proxy = lean_bucket(server.url, LeanSession(direct=False))
    with pytest.raises(oss2.exceptions.RequestError):  # requests sent it to the proxy
        through_proxy.put_object("p", b"x")
    assert lean_bucket(server.url).put_object("p", b"x").status == 200  # direct: no proxy


def test_network_errors_are_oss2_request_errors() -> None:
    lean = lean_bucket("http://127.0.0.1:9")
    with pytest.raises(oss2.exceptions.RequestError) as failed:
        lean.put_object("k", b"x")
    assert failed.value.status == oss2.exceptions.OSS_REQUEST_ERROR_STATUS


class _WrongCrc(http.server.BaseHTTPRequestHandler):
    """Answers every PUT 200 with a CRC-64 that is not the body's."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:  # http.server calls do_<METHOD>
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("x-oss-hash-crc64ecma", "1")
        self.send_header("x-oss-request-id", "wrong-crc")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serving(scheme: str, wrap: Callable[[socket.socket], socket.socket] | None = None
             ) -> Iterator[str]:
    """A ``_WrongCrc`` server on loopback (its socket through ``wrap``), for a fixture."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WrongCrc)
    if wrap is not None:
        httpd.socket = wrap(httpd.socket)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"{scheme}://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def wrong_crc_server() -> Iterator[str]:
    yield from _serving("http")


def test_oss2s_crc_check_still_runs(wrong_crc_server: str) -> None:
    lean = lean_bucket(wrong_crc_server)
    with pytest.raises(oss2.exceptions.InconsistentError):
        lean.put_object("k", b"the body")


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on loopback whose certificate no CA signed (answers every PUT 200)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    yield from _serving("https", lambda sock: context.wrap_socket(sock, server_side=True))


def test_https_certificates_are_checked_as_requests_checks_them(self_signed_https: str) -> None:
    """The lean road verifies the server's certificate (certifi's bundle, as requests): a
    certificate no CA signed is refused before any byte of the object is sent."""
    with pytest.raises(oss2.exceptions.RequestError) as lean:
        lean_bucket(self_signed_https).put_object("k", b"secret result")
    assert "CERTIFICATE_VERIFY_FAILED" in str(lean.value)
    default = oss2.Bucket(oss2.AuthV4(AK, SK), self_signed_https, BUCKET, region=REGION)
    with pytest.raises(oss2.exceptions.RequestError) as through_requests:
        default.put_object("k", b"secret result")
    assert "CERTIFICATE_VERIFY_FAILED" in str(through_requests.value)


class _Scripted(socketserver.BaseRequestHandler):
    """Reads each request (headers, then a Content-Length body) and answers it with the next
    raw answer of ``server.answers``; ``None`` closes the connection without answering, and
    the connection also ends after an HTTP/1.0 answer or a ``(answer, "close")``."""

    def handle(self) -> None:
        rfile = self.request.makefile("rb")
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = rfile.readline()
                if not line:
                    return
                head += line
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            rfile.read(int(length.group(1)) if length else 0)
            self.server.requests.append(head)  # type: ignore[attr-defined]
            answer = self.server.answers.pop(0)  # type: ignore[attr-defined]
            if answer is None:
                return
            answer, close = answer if isinstance(answer, tuple) else (answer, "")
            self.request.sendall(answer)
            if close or answer.startswith(b"HTTP/1.0"):
                return


@pytest.fixture
def scripted() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    server.answers = []  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: socketserver.TCPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


GET_OK = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-oss-request-id: r1\r\n"
          b"Content-Type: text/plain\r\n\r\nhello")


def test_chunked_close_framed_and_interim_answers_read_as_through_requests(
        scripted: socketserver.ThreadingTCPServer) -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-oss-meta-a: 1\r\n"
        b"x-oss-meta-a: 2\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nTrailer: x\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + GET_OK,
        b"HTTP/1.0 200 OK\r\n\r\nhello",  # framed by the end of the connection
    ]
    for session in (LeanSession(), oss2.Session()):
        scripted.answers[:] = list(answers)  # type: ignore[attr-defined]
        plain = oss2.Bucket(oss2.AnonymousAuth(), _url(scripted), BUCKET, session=session)
        first = plain.get_object("k")
        assert first.read() == b"hello" and first.headers["X-OSS-META-A"] == "1, 2"
        assert plain.get_object("k").read() == b"hello"
        assert plain.get_object("k").read() == b"hello"
    requests = scripted.requests  # type: ignore[attr-defined]
    assert b"Accept-Encoding: identity" in requests[0]  # no compressed answers


def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_once_more(
        scripted: socketserver.ThreadingTCPServer) -> None:
    session = LeanSession()
    plain = oss2.Bucket(oss2.AnonymousAuth(), _url(scripted), BUCKET, session=session)
    scripted.answers[:] = [GET_OK, GET_OK, None, GET_OK]  # type: ignore[attr-defined]
    assert plain.get_object("k").read() == b"hello"
    assert plain.get_object("k").read() == b"hello"  # the kept connection
    # the server reads the next request and closes without a byte of an answer: sent again
    assert plain.get_object("k").read() == b"hello"
    assert session.connections.opened == 2 and len(scripted.requests) == 4  # type: ignore[attr-defined]
    # on a new connection nothing is sent twice: the error is oss2's
    scripted.answers[:] = [None]  # type: ignore[attr-defined]
    fresh = oss2.Bucket(oss2.AnonymousAuth(), _url(scripted), BUCKET, session=LeanSession())
    with pytest.raises(oss2.exceptions.RequestError):
        fresh.get_object("k")


def test_a_body_cut_short_is_a_request_error_and_its_connection_is_not_kept(
        scripted: socketserver.ThreadingTCPServer) -> None:
    session = LeanSession()
    plain = oss2.Bucket(oss2.AnonymousAuth(), _url(scripted), BUCKET, session=session)
    scripted.answers[:] = [  # type: ignore[attr-defined]
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhell", "close"), GET_OK]
    with pytest.raises(oss2.exceptions.RequestError):
        plain.get_object("k").read()
    assert plain.get_object("k").read() == b"hello"
    assert session.connections.opened == 2


def test_an_answer_that_never_comes_times_out_as_a_request_error(
        scripted: socketserver.ThreadingTCPServer) -> None:
    scripted.answers[:] = [b"HTTP/1.1 200 OK\r\n"]  # type: ignore[attr-defined]  # then silence
    plain = oss2.Bucket(oss2.AnonymousAuth(), _url(scripted), BUCKET, session=LeanSession(),
                        connect_timeout=0.5)
    with pytest.raises(oss2.exceptions.RequestError) as late:
        plain.get_object("k")
    assert "timed out" in str(late.value)


def lean_signed(url: str, session: LeanSession | None = None) -> oss2.Bucket:
    """A bucket as ``shared.clients.results`` builds it: LeanAuthV4 on a LeanSession."""
    return oss2.Bucket(LeanAuthV4(AK, SK), url, BUCKET, region=REGION,
                       session=session or LeanSession())


def _unsigned(head: bytes) -> bytes:
    """A request head without its time and what depends on it (date, signature)."""
    return b"\r\n".join(line for line in head.split(b"\r\n")
                        if not line.lower().startswith((b"x-oss-date:", b"authorization:")))


def test_a_lean_put_sends_the_bytes_put_object_sends(
        scripted: socketserver.ThreadingTCPServer) -> None:
    ok = (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-oss-request-id: r1\r\n"
          b"x-oss-hash-crc64ecma: %d\r\n\r\n")
    bucket = lean_signed(_url(scripted))
    for key, headers in (("dir/ü ?&=+%#.json", {"Content-Type": "application/json"}),
                         ("claim", {"Content-Type": "application/octet-stream",
                                    "x-oss-forbid-overwrite": "true"}),
                         ("guessed.html", {})):  # no Content-Type: one from the key, as oss2
        body = f"body of {key}".encode()
        scripted.answers[:] = [ok % client_crc(body)] * 2  # type: ignore[attr-defined]
        scripted.requests.clear()  # type: ignore[attr-defined]
        bucket.put_object(key, body, headers=dict(headers))
        bucket.session.put_object(bucket, key, body, headers)
        through_oss2, lean = scripted.requests  # type: ignore[attr-defined]
        assert _unsigned(lean) == _unsigned(through_oss2)
        assert b"x-oss-date:" in lean and b"authorization: OSS4-HMAC-SHA256 " in lean
    assert b"Content-Type: text/html" in lean


def test_a_lean_put_is_checked_and_refused_as_put_object_is(server: EmulatorServer,
                                                             bucket: oss2.Bucket) -> None:
    session = LeanSession()
    lean = lean_signed(server.url, session)
    session.put_object(lean, "k", b'{"a": 1}', {"Content-Type": "application/json"})
    got = bucket.get_object("k")  # the signature held: the local OSS checks every one
    assert (got.read(), got.headers["Content-Type"]) == (b'{"a": 1}', "application/json")
    forbid = {"x-oss-forbid-overwrite": "true"}
    with pytest.raises(oss2.exceptions.OssError) as lean_refused:
        session.put_object(lean, "k", b"", forbid)
    with pytest.raises(oss2.exceptions.OssError) as oss2_refused:
        lean.put_object("k", b"", headers=forbid)
    assert type(lean_refused.value) is type(oss2_refused.value)
    assert (lean_refused.value.status, lean_refused.value.code) == (409, "FileAlreadyExists")
    session.put_object(lean, "k2", b"after a refusal", {})  # its connection is still good
    assert bucket.get_object("k2").read() == b"after a refusal"
    assert session.connections.opened == 1


def test_a_lean_put_checks_the_crc_and_fails_as_oss2_does(wrong_crc_server: str) -> None:
    lean = lean_signed(wrong_crc_server)
    with pytest.raises(oss2.exceptions.InconsistentError):
        lean.session.put_object(lean, "k", b"the body", {})
    unreachable = lean_signed("http://127.0.0.1:9")
    with pytest.raises(oss2.exceptions.RequestError):
        unreachable.session.put_object(unreachable, "k", b"x", {})


def test_a_lean_put_leaves_what_it_does_not_take_to_put_object(server: EmulatorServer,
                                                               bucket: oss2.Bucket) -> None:
    """Another signer, or a body over SMALL_BODY: oss2's own put_object, with its answer."""
    session = LeanSession()
    other, lean = lean_bucket(server.url, session), lean_signed(server.url, session)
    handed: list[str] = []  # the keys put_object itself was asked to write
    for each in (other, lean):
        own = each.put_object
        each.put_object = (  # type: ignore[method-assign]
            lambda key, *rest, _own=own, **named: (handed.append(key), _own(key, *rest, **named))[1])
    session.put_object(other, "v4", b"signed by oss2", {})  # oss2's AuthV4
    big = b"x" * (SMALL_BODY + 1)
    session.put_object(lean, "big", big, {})
    session.put_object(lean, "small", b"lean road", {})
    assert handed == ["v4", "big"]
    assert bucket.get_object("v4").read() == b"signed by oss2"
    assert bucket.get_object("big").read() == big
    assert bucket.get_object("small").read() == b"lean road"
