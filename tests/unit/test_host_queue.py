"""MNS-queue (EventBridge) triggers: redelivery, deletion on success, dead-letter queue.

Against the real MNS emulator; its clock is moved past the visibility timeout instead of
sleeping through it (tests/fixtures/host/queues.yml).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mns.queue import Message

from local.host.delivery_policy import DeliveryPolicy
from local.host.queue_trigger import QueueTrigger
from tests.fixtures.host.harness import HostHarness

VISIBILITY = 30  # queues.yml


@pytest.fixture
def queues(tmp_path: Path) -> Iterator[HostHarness]:
    with HostHarness(tmp_path, "queues.yml") as harness:
        yield harness
    assert harness.leftover_threads == []  # stop() ended every thread the host started


def _trigger(harness: HostHarness, name: str) -> QueueTrigger:
    assert harness.host is not None
    return harness.host.trigger(name, QueueTrigger)


def _wait(probe: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def _next_visibility_window(harness: HostHarness) -> None:
    harness.advance(VISIBILITY + 1)


# --- policy -------------------------------------------------------------------------------------
def test_run_options_map_to_delivery_counts() -> None:
    assert DeliveryPolicy.from_run_options(None).max_deliveries is None  # never dropped
    assert DeliveryPolicy.from_run_options({"errorsTolerance": "ALL"}).max_deliveries == 4
    dlq = {"deadLetterQueue": {"Arn": "acs:mns:cn-hangzhou:1:/queues/dead"}}
    policy = DeliveryPolicy.from_run_options(dlq)
    assert (policy.max_deliveries, policy.dead_letter_queue) == (4, "dead")
    decay = {**dlq, "retryStrategy": {"PushRetryStrategy": "EXPONENTIAL_DECAY_RETRY"}}
    assert DeliveryPolicy.from_run_options(decay).max_deliveries == 177
    explicit = {**dlq, "retryStrategy": {"MaximumRetryAttempts": 0}}
    assert DeliveryPolicy.from_run_options(explicit).max_deliveries == 1
    assert not policy.exhausted(3) and policy.exhausted(4) and policy.overdue(5)
    # the ARN without the slash (ROS "ARN") is accepted as well
    no_slash = {"deadLetterQueue": {"Arn": "acs:mns:cn-hangzhou:1:queues/dead"}}
    assert DeliveryPolicy.from_run_options(no_slash).dead_letter_queue == "dead"


@pytest.mark.parametrize("bad", [
    {"retryStrategy": {"PushRetryStrategy": "FOREVER"}},
    {"errorsTolerance": "SOME"},
    {"deadLetterQueue": {"Arn": "acs:mq:cn-shanghai:1:/instances/x/topic/t"}},
    {"retryStrategy": {"MaximumRetryAttempts": -1}},
])
def test_bad_run_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DeliveryPolicy.from_run_options(bad)


# --- delivery -----------------------------------------------------------------------------------
def test_a_successful_delivery_is_deleted_and_never_seen_again(queues: HostHarness) -> None:
    # Sent Base64-encoded (the SDK's default); the trigger's IsBase64Decode defaults to true.
    queues.queue("work-ok", encoding=True).send_message(Message("hello from a CMDB"))
    (seen,) = queues.wait_recorded("ok", 1)
    event = json.loads(seen["event"])
    assert event["type"] == "mns:Queue:SendMessage" and event["specversion"] == "1.0"
    assert event["source"] == "MNS-ok-ok"
    assert event["subject"] == "acs:mns:cn-hangzhou:1234567890123456:queues/work-ok"
    assert event["data"]["messageBody"] == "hello from a CMDB"
    assert event["data"]["messageId"] == event["id"]
    _wait(lambda: _trigger(queues, "ok").stats.delivered == 1)
    _wait(lambda: queues.peek_all("work-ok") == [])
    _next_visibility_window(queues)
    _next_visibility_window(queues)
    time.sleep(0.5)
    assert len(queues.recorded("ok")) == 1


def test_a_failed_delivery_comes_back_with_the_same_message(queues: HostHarness) -> None:
    body = base64.b64encode(b"stays encoded").decode()  # IsBase64Decode: false on this trigger
    queues.queue("work-flaky").send_message(Message(body))
    (first,) = queues.wait_recorded("flaky", 1)
    assert first["first"] is True
    _wait(lambda: _trigger(queues, "flaky").stats.failed == 1)
    # still in the queue, invisible until its visibility timeout passes
    (held,) = queues.peek_all("work-flaky")
    assert held["state"] == "inactive" and held["dequeue_count"] == 1
    _next_visibility_window(queues)
    first, second = queues.wait_recorded("flaky", 2)
    one, two = json.loads(first["event"]), json.loads(second["event"])
    assert one["data"]["messageId"] == two["data"]["messageId"]
    assert one["data"]["messageBody"] == two["data"]["messageBody"] == body
    assert second["first"] is False
    _wait(lambda: queues.peek_all("work-flaky") == [])  # deleted after the success


def _fail_until_dead_lettered(queues: HostHarness, function: str, trigger: str,
                              deliveries: int) -> None:
    for n in range(1, deliveries + 1):
        queues.wait_recorded(function, n)
        _wait(lambda n=n: _trigger(queues, trigger).stats.failed == n)
        if n < deliveries:
            _next_visibility_window(queues)


def test_a_message_that_always_fails_goes_to_the_dead_letter_queue(queues: HostHarness) -> None:
    # poison: MaximumRetryAttempts 2 -> 3 deliveries, then the DLQ
    queues.queue("work-poison").send_message(Message("not a follow-up at all"))
    _fail_until_dead_lettered(queues, "poison", "poison", 3)
    _wait(lambda: _trigger(queues, "poison").stats.dead_lettered == 1)
    assert queues.peek_all("work-poison") == []
    dead = queues.receive("work-dead-letters")
    assert dead is not None and dead.message_body == "not a follow-up at all"  # body unchanged
    # no fourth try
    _next_visibility_window(queues)
    time.sleep(0.5)
    assert len(queues.recorded("poison")) == 3
    ids = {json.loads(r["event"])["data"]["messageId"] for r in queues.recorded("poison")}
    assert len(ids) == 1


def test_backoff_retry_by_default_means_four_deliveries(queues: HostHarness) -> None:
    queues.queue("work-default-retry").send_message(Message("tried four times"))
    _fail_until_dead_lettered(queues, "default-retry", "default-retry", 4)
    _wait(lambda: _trigger(queues, "default-retry").stats.dead_lettered == 1)
    dead = queues.receive("work-dead-letters")
    assert dead is not None and dead.message_body == "tried four times"


def test_a_message_received_too_often_is_dead_lettered_without_another_try(
        tmp_path: Path) -> None:
    # Deliveries that never reported back (a host that died mid-invocation) still count:
    # the decision is made on MNS's DequeueCount.
    harness = HostHarness(tmp_path, "queues.yml")
    with harness:
        _trigger(harness, "poison").stop()  # take the poller out of the picture for now
        harness.queue("work-poison").send_message(Message("orphaned"))
        for _ in range(3):
            assert harness.receive("work-poison") is not None
            harness.advance(VISIBILITY + 1)
        assert harness.host is not None
        late = QueueTrigger("poison-again", "poison",
                            {"eventSourceConfig": {"eventSourceParameters": {
                                "sourceMNSParameters": {"QueueName": "work-poison"}}},
                             "runOptions": {"retryStrategy": {"MaximumRetryAttempts": 2},
                                            "deadLetterQueue": {"Arn": "acs:mns:r:1:/queues/"
                                                                       "work-dead-letters"}}},
                            harness.host.mns, "cn-hangzhou", "1", label=harness.host.label)
        late.attach(_trigger(harness, "poison").runtime)
        late.start()
        try:
            _wait(lambda: late.stats.dead_lettered == 1)
        finally:
            late.stop()
        assert harness.recorded("poison") == []  # the function never saw it
        dead = harness.receive("work-dead-letters")
        assert dead is not None and dead.message_body == "orphaned"
    assert harness.leftover_threads == []
