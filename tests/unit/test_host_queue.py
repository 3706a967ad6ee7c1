"""MNS-queue (EventBridge) triggers: redelivery, deletion on success, dead-letter queue.

Against the real MNS emulator; its clock is moved past the visibility timeout instead of
sleeping through it (tests/fixtures/host/queues.yml).
"""

from __future__ import annotations

import base64
import itertools
import json
import random
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
    """Past the queue's visibility timeout, and so past any BACKOFF_RETRY interval (10-20 s)."""
    harness.advance(VISIBILITY + 1)


def _hidden_for(harness: HostHarness, queue: str) -> float:
    """Seconds until the (only) message of ``queue`` is visible again, on the emulator's clock."""
    assert harness.mns_server is not None
    (message,) = harness.peek_all(queue)
    return float(message["next_visible_time"]) / 1000 - harness.mns_server.app.clock.now()


def _bodies(harness: HostHarness, function: str) -> list[str]:
    return [json.loads(r["event"])["data"]["messageBody"] for r in harness.recorded(function)]


# --- policy (EventBridge "Retry policies and dead-letter queues") ------------------------------
def test_the_default_is_three_backoff_retries_then_a_blocked_stream() -> None:
    policy = DeliveryPolicy.from_run_options(None)
    assert (policy.strategy, policy.max_deliveries, policy.tolerate_errors) == \
        ("BACKOFF_RETRY", 4, False)
    assert [policy.after_failure(n) for n in (1, 2, 3, 4)] == ["retry"] * 3 + ["block"]
    assert not policy.overdue(9)  # under NONE a restarted stream tries the event once more


def test_a_dead_letter_queue_is_used_only_when_errors_are_tolerated() -> None:
    dlq = {"deadLetterQueue": {"Arn": "acs:mns:cn-hangzhou:1:/queues/dead"}}
    strict = DeliveryPolicy.from_run_options(dlq)
    assert strict.dead_letter_queue == "dead" and strict.give_up() == "block"
    tolerant = DeliveryPolicy.from_run_options({**dlq, "errorsTolerance": "ALL"})
    assert tolerant.give_up() == "dead-letter" and tolerant.overdue(5) and not tolerant.overdue(4)
    assert DeliveryPolicy.from_run_options({"errorsTolerance": "ALL"}).give_up() == "discard"
    explicit = {**dlq, "retryStrategy": {"MaximumRetryAttempts": 0}}
    assert DeliveryPolicy.from_run_options(explicit).after_failure(1) == "block"
    # the ARN without the slash (ROS "ARN") is accepted as well
    no_slash = {"deadLetterQueue": {"Arn": "acs:mns:cn-hangzhou:1:queues/dead"}}
    assert DeliveryPolicy.from_run_options(no_slash).dead_letter_queue == "dead"


def test_backoff_retry_waits_a_random_10_to_20_seconds() -> None:
    policy = DeliveryPolicy.from_run_options({"retryStrategy": {"PushRetryStrategy":
                                                                "BACKOFF_RETRY"}})
    rng = random.Random(7)
    delays = {policy.retry_delay(n, rng) for n in range(1, 4) for _ in range(50)}
    assert min(delays) >= 10 and max(delays) <= 20 and len(delays) > 5


def test_exponential_decay_retry_is_176_retries_over_about_a_day() -> None:
    policy = DeliveryPolicy.from_run_options({"retryStrategy": {"PushRetryStrategy":
                                                                "EXPONENTIAL_DECAY_RETRY"}})
    delays = [policy.retry_delay(n) for n in range(1, policy.retries + 1)]
    assert len(delays) == 176
    assert delays[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert delays.count(512) == 167  # "the value 512 seconds is used for 167 retries"
    assert 23 * 3600 < sum(delays) <= 24 * 3600
    assert policy.after_failure(176) == "retry" and policy.after_failure(177) == "block"


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
                            {"asyncInvocationType": True,
                             "eventSourceConfig": {"eventSourceParameters": {
                                "sourceMNSParameters": {"QueueName": "work-poison"}}},
                             "runOptions": {"retryStrategy": {"MaximumRetryAttempts": 2},
                                            "errorsTolerance": "ALL",
                                            "deadLetterQueue": {"Arn": "acs:mns:r:1:/queues/"
                                                                       "work-dead-letters"}}},
                            harness.host.mns, "cn-hangzhou", "1", harness.host.invoker,
                            label=harness.host.label)
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


def test_a_failed_delivery_is_retried_on_the_backoff_schedule(queues: HostHarness) -> None:
    queues.queue("work-strict").send_message(Message("poison, retried in 10-20 s"))
    queues.wait_recorded("strict", 1)
    _wait(lambda: _trigger(queues, "strict").stats.failed == 1)
    _wait(lambda: _hidden_for(queues, "work-strict") <= 20)  # no longer the queue's 30 s
    assert 9 < _hidden_for(queues, "work-strict") <= 20
    queues.advance(9)
    time.sleep(0.5)
    assert len(queues.recorded("strict")) == 1  # not before its interval
    queues.advance(12)
    queues.wait_recorded("strict", 2)


def test_exponential_decay_retries_after_1_2_4_8_seconds(queues: HostHarness) -> None:
    # decay: EXPONENTIAL_DECAY_RETRY with MaximumRetryAttempts 4, errorsTolerance ALL + DLQ
    queues.queue("work-decay").send_message(Message("keeps failing"))
    for n, delay in enumerate([1, 2, 4, 8], start=1):
        queues.wait_recorded("decay", n)
        _wait(lambda n=n: _trigger(queues, "decay").stats.failed == n)
        _wait(lambda delay=delay: _hidden_for(queues, "work-decay") <= delay)
        assert delay - 1 < _hidden_for(queues, "work-decay") <= delay
        queues.advance(delay + 0.5)
    queues.wait_recorded("decay", 5)
    _wait(lambda: _trigger(queues, "decay").stats.dead_lettered == 1)
    dead = queues.receive("work-dead-letters")
    assert dead is not None and dead.message_body == "keeps failing"


