"""A function's AsyncInvokeConfig in the host's asynchronous invocations: retries, event age,
destinations (``local.host.async_invoke``). The queue-trigger path is in test_host_queue.py."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from local.host.async_invoke import AsyncInvoker, AsyncPolicy, DestinationError
from local.host.runtime import FunctionRuntime, Invocation


class _Function:
    """A function that fails its first ``failures`` attempts, then answers ``{"done": n}``."""

    def __init__(self, failures: int) -> None:
        self.spec = SimpleNamespace(name="fn")
        self.failures = failures
        self.attempts: list[str] = []

    def invoke(self, event: bytes, request_id: str | None = None) -> Invocation:
        self.attempts.append(str(request_id))
        if len(self.attempts) <= self.failures:
            return Invocation(str(request_id), "fn", False, 1.0,
                              error={"errorType": "RuntimeError", "errorMessage": "not yet"})
        return Invocation(str(request_id), "fn", True, 1.0, result={"done": len(self.attempts)})


def _invoker(policy: AsyncPolicy, sent: list[tuple[str, bytes]] | None = None,
             fail_send: bool = False) -> AsyncInvoker:
    def send(queue: str, body: bytes) -> None:
        if fail_send:
            raise OSError("the queue is unreachable")
        assert sent is not None
        sent.append((queue, body))

    return AsyncInvoker(retry_delay=0.05, policies={"fn": policy}, send=send,
                        region="cn-hangzhou", account_id="1234567890123456")


def _run(invoker: AsyncInvoker, function: _Function, **kwargs: Any) -> Invocation:
    try:
        return invoker.run(cast(FunctionRuntime, function), b'{"job": 1}', "req-1", **kwargs)
    finally:
        invoker.stop()


def test_the_retries_of_the_config_then_its_failure_destination() -> None:
    sent: list[tuple[str, bytes]] = []
    function = _Function(failures=10)
    pauses: list[float] = []
    inv = _run(_invoker(AsyncPolicy(retries=2, on_failure="dlq"), sent), function,
               before_retry=pauses.append)
    assert not inv.ok and function.attempts == ["req-1"] * 3  # FC keeps the request id
    assert pauses == [0.05, 0.1]  # doubling
    ((queue, body),) = sent
    record = json.loads(body)
    assert queue == "dlq"
    assert record["requestContext"] == {
        "requestId": "req-1", "functionArn": "acs:fc:cn-hangzhou:1234567890123456:functions/fn",
        "condition": "UnhandledInvocationError", "approximateInvokeCount": 3}
    assert record["requestPayload"] == '{"job": 1}'
    assert record["responseContext"] == {"statusCode": 200, "functionError": "RuntimeError"}
    assert json.loads(record["responsePayload"])["errorMessage"] == "not yet"


def test_an_event_too_old_for_another_retry_goes_to_its_destination_at_once() -> None:
    sent: list[tuple[str, bytes]] = []
    function = _Function(failures=10)
    # retries 8, but the second pause (0.1 s) would take the event past its 0.1 s of age
    _run(_invoker(AsyncPolicy(retries=8, max_age=0.1, on_failure="dlq"), sent), function)
    assert len(function.attempts) == 2
    assert json.loads(sent[0][1])["requestContext"]["approximateInvokeCount"] == 2


def test_a_success_after_a_retry_reaches_the_success_destination_only() -> None:
    sent: list[tuple[str, bytes]] = []
    inv = _run(_invoker(AsyncPolicy(retries=3, on_failure="dlq", on_success="done"), sent),
               _Function(failures=1))
    assert inv.ok
    ((queue, body),) = sent
    record = json.loads(body)
    assert queue == "done" and record["requestContext"]["approximateInvokeCount"] == 2
    assert json.loads(record["responsePayload"]) == {"done": 2}


def test_without_a_destination_a_failure_is_dropped_as_fc_drops_it() -> None:
    sent: list[tuple[str, bytes]] = []
    inv = _run(_invoker(AsyncPolicy(retries=1), sent), _Function(failures=10))
    assert not inv.ok and sent == []


def test_a_record_that_cannot_be_sent_is_an_error_the_caller_sees() -> None:
    # The queue trigger then leaves the message in its queue, so it is not lost.
    with pytest.raises(DestinationError, match="could not send the invocation record to dlq"):
        _run(_invoker(AsyncPolicy(retries=0, on_failure="dlq"), fail_send=True),
             _Function(failures=10))


# --- submitted invocations: each function's own queue ----------------------------------------

class _Slow:
    """A function of ``instances`` instances that takes ``seconds`` per invocation and fails the
    attempts whose event is ``b"fail"``; it records when each attempt began and ended."""

    def __init__(self, name: str, instances: int, seconds: float) -> None:
        self.spec = SimpleNamespace(name=name)
        self.max_instances = instances
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0  # the most attempts that ran at once
        self.log: list[tuple[str, float, float]] = []

    def invoke(self, event: bytes, request_id: str | None = None) -> Invocation:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        began = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.log.append((str(request_id), began, time.monotonic()))
        if event == b"fail":
            return Invocation(str(request_id), self.spec.name, False, 1.0,
                              error={"errorType": "RuntimeError", "errorMessage": "no"})
        return Invocation(str(request_id), self.spec.name, True, 1.0, result={})


def _done_when(count: int) -> tuple[list[Invocation], threading.Event, Any]:
    finished: list[Invocation] = []
    all_done = threading.Event()

    def on_done(inv: Invocation) -> None:
        finished.append(inv)
        if len(finished) == count:
            all_done.set()

    return finished, all_done, on_done


def test_a_flood_of_one_functions_invocations_runs_as_wide_as_its_instances() -> None:
    """Forty invocations of a function of two instances — more than the pool has threads —
    run two at a time; one of another function, submitted after them, does not wait behind
    them (each function has its own queue, run as its instances free up)."""
    flood, other = _Slow("flood", 2, 0.02), _Slow("other", 2, 0.0)
    invoker = AsyncInvoker(retry_delay=0.05, workers=16)
    _, all_done, on_done = _done_when(41)
    try:
        for n in range(40):
            invoker.submit(cast(FunctionRuntime, flood), b"{}", f"f-{n}", on_done=on_done)
        invoker.submit(cast(FunctionRuntime, other), b"{}", "o-1", on_done=on_done)
        assert all_done.wait(10)
    finally:
        invoker.stop()
    assert flood.most == 2 and len(flood.log) == 40
    (_, other_began, _), = other.log
    assert other_began < max(end for _, _, end in flood.log) - 0.2, "other waited the flood out"
    assert invoker.accepted == 41


def test_a_retry_pause_holds_none_of_the_functions_instances() -> None:
    """A failing invocation's retries wait their pause out of the function's queue: the
    invocations behind it run meanwhile, on its only instance; its retries come back after
    its pause, with its request id, and its failure reaches the destination once."""
    function = _Slow("fn", 1, 0.01)
    sent: list[tuple[str, bytes]] = []
    invoker = AsyncInvoker(retry_delay=0.5, policies={"fn": AsyncPolicy(
        retries=1, on_failure="dlq")}, send=lambda queue, body: sent.append((queue, body)))
    finished, all_done, on_done = _done_when(4)
    try:
        invoker.submit(cast(FunctionRuntime, function), b"fail", "bad", on_done=on_done)
        for n in range(3):
            invoker.submit(cast(FunctionRuntime, function), b"{}", f"ok-{n}", on_done=on_done)
        assert all_done.wait(10)
    finally:
        invoker.stop()
    order = [request_id for request_id, _, _ in function.log]
    assert order == ["bad", "ok-0", "ok-1", "ok-2", "bad"], order
    assert function.log[-1][1] - function.log[0][2] >= 0.5  # the pause, between its attempts
    assert [i.request_id for i in finished if not i.ok] == ["bad"]
    ((queue, body),) = sent
    assert queue == "dlq" and json.loads(body)["requestContext"]["approximateInvokeCount"] == 2
