"""``shared.clients.oss_writes.Writes``: a collector look's objects from one thread, against the
local OSS through the collectors' own ``Results`` (and a scripted server for what the local OSS
does not do): every object stored, each chain in order, no more connections than its width;
a transient failure retried the usual way, a permanent one the chain's outcome; a kept
connection closed before answering sent again; a bucket off the lean road written as before."""

from __future__ import annotations

import socketserver
import ssl
from pathlib import Path

import oss2
import pytest
import requests

from local.emulators.faults import FaultRule
from local.emulators.oss import OssApp
from local.emulators.server import EmulatorServer
from shared.clients.oss_transport import LeanSession
from shared.clients.results import Results
from shared.config import Credentials, Settings
from shared.errors import CloudCallError
from shared.parallel import WRITES_AT_ONCE
from shared.results import Put
from tests.unit.oss_fixtures import AK, BUCKET, REGION, SK
from tests.unit.test_oss_lean_session import (  # noqa: F401 (fixtures)
    _url,
    scripted,
    self_signed_https,
)


def results_on(url: str, bucket: str = BUCKET) -> Results:
    return Results(Settings(region=REGION, credentials=Credentials(AK, SK), followup_queue="q",
                            results_bucket=bucket, oss_endpoint=url))


def chains(count: int, prefix: str = "r") -> list[list[Put]]:
    return [[Put(f"{prefix}/i-{n:03d}/output.txt", f"out {n}\n".encode(), "text/plain"),
             Put(f"{prefix}/i-{n:03d}/result.json", b'{"n": %d}' % n, "application/json")]
            for n in range(count)]


def stored(server: EmulatorServer, prefix: str) -> dict[str, float]:
    """Every key under ``prefix`` and when the emulator stored it."""
    answer = requests.get(f"{server.url}/_emulator/buckets/{BUCKET}/objects",
                          params={"prefix": prefix}, timeout=5)
    answer.raise_for_status()
    return {o["key"]: o["stored_at"] for o in answer.json()["objects"]}


def test_every_chain_is_stored_in_order_over_at_most_width_connections(
        server: EmulatorServer, bucket: oss2.Bucket) -> None:
    results = results_on(server.url)
    writes = results.writes()
    writes.extend(chains(30))
    writes.extend(chains(40)[30:])  # given while the first ones are written
    assert writes.settle() == [None] * 40
    when = stored(server, "r/")
    assert len(when) == 80
    for n in range(40):
        assert when[f"r/i-{n:03d}/output.txt"] <= when[f"r/i-{n:03d}/result.json"]
    assert bucket.get_object("r/i-007/result.json").read() == b'{"n": 7}'
    assert bucket.get_object("r/i-007/output.txt").headers["Content-Type"] == "text/plain"
    session = results.bucket.session
    assert isinstance(session, LeanSession)
    assert session.connections.opened <= WRITES_AT_ONCE and session.connections.requests == 0
    again = results.writes()  # the connections are kept for the next look
    again.extend(chains(5, "s"))
    assert again.settle() == [None] * 5
    assert session.connections.opened <= WRITES_AT_ONCE


def test_a_transient_failure_is_retried_the_usual_way_and_the_chain_goes_on(
        app: OssApp, server: EmulatorServer, bucket: oss2.Bucket) -> None:
    app.faults.add(FaultRule(action="PutObject", count=3, code="InternalError", status=503))
    writes = results_on(server.url).writes()
    writes.extend(chains(6))
    assert writes.settle() == [None] * 6
    assert len(stored(server, "r/")) == 12
    assert app.faults.fired["PutObject"] == 3


def test_a_permanent_refusal_is_the_chains_outcome_and_its_next_object_is_not_sent(
        server: EmulatorServer) -> None:
    writes = results_on(server.url, "no-such-bucket").writes()
    writes.extend(chains(3))
    outcomes = writes.settle()
    assert all(isinstance(o, CloudCallError) and o.error_code == "NoSuchBucket"
               and not o.transient for o in outcomes)
    calls = requests.get(f"{server.url}/_emulator/calls", timeout=5).json()
    assert calls["calls"].get("PutObject") == 3  # each chain's first object only


