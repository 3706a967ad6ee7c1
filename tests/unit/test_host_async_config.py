"""A function's AsyncInvokeConfig in the host's asynchronous invocations: retries, event age,
destinations (``local.host.async_invoke``). The queue-trigger path is in test_host_queue.py."""

from __future__ import annotations

import json
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
