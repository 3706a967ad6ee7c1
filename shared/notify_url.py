"""Where a ``Notify.Url`` may point, and the one POST made to it (no server-side request forgery).

A request names a URL and the collector, inside the deployment's network, POSTs to it: without
care that is a way to reach what only the function can reach — loopback, the VPC, and Alibaba
Cloud's instance metadata service at ``http://100.100.100.200/latest/meta-data/`` (RAM role
credentials among it: https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata).
So:

* the URL's host is resolved and **every** address it resolves to must be public. Refused
  (``REFUSED_V4`` / ``REFUSED_V6``, from the IANA IPv4 and IPv6 Special-Purpose Address
  Registries): loopback, private (RFC 1918, RFC 4193 ``fc00::/7``), link-local
  (``169.254/16``, ``fe80::/10``), shared address space (``100.64/10``, RFC 6598, where the
  metadata service lives), unspecified, multicast, broadcast, documentation, benchmarking and
  reserved ranges, and IPv6 forms that carry one of those IPv4 addresses (IPv4-mapped, NAT64
  ``64:ff9b::/96``, 6to4 ``2002::/16``) — unless the deployment lists the URL's host name,
  the address, or a network holding it in ``NotifyAllowedHosts``
  (``ASSISTFLOW_NOTIFY_ALLOWED_HOSTS``: host names, IPs and CIDRs, comma or space separated);
* checked at intake (``intake_violations``: nothing is created for a refused URL) and again before
  every send (``post``), because DNS can change in between. ``post`` resolves once, checks,
  and connects to the address it checked — never a second lookup — while ``Host``, TLS SNI
  and the certificate check use the URL's host name;
* redirects are never followed (``http.client`` has no notion of them): a 3xx answer is a
  failed attempt like any other non-2xx, and its ``Location`` is only reported;
* no proxy from the environment is used: the connection goes where the check said.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from shared.errors import CloudCallError, RequestInvalidError, Violation

if TYPE_CHECKING:
    from http.client import HTTPConnection

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> addresses as text; socket.getaddrinfo in a bounded thread by default
Resolver = Callable[[str, int], list[str]]

RESOLVE_TIMEOUT = 5.0  # seconds a DNS lookup may take before it counts as failed (transient)
SEND_TIMEOUT = 10.0  # seconds a whole POST may take: connect, send, status line and headers

_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network
# IANA IPv4 Special-Purpose Address Registry (https://www.iana.org/assignments/
# iana-ipv4-special-registry), the ranges not marked globally reachable, plus multicast
# (RFC 5771). Written out rather than taken from ``ipaddress.is_global``, whose answers
# differ between the Python versions that run this (3.10 on Function Compute, newer locally).
REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_v4("0.0.0.0/8"), "unspecified ('this network', RFC 791)"),
    (_v4("10.0.0.0/8"), "private (RFC 1918)"),
    (_v4("100.64.0.0/10"), "shared address space (RFC 6598; Alibaba Cloud's metadata service "
                           "is 100.100.100.200)"),
    (_v4("127.0.0.0/8"), "loopback (RFC 1122)"),
    (_v4("169.254.0.0/16"), "link-local (RFC 3927)"),
    (_v4("172.16.0.0/12"), "private (RFC 1918)"),
    (_v4("192.0.0.0/24"), "IETF protocol assignments (RFC 6890)"),
    (_v4("192.0.2.0/24"), "documentation (RFC 5737)"),
    (_v4("192.88.99.0/24"), "6to4 relay anycast (RFC 7526)"),
    (_v4("192.168.0.0/16"), "private (RFC 1918)"),
    (_v4("198.18.0.0/15"), "benchmarking (RFC 2544)"),
    (_v4("198.51.100.0/24"), "documentation (RFC 5737)"),
    (_v4("203.0.113.0/24"), "documentation (RFC 5737)"),
    (_v4("224.0.0.0/4"), "multicast (RFC 5771)"),
    (_v4("240.0.0.0/4"), "reserved or broadcast (RFC 1112, RFC 919)"),
)
# IANA IPv6 Special-Purpose Address Registry (https://www.iana.org/assignments/
# iana-ipv6-special-registry), not globally reachable, plus multicast (RFC 4291).
REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::/128"), "unspecified (RFC 4291)"),
    (_v6("::1/128"), "loopback (RFC 4291)"),
    (_v6("::/96"), "IPv4-compatible, deprecated (RFC 4291)"),
    (_v6("64:ff9b:1::/48"), "local-use NAT64 (RFC 8215)"),
    (_v6("100::/64"), "discard-only (RFC 6666)"),
    (_v6("2001::/23"), "IETF protocol assignments, Teredo among them (RFC 2928, RFC 4380)"),
    (_v6("2001:db8::/32"), "documentation (RFC 3849)"),
    (_v6("3fff::/20"), "documentation (RFC 9637)"),
    (_v6("fc00::/7"), "unique local, private (RFC 4193)"),
    (_v6("fe80::/10"), "link-local (RFC 4291)"),
    (_v6("fec0::/10"), "site-local (RFC 3879)"),
    (_v6("ff00::/8"), "multicast (RFC 4291)"),
)
NAT64 = _v6("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address


class UrlRefused(Exception):
    """The URL may not be notified: its form, or an address its host resolves to.

    ``rule`` names the check (``notifyUrl``, ``notifyAddress``, ``unresolvable``);
    ``transient`` is true when looking again later may pass (DNS did not answer in time)."""

    def __init__(self, rule: str, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class Allowed:
    """``NotifyAllowedHosts``: host names, addresses and networks that may be non-public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Allowed:
        hosts, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def covers(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


def refusal(address: Address) -> str:
    """Why ``address`` may not be notified ('' if it is a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None)
        if embedded is not None:
            why = refusal(embedded)
            return f"{why}, as {embedded} inside an IPv6 address" if why else ""
        return next((why for network, why in REFUSED_V6 if address in network), "")
    return next((why for network, why in REFUSED_V4 if address in network), "")


def parse_url(url: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, its host name (lower case, no brackets) and port; ``UrlRefused`` when
    it names no host, carries credentials, or has an invalid port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused("notifyUrl", "Notify.Url must be http:// or https:// and name a host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("notifyUrl", "Notify.Url must not carry user:password@ (it would end "
                         "up in logs; the POST is signed with the webhook secret instead)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("notifyUrl", "Notify.Url has an invalid port") from None
    return parts, parts.hostname.rstrip("."), port


def checked_addresses(host: str, port: int, allowed: Allowed,
                      resolve: Resolver | None = None) -> list[str]:
    """Every address ``host`` resolves to, once; ``UrlRefused`` if one of them is not public
    and not allowed (an allowed host name may resolve anywhere)."""
    texts = (resolve or resolve_host)(host, port)
    if not texts:
        raise UrlRefused("unresolvable", f"host {host} resolves to no address")
    if host.lower() in allowed.hosts:
        return texts
    for text in texts:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # no IPv6 zone in the check
        why = refusal(address)
        if why and not allowed.covers(address):
            raise UrlRefused("notifyAddress", f"host {host} resolves to {address}, {why}: "
                             "notifications go only to public addresses (a deployment can "
                             "allow others with NotifyAllowedHosts)")
    return texts


def intake_violations(url: str, allowed_hosts: Sequence[str],
                      resolve: Resolver | None = None) -> list[Violation]:
    """The intake's check of ``Notify.Url``, before anything is created: the violation that
    refuses it (403: an address not allowed), or ``RequestInvalidError`` (400: no host,
    credentials, a bad port, a host that does not resolve), or a transient ``CloudCallError``
    (503: DNS did not answer in time; retry)."""
    try:
        _, host, port = parse_url(url)
        checked_addresses(host, port, Allowed.parse(allowed_hosts), resolve)
    except UrlRefused as exc:
        if exc.transient:
            raise CloudCallError("ResolveNotifyUrl", "DnsUnavailable", exc.message,
                                 transient=True) from None
        violation = Violation("$.Notify.Url", exc.rule, exc.message, url)
        if exc.rule != "notifyAddress":
            raise RequestInvalidError([violation]) from None
        return [violation]
    return []


def resolve_host(host: str, port: int, timeout: float | None = None) -> list[str]:
    """``getaddrinfo`` for TCP, bounded by ``timeout`` (it has no timeout of its own).

    ``UrlRefused`` ``unresolvable``: transient when DNS failed for now (no answer in time,
    ``EAI_AGAIN``), permanent when the name does not exist."""
    found: list[str] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except (OSError, UnicodeError) as exc:
            failure.append(exc)

    thread = threading.Thread(target=lookup, name="notify-dns", daemon=True)
    thread.start()
    limit = RESOLVE_TIMEOUT if timeout is None else timeout
    thread.join(limit)
    if thread.is_alive():
        raise UrlRefused("unresolvable", f"DNS did not resolve {host} within {limit:g} s",
                         transient=True)
    if failure:
        exc = failure[0]
        transient = isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
        raise UrlRefused("unresolvable", f"host {host} does not resolve ({exc})", transient)
    return found


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    location: str  # a redirect's Location header (reported, never followed)


def post(url: str, body: bytes, headers: dict[str, str], allowed: Allowed,
         resolve: Resolver | None = None, timeout: float = SEND_TIMEOUT) -> Answer:
    """POST ``body`` to ``url`` at an address checked just now; the receiver's answer.

    ``UrlRefused`` when the URL or its addresses are refused (or DNS fails); ``OSError`` when
    the connection fails or the whole exchange takes longer than ``timeout``."""
    import http.client

    parts, host, port = parse_url(url)
    addresses = checked_addresses(host, port, allowed, resolve)
    connection = _pinned(parts.scheme, host, port, addresses, timeout)
    # The socket timeout bounds each read; the timer bounds the whole exchange (a receiver
    # sending one header byte every few seconds would otherwise hold the collector).
    timer = threading.Timer(timeout, _cut, (connection,))
    timer.daemon = True
    timer.start()
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body, {**headers, "Connection": "close"})
        response = connection.getresponse()
        return Answer(response.status, response.reason or "",
                      response.getheader("Location") or "")
    except http.client.HTTPException as exc:
        raise OSError(f"bad answer from {host}: {type(exc).__name__}") from exc
    finally:
        timer.cancel()
        connection.close()


def _cut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _pinned(scheme: str, host: str, port: int, addresses: list[str],
            timeout: float) -> HTTPConnection:
    """An ``http.client`` connection to ``host`` that connects only to ``addresses`` (the
    checked ones, tried in order), never to what a new lookup of ``host`` would give."""
    import http.client
    import ssl

    def connect_to_addresses() -> socket.socket:
        error: OSError = OSError(f"no address of {host} to connect to")
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout)
            except OSError as exc:
                error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error

    class Pinned(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = connect_to_addresses()

    class PinnedTls(http.client.HTTPSConnection):
        def connect(self) -> None:
            # SNI and the certificate check are for the URL's host, not the address.
            self.sock = context.wrap_socket(connect_to_addresses(), server_hostname=host)

    if scheme == "https":
        context = ssl.create_default_context()
        return PinnedTls(host, port, timeout=timeout, context=context)
    return Pinned(host, port, timeout=timeout)
