"""Notify.Url: which addresses are refused, the intake's answers, and the pinned POST."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from shared import notify_url
from shared.errors import CloudCallError, RequestInvalidError
from shared.notify_url import Allowed, UrlRefused, intake_violations, post, refusal

REFUSED = [
    "100.100.100.200",  # Alibaba Cloud's metadata service (shared address space)
    "100.64.0.1", "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:100.100.100.200",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
]
PUBLIC = ["8.8.8.8", "47.96.1.1", "100.128.0.1", "172.32.0.1", "2606:4700::1111",
          "64:ff9b::808:808", "2400:3200::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == ""


def resolver(*answers: list[str]) -> Any:
    """A resolver answering ``answers`` in turn (the last one again after that)."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def test_the_metadata_service_is_refused_at_intake_with_its_path() -> None:
    [violation] = intake_violations("http://100.100.100.200/latest/meta-data/", ())
    assert violation.path == "$.Notify.Url" and violation.rule == "notifyAddress"
    assert "100.100.100.200" in violation.message and "NotifyAllowedHosts" in violation.message


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    [violation] = intake_violations("https://hooks.example.com/x", (),
                                    resolver(["203.0.114.9", "10.0.0.7"]))
    assert "10.0.0.7" in violation.message and "private" in violation.message


def test_the_deployment_can_allow_hosts_addresses_and_networks() -> None:
    inside = resolver(["10.20.30.40"])
    assert intake_violations("http://hooks.internal/x", ("hooks.internal",), inside) == []
    assert intake_violations("http://hooks.internal/x", ("10.20.0.0/16",), inside) == []
    assert intake_violations("http://hooks.internal/x", ("10.20.30.40",), inside) == []
    assert intake_violations("http://hooks.internal/x", ("10.21.0.0/16",), inside)
    assert intake_violations("http://other.internal/x", ("hooks.internal",), inside)


def test_a_public_host_is_accepted() -> None:
    assert intake_violations("https://hooks.example.com:8443/done?x=1", (),
                             resolver(["203.0.114.9"])) == []


@pytest.mark.parametrize("url", ["http://user:secret@hooks.example.com/",
                                 "http://hooks.example.com:99999/", "http:///nohost"])
def test_urls_without_a_usable_host_are_invalid(url: str) -> None:
    with pytest.raises(RequestInvalidError) as info:
        intake_violations(url, (), resolver(["203.0.114.9"]))
    assert info.value.violations[0].path == "$.Notify.Url"


def test_a_host_that_does_not_resolve_is_invalid() -> None:
    with pytest.raises(RequestInvalidError) as info:
        intake_violations("http://nowhere.invalid/", ())
    assert info.value.violations[0].rule == "unresolvable"


def test_dns_that_does_not_answer_in_time_is_a_transient_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: blocked.wait(5) and [])
    with pytest.raises(UrlRefused) as info:
        notify_url.resolve_host("slow.example.com", 80, timeout=0.2)
    assert info.value.transient
    monkeypatch.setattr(notify_url, "RESOLVE_TIMEOUT", 0.2)
    with pytest.raises(CloudCallError) as error:
        intake_violations("http://slow.example.com/", ())
    assert error.value.transient and error.value.status == 503
    blocked.set()


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every request; answers ``status`` (with ``location``)."""

    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []
    status: ClassVar[int] = 204
    location: ClassVar[str] = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(("POST", self.path, dict(self.headers.items()), body))
        self.send_response(self.status)
        if self.location:
            self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers.items()), b""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    Receiver.seen, Receiver.status, Receiver.location = [], 204, ""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


LOCAL = Allowed.parse(["127.0.0.1"])


def test_the_post_goes_to_the_checked_address_with_the_urls_host(receiver: int) -> None:
    # The name resolves to 127.0.0.1 once, then (DNS rebinding) to the metadata service: the
    # connection goes to the address that was checked, and the lookup is made only once.
    rebinding = resolver(["127.0.0.1"], ["100.100.100.200"])
    answer = post(f"http://hooks.example.com:{receiver}/done?id=7", b'{"a": 1}',
                  {"Content-Type": "application/json"}, LOCAL, rebinding)
    assert answer.status == 204
    assert rebinding.calls == ["hooks.example.com"]
    [(method, path, headers, body)] = Receiver.seen
    assert (method, path, body) == ("POST", "/done?id=7", b'{"a": 1}')
    assert headers["Host"] == f"hooks.example.com:{receiver}"


def test_a_redirect_is_an_answer_and_never_followed(receiver: int) -> None:
    Receiver.status, Receiver.location = 302, f"http://127.0.0.1:{receiver}/elsewhere"
    answer = post(f"http://127.0.0.1:{receiver}/hook", b"{}", {"X-Assistflow-Signature": "s"},
                  LOCAL)
    assert (answer.status, answer.location) == (302, Receiver.location)
    assert [(m, p) for m, p, _, _ in Receiver.seen] == [("POST", "/hook")]  # nothing more


def test_at_send_time_a_refused_address_is_never_connected_to(receiver: int) -> None:
    with pytest.raises(UrlRefused) as info:
        post(f"http://hooks.example.com:{receiver}/", b"{}", {}, LOCAL, resolver(["10.0.0.9"]))
    assert info.value.rule == "notifyAddress"
    assert Receiver.seen == []


def test_a_receiver_that_never_answers_ends_the_attempt_in_time() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        with pytest.raises(OSError):
            post(f"http://127.0.0.1:{silent.getsockname()[1]}/", b"{}", {}, LOCAL, timeout=0.5)
    finally:
        silent.close()


def test_https_checks_the_certificate_of_the_urls_host(monkeypatch: pytest.MonkeyPatch,
                                                       receiver: int) -> None:
    wrapped: list[str | None] = []

    class Context(ssl.SSLContext):
        def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
            wrapped.append(kwargs.get("server_hostname"))
            sock.close()
            raise ssl.SSLCertVerificationError("test: stop here")

    monkeypatch.setattr(ssl, "create_default_context",
                        lambda: Context(ssl.PROTOCOL_TLS_CLIENT))
    with pytest.raises(OSError):
        post(f"https://hooks.example.com:{receiver}/", b"{}", {}, LOCAL, resolver(["127.0.0.1"]))
    assert wrapped == ["hooks.example.com"]