def test_failures_past_the_retries_are_the_chains_outcome(
        app: OssApp, server: EmulatorServer, bucket: oss2.Bucket) -> None:
    app.faults.add(FaultRule(action="PutObject", count=0, code="InternalError", status=500))
    writes = results_on(server.url).writes()
    writes.extend(chains(2))
    outcomes = writes.settle()
    assert all(isinstance(o, CloudCallError) and o.transient for o in outcomes)
    assert stored(server, "r/") == {}


PUT_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-oss-request-id: r1\r\n\r\n"


def test_a_kept_connection_closed_before_answering_is_replaced_and_the_write_sent_again(
        scripted: socketserver.ThreadingTCPServer) -> None:  # noqa: F811 (fixture)
    results = results_on(_url(scripted))
    scripted.answers[:] = [PUT_OK, PUT_OK]  # type: ignore[attr-defined]
    first = results.writes()
    first.extend([chains(1)[0]])
    assert first.settle() == [None]
    # the kept connection reads the next request and closes without a byte of an answer
    scripted.answers[:] = [None, PUT_OK, PUT_OK]  # type: ignore[attr-defined]
    second = results.writes()
    second.extend([chains(1, "s")[0]])
    assert second.settle() == [None]
    sent = scripted.requests  # type: ignore[attr-defined]
    assert [r.split(b" ", 2)[1].decode().replace("%2F", "/") for r in sent] == [
        f"/{BUCKET}/{key}" for key in ("r/i-000/output.txt", "r/i-000/result.json",
                                       "s/i-000/output.txt", "s/i-000/output.txt",
                                       "s/i-000/result.json")]


def test_an_answer_framed_otherwise_goes_the_usual_road(
        scripted: socketserver.ThreadingTCPServer) -> None:  # noqa: F811 (fixture)
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "close")
    scripted.answers[:] = [chunked, PUT_OK, PUT_OK]  # type: ignore[attr-defined]
    writes = results_on(_url(scripted)).writes()
    writes.extend([chains(1)[0]])
    assert writes.settle() == [None]
    assert len(scripted.requests) == 3  # type: ignore[attr-defined]  # output.txt twice


def test_a_bucket_off_the_lean_road_is_written_as_before(
        server: EmulatorServer, bucket: oss2.Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    results = results_on(server.url)
    monkeypatch.setattr(LeanSession, "serves_put", lambda self, bucket, data: False)
    writes = results.writes()
    writes.extend(chains(4))
    assert writes.settle() == [None] * 4
    assert len(stored(server, "r/")) == 8


def test_over_https_the_crc64_of_what_was_stored_is_checked(self_signed_https: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """TLS connections (the real cloud's), read from one thread; a CRC-64 that is not the
    body's fails the write as ``LeanSession.put_object`` fails it (oss2's InconsistentError,
    retried as transient), after every attempt."""
    results = results_on(self_signed_https)
    session = results.bucket.session
    assert isinstance(session, LeanSession)
    session.connections._tls = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    writes = results.writes()
    writes.extend(chains(2))
    outcomes = writes.settle()
    assert all(isinstance(o, CloudCallError) and "InconsistentError" in str(o) and o.transient
               for o in outcomes)
    assert session.connections.opened >= 2


def test_a_failure_of_the_writing_thread_itself_is_raised_by_settle(
        server: EmulatorServer, bucket: oss2.Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the one thread (here: building a request fails) is no chain's refusal: settle
    raises it, so the look fails instead of counting unwritten objects as stored."""
    def broken(*args: object) -> bytes:
        raise RuntimeError("request not built")

    monkeypatch.setattr(LeanSession, "put_request", broken)
    writes = results_on(server.url).writes()
    writes.extend(chains(3))
    with pytest.raises(RuntimeError, match="request not built"):
        writes.settle()
    assert stored(server, "r/") == {}