def test_errors_tolerance_none_blocks_the_stream(queues: HostHarness) -> None:
    # strict: BACKOFF_RETRY, a deadLetterQueue, errorsTolerance left at NONE
    strict = queues.queue("work-strict")
    strict.send_message(Message("valid before"))
    queues.wait_recorded("strict", 1)
    strict.send_message(Message("poison pill"))
    for n in range(1, 5):  # the first delivery and 3 retries
        queues.wait_recorded("strict", 1 + n)
        _wait(lambda n=n: _trigger(queues, "strict").stats.failed == n)
        if n < 4:
            _next_visibility_window(queues)
    _wait(lambda: _trigger(queues, "strict").blocked.is_set())
    strict.send_message(Message("valid after"))
    for _ in range(3):
        _next_visibility_window(queues)
        time.sleep(0.4)
    assert _bodies(queues, "strict") == ["valid before"] + ["poison pill"] * 4
    # Nothing lost and nothing dead-lettered: both wait in the queue for the stream to restart.
    assert sorted(m["body"] for m in queues.peek_all("work-strict")) == \
        ["poison pill", "valid after"]
    assert queues.receive("work-dead-letters") is None
    assert _trigger(queues, "strict").stats.dead_lettered == 0


def test_a_restarted_stream_retries_its_blocking_message_once(tmp_path: Path) -> None:
    harness = HostHarness(tmp_path, "queues.yml")
    with harness:
        _trigger(harness, "strict").stop()  # deliver by hand below
        harness.queue("work-strict").send_message(Message("poison, blocked before"))
        for _ in range(4):  # its deliveries were used up before the restart
            assert harness.receive("work-strict") is not None
            harness.advance(VISIBILITY + 1)
        assert harness.host is not None
        again = QueueTrigger("strict-again", "strict", _trigger(harness, "strict").config,
                             harness.host.mns, "cn-hangzhou", "1", harness.host.invoker,
                             label=harness.host.label)
        again.attach(_trigger(harness, "strict").runtime)
        again.start()
        try:
            _wait(lambda: again.blocked.is_set())
        finally:
            again.stop()
        assert _bodies(harness, "strict") == ["poison, blocked before"]  # one more try only
        assert len(harness.peek_all("work-strict")) == 1
    assert harness.leftover_threads == []


# --- invocation method (asyncInvocationType, as FC 3.0's reference reads it) ------------------
def _runs(harness: HostHarness, function: str, count: int) -> list[tuple[float, float]]:
    return sorted((r["started"], r["ended"]) for r in harness.wait_recorded(function, count))


def test_a_synchronous_trigger_delivers_the_next_message_only_after_the_function_returned(
        queues: HostHarness) -> None:
    # FC's MNS-trigger page: a synchronous trigger "waits for the function to return before
    # delivering the next event" - so three messages run one after another, never side by side.
    for _ in range(3):
        queues.queue("work-serial").send_message(Message(json.dumps({"seconds": 0.4})))
    runs = _runs(queues, "serial-sleep", 3)
    for (_, ended), (started, _) in itertools.pairwise(runs):
        assert started >= ended
    _wait(lambda: queues.peek_all("work-serial") == [])


def test_an_asynchronous_trigger_moves_on_while_the_function_runs(queues: HostHarness) -> None:
    for _ in range(3):
        queues.queue("work-async").send_message(Message(json.dumps({"seconds": 2.0})))
    runs = _runs(queues, "async-sleep", 3)
    # all three ran at once (2 s each leaves room for three cold starts on a busy machine)
    assert max(s for s, _ in runs) < min(e for _, e in runs)
    _wait(lambda: _trigger(queues, "async").stats.delivered == 3)
    _wait(lambda: queues.peek_all("work-async") == [])  # deleted once each invocation ended


def test_an_asynchronous_failure_meets_the_functions_async_config_not_run_options(
        queues: HostHarness) -> None:
    # AsyncFailConfig: MaxAsyncRetryAttempts 1 -> two attempts, then FC's invocation record in
    # the OnFailure queue; the trigger's runOptions (BACKOFF_RETRY, its dead-letter queue)
    # never see the failure, because FC accepted the event.
    queues.queue("work-async-fail").send_message(Message("cannot be processed"))
    first, second = queues.wait_recorded("async-fail", 2)
    assert first["request_id"] == second["request_id"]  # FC retries keep the request id
    record = queues.receive("work-async-failures", wait=10)
    assert record is not None
    body = json.loads(record.message_body)
    context = body["requestContext"]
    assert context["requestId"] == first["request_id"]
    assert context["functionArn"] == "acs:fc:cn-hangzhou:1234567890123456:functions/async-fail"
    assert context["condition"] == "UnhandledInvocationError"
    assert context["approximateInvokeCount"] == 2
    assert json.loads(body["requestPayload"])["data"]["messageBody"] == "cannot be processed"
    assert body["responseContext"]["functionError"] == "ValueError"
    _wait(lambda: queues.peek_all("work-async-fail") == [])
    _next_visibility_window(queues)
    time.sleep(0.5)
    assert len(queues.recorded("async-fail")) == 2  # no third attempt, no redelivery
    assert queues.peek_all("work-dead-letters") == []
    assert _trigger(queues, "async-fail").stats.failed == 1
