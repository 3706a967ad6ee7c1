"""The function host under a profile: cold starts take platform time (not billed), EventBridge
deliveries — default-bus events and MNS-sourced messages — arrive after the delivery time.

Fixed durations (no spread) so lower bounds are exact; upper bounds are loose (a loaded CI box).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mns.queue import Message

from local.host.async_invoke import AsyncInvoker
from local.host.delay_line import DelayLine
from local.host.event_bus import BusTrigger, EventBus
from local.host.queue_trigger import ASYNC_IN_FLIGHT, QueueTrigger
from local.host.runtime import FunctionRuntime, FunctionSpec
from local.profile import Distribution, Profile
from tests.fixtures.host.harness import HERE, HostHarness

COLD = 0.6
DELIVERY = 0.4
SLOW = Profile(name="slow-test", cold_start=Distribution(median=COLD),
               eventbridge_delivery=Distribution(median=DELIVERY))


def _recorded(records: Path, function: str) -> list[dict[str, float]]:
    path = records / f"{function}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_recorded(records: Path, function: str, count: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(seen := _recorded(records, function)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{function}: {len(seen)} of {count} after {timeout} s")
        time.sleep(0.02)
    return seen


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[FunctionRuntime]:
    spec = FunctionSpec("rec", "handlers.record", HERE / "functions", 10, 128,
                        {"RECORD_DIR": str(tmp_path)})
    sampler = SLOW.sampler(SLOW.cold_start, "cold")
    rt = FunctionRuntime(spec, {}, max_instances=2, platform_delay=sampler)
    yield rt
    rt.close()


def test_a_cold_start_waits_the_platform_time_which_is_not_billed(
        runtime: FunctionRuntime) -> None:
    began = time.monotonic()
    cold = runtime.invoke(b"{}")
    cold_wall = time.monotonic() - began
    began = time.monotonic()
    warm = runtime.invoke(b"{}")
    warm_wall = time.monotonic() - began
    assert cold.ok and cold.cold and warm.ok and not warm.cold
    assert cold_wall >= COLD
    assert warm_wall < COLD  # a warm instance pays no platform time
    assert cold.duration_ms < COLD * 1000  # billed: the handler only


def test_closing_the_runtime_cuts_a_platform_wait_short(runtime: FunctionRuntime) -> None:
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(
        str((runtime.invoke(b"{}").error or {}).get("errorType"))))
    thread.start()
    time.sleep(0.1)
    began = time.monotonic()
    runtime.close()
    thread.join(timeout=5)
    assert outcome == ["HostStopped"] and time.monotonic() - began < COLD


def test_a_default_bus_event_starts_its_invocation_after_the_delivery_time(
        runtime: FunctionRuntime, tmp_path: Path) -> None:
    runtime.invoke(b"{}")  # warm: only the delivery time is left to see
    invoker = AsyncInvoker(label="t:")
    bus = EventBus()
    trigger = BusTrigger("events", "rec", {}, bus, invoker,
                         SLOW.sampler(SLOW.eventbridge_delivery, "delivery"))
    trigger.attach(runtime)
    trigger.start()
    try:
        published = time.time()
        assert bus.publish({"type": "ecs:CloudAssistant:TaskCompleted"}) == 1
        seen = _wait_recorded(tmp_path, "rec", 2)
        assert seen[-1]["at"] - published >= DELIVERY
    finally:
        trigger.stop()
        invoker.stop()


def test_stopping_drops_events_not_delivered_yet() -> None:
    line = DelayLine("t:delay")
    ran: list[int] = []
    line.call_later(0.05, lambda: ran.append(1))
    line.call_later(30, lambda: ran.append(2))
    deadline = time.monotonic() + 5
    while not ran and time.monotonic() < deadline:
        time.sleep(0.01)
    line.stop()
    assert ran == [1] and line.pending() == 0
    with pytest.raises(RuntimeError):
        line.call_later(0.1, lambda: None)


def test_a_queue_message_reaches_its_function_after_delivery_and_cold_start(
        tmp_path: Path) -> None:
    with HostHarness(tmp_path, "queues.yml", profile=SLOW) as harness:
        sent = time.time()
        harness.queue("work-ok", encoding=True).send_message(Message("hello"))
        first = harness.wait_recorded("ok", 1, timeout=15)[0]
        assert first["at"] - sent >= DELIVERY + COLD  # a new instance: both
        sent = time.time()
        harness.queue("work-ok", encoding=True).send_message(Message("again"))
        second = harness.wait_recorded("ok", 2, timeout=15)[1]
        assert second["at"] - sent >= DELIVERY
    assert harness.leftover_threads == []


def test_a_queue_message_waits_its_delivery_time_without_holding_a_delivery_slot(
        tmp_path: Path) -> None:
    """EventBridge's delivery time is latency, not capacity: for an asynchronous trigger, more
    received messages wait out their delay side by side (in the delay line, not in a slot) than
    it runs invocations at once, so the delay does not divide the stream's throughput."""
    slow = Profile(name="slow-delivery", eventbridge_delivery=Distribution(median=3.0))
    with HostHarness(tmp_path, "queues.yml", profile=slow) as harness:
        assert harness.host is not None
        trigger = harness.host.trigger("async", QueueTrigger)
        wanted = ASYNC_IN_FLIGHT + 8
        for _ in range(wanted):
            harness.queue("work-async").send_message(Message(json.dumps({"seconds": 0})))
        deadline = time.monotonic() + 2.5  # well inside the 3 s delay of the first ones
        most = 0
        while time.monotonic() < deadline and most < wanted:
            most = max(most, trigger._later.pending())
            time.sleep(0.02)
        assert most == wanted  # all in their delay at once: more than run at a time
        assert harness.recorded("async-sleep") == []  # and none delivered before its delay
        assert len(harness.wait_recorded("async-sleep", wanted, timeout=20)) == wanted
    assert harness.leftover_threads == []


def test_a_synchronous_trigger_starts_the_next_delivery_only_after_the_function_returned(
        tmp_path: Path) -> None:
    """A synchronous trigger "waits for the function to return before delivering the next
    event": each message's delivery time starts after the previous invocation ended."""
    delivery = 0.5
    slow = Profile(name="slow-delivery", eventbridge_delivery=Distribution(median=delivery))
    with HostHarness(tmp_path, "queues.yml", profile=slow) as harness:
        for _ in range(3):
            harness.queue("work-serial").send_message(Message(json.dumps({"seconds": 0.2})))
        runs = sorted((r["started"], r["ended"])
                      for r in harness.wait_recorded("serial-sleep", 3, timeout=20))
        for (_, ended), (started, _) in itertools.pairwise(runs):
            assert started - ended >= delivery  # sigma 0: every draw is the median
    assert harness.leftover_threads == []
