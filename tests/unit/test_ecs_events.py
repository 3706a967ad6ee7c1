"""The local Cloud Assistant publishes ecs:CloudAssistant:TaskCompleted once per finished run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

from tests.unit.test_ecs_emulator import b64, make, start_ecs


def collect_events(ecs: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    ecs.app.model.events.sink = events.append
    return events


def wait_for_count(events: list[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_each_finished_run_is_announced_once_with_its_ids_and_exit_code(tmp_path: Path) -> None:
    with start_ecs(tmp_path) as ecs:
        events = collect_events(ecs)
        answer = ecs.run("echo hi; exit 3", ["i-proc1", "i-proc2"])
        ecs.wait_done(answer["InvokeId"])
        wait_for_count(events, 2)
        time.sleep(0.2)  # nothing more may come
    assert len(events) == 2
    by_instance = {e["data"]["instanceId"]: e for e in events}
    proc = by_instance["i-proc1"]
    assert proc["source"] == "acs.ecs" and proc["type"] == "ecs:CloudAssistant:TaskCompleted"
    assert proc["data"]["invokeId"] == answer["InvokeId"]
    assert proc["data"]["commandId"] == answer["CommandId"]
    assert (proc["data"]["invocationStatus"], proc["data"]["exitCode"]) == ("Failed", "3")
    assert by_instance["i-proc2"]["data"]["invocationStatus"] == "Failed"


def test_a_stop_announces_the_runs_it_ends_and_no_run_twice(tmp_path: Path) -> None:
    with start_ecs(tmp_path) as ecs:
        events = collect_events(ecs)
        done = ecs.run("echo quick", ["i-proc1"])
        ecs.wait_done(done["InvokeId"])
        wait_for_count(events, 1)
        slow = ecs.run("sleep 30", ["i-proc2"], Timeout=60)
        time.sleep(0.3)
        ecs.call(make(StopInvocationRequest, InvokeId=slow["InvokeId"]))
        ecs.wait_done(slow["InvokeId"])
        wait_for_count(events, 2)
        time.sleep(0.2)
    statuses = [(e["data"]["invokeId"], e["data"]["invocationStatus"]) for e in events]
    assert statuses == [(done["InvokeId"], "Success"), (slow["InvokeId"], "Terminated")]


def test_without_a_subscriber_nothing_is_queued(tmp_path: Path) -> None:
    with start_ecs(tmp_path) as ecs:
        answer = ecs.run(b64("echo x"), ["i-proc1"], ContentEncoding="Base64")
        ecs.wait_done(answer["InvokeId"])
        assert ecs.app.model.events._thread is None  # no thread, no backlog
