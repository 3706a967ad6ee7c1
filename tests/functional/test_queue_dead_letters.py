"""The queue triggers against the whole local cloud, through the official SDKs.

* A message that can never succeed is parked by the function itself in the trigger's
  dead-letter queue, unchanged, and the queue carries on: the next request runs.
* With ``errorsTolerance: NONE`` (EventBridge's default) a message that keeps failing blocks
  the stream: later messages are never delivered — the local host is no kinder than EventBridge
  ("Retry policies and dead-letter queues").
* The TaskCompleted trigger's pattern takes only this deployment's commands (a command-name
  prefix), on the local event bus as on EventBridge.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from aliyunsdkecs.request.v20140526.RunCommandRequest import RunCommandRequest
from mns.mns_exception import MNSServerException
from mns.queue import Message

from local.cloud import DEFAULT_TEMPLATE, LocalCloud
from local.host.event_bus import BusTrigger
from local.host.queue_trigger import QueueTrigger
from tests.localcloud import Endpoints, get_object, wait_for

LINUX = "i-local00000000000001"
STOPPED = "i-local0000000000000s"


def _invocations_named(endpoints: Endpoints, name: str) -> list[dict[str, Any]]:
    request = DescribeInvocationsRequest()
    request.set_CommandName(name)
    return list(endpoints.call(request)["Invocations"]["Invocation"])


def _dead_letters(endpoints: Endpoints, queue_name: str, wanted: set[str],
                  timeout: float = 20) -> list[str]:
    """Receive (and delete) from ``queue_name`` until every body in ``wanted`` has come."""
    queue = endpoints.mns().get_queue(queue_name)
    queue.set_encoding(False)  # the bodies exactly as stored
    found: list[str] = []
    deadline = time.monotonic() + timeout
    while not wanted <= set(found):
        if time.monotonic() > deadline:
            raise TimeoutError(f"dead letters so far: {found}")
        try:
            message = queue.receive_message(1)
        except MNSServerException as exc:
            if exc.type != "MessageNotExist":
                raise
            continue
        found.append(message.message_body)
        queue.delete_message(message.receipt_handle)
    return found


def _request(name: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "RunShellScript", "CommandContent": content, "InstanceIds": [LINUX],
            "Name": name, **extra}


def test_requests_that_can_never_succeed_are_parked_and_the_queue_carries_on(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    queue = endpoints.mns().get_queue(endpoints["request_queue"])
    queue.set_encoding(True)  # the MNS SDK's default: Base64 bodies
    tag = str(time.time_ns())
    invalid = json.dumps({"Type": "RunPython", "CommandContent": "print(1)",
                          "InstanceIds": ["not-an-instance"], "Bogus": tag})
    ineligible = json.dumps(_request(f"assistflow-stopped-{tag}", "echo never",
                                     InstanceIds=[STOPPED]))
    valid_name = f"assistflow-after-poison-{tag}"
    assert cloud.host is not None
    trigger = cloud.host.trigger("requests", QueueTrigger)
    failed_before = trigger.stats.failed
    for body in (invalid, ineligible, json.dumps(_request(valid_name, f"echo {tag}"))):
        queue.send_message(Message(body))

    # The valid request runs.
    (invocation,) = wait_for(lambda: _invocations_named(endpoints, valid_name) or None, 20)
    key = f"results/{invocation['InvokeId']}/{LINUX}/output.txt"
    assert wait_for(lambda: get_object(endpoints.bucket(), key), 20) == f"{tag}\n".encode()
    # The two that can never succeed are in the dead-letter queue, byte for byte as sent
    # (the SDK's Base64), and were acknowledged by a succeeding function: no platform retry.
    sent = {base64.b64encode(b.encode()).decode() for b in (invalid, ineligible)}
    parked = _dead_letters(endpoints, "assistflow-requests-dlq", sent)
    assert sent <= set(parked)
    assert trigger.stats.failed == failed_before
    assert not trigger.blocked.is_set()
    assert _invocations_named(endpoints, f"assistflow-stopped-{tag}") == []  # nothing created


def test_a_follow_up_that_can_never_be_processed_is_parked(cloud: LocalCloud,
                                                           endpoints: Endpoints) -> None:
    queue = endpoints.mns().get_queue(endpoints["followup_queue"])
    queue.set_encoding(False)
    body = json.dumps({"not": "a follow-up", "at": time.time_ns()})
    queue.send_message(Message(body))
    assert body in _dead_letters(endpoints, "assistflow-followups-dlq", {body})
    assert cloud.host is not None
    assert not cloud.host.trigger("followups", QueueTrigger).blocked.is_set()


def _strict_template(tmp: Path) -> Path:
    """template.yml with the request trigger at EventBridge's defaults (errorsTolerance NONE)
    and a queue function that cannot park what it refuses (no dead-letter queue set)."""
    doc = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    resources = doc["Resources"]
    for res in resources.values():
        meta = (res.get("Metadata") or {}).get("assistflow") or {}
        if "CodeDir" in meta:  # the copy lives elsewhere: point at the real code
            meta["CodeDir"] = str(DEFAULT_TEMPLATE.parent / meta["CodeDir"])
    config = resources["RequestQueueTrigger"]["Properties"]["TriggerConfig"]
    config["runOptions"] = {"retryStrategy": {"PushRetryStrategy": "BACKOFF_RETRY"},
                            "deadLetterQueue": config["runOptions"]["deadLetterQueue"]}
    del resources["SubmitQueueFunction"]["Properties"]["EnvironmentVariables"][
        "ASSISTFLOW_DEAD_LETTER_QUEUE"]
    path = tmp / "strict-template.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _advance_mns(endpoints: Endpoints, seconds: float) -> None:
    request = urllib.request.Request(f"{endpoints['mns']}/_emulator/clock", method="POST",
                                     data=json.dumps({"advance": seconds}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5):
        pass


def test_errors_tolerance_none_blocks_the_stream(fresh_cloud_dir: Path, tmp_path: Path) -> None:
    cloud = LocalCloud(fresh_cloud_dir, template=_strict_template(tmp_path),
                       parameters={"MaintenanceEnabled": False, "CompletionEvents": False})
    endpoints = Endpoints(cloud.start())
    try:
        assert cloud.host is not None
        trigger = cloud.host.trigger("requests", QueueTrigger)
        queue = endpoints.mns().get_queue(endpoints["request_queue"])
        queue.set_encoding(False)
        tag = str(time.time_ns())
        poison = json.dumps({"Type": "RunShellScript", "InstanceIds": [LINUX], "Bogus": tag})
        queue.send_message(Message(poison))
        for delivery in range(1, 5):  # the first delivery and BACKOFF_RETRY's 3 retries
            wait_for(lambda d=delivery: trigger.stats.failed >= d or None, 20)
            if delivery < 4:
                _advance_mns(endpoints, 21)  # past the 10-20 s backoff interval
        wait_for(lambda: trigger.blocked.is_set() or None, 10)

        valid_name = f"assistflow-after-block-{tag}"
        queue.send_message(Message(json.dumps(_request(valid_name, f"echo {tag}"))))
        for _ in range(3):
            _advance_mns(endpoints, 61)  # past every visibility timeout and retry interval
            time.sleep(1)
        assert _invocations_named(endpoints, valid_name) == []  # never delivered
        assert trigger.stats.failed == 4 and trigger.stats.delivered == 0
        # Nothing dead-lettered or lost: both wait in the request queue.
        bodies = sorted(m.message_body for m in queue.batch_peek_message(16))
        assert bodies == sorted([poison, json.dumps(_request(valid_name, f"echo {tag}"))])
        dlq = endpoints.mns().get_queue("assistflow-requests-dlq")
        try:
            dlq.peek_message()
            raise AssertionError("the dead-letter queue is used only with errorsTolerance ALL")
        except MNSServerException as exc:
            assert exc.type == "MessageNotExist"
    finally:
        cloud.stop()


def _run_command(endpoints: Endpoints, name: str) -> str:
    request = RunCommandRequest()
    request.set_Type("RunShellScript")
    request.set_CommandContent("echo from someone")
    request.set_InstanceIds([LINUX])
    request.set_Name(name)
    return str(endpoints.call(request)["InvokeId"])


def test_other_commands_task_events_never_invoke_the_collector(
        cloud: LocalCloud, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cloud.host is not None
    trigger = cloud.host.trigger("task-events", BusTrigger)
    seen: list[str] = []
    real_submit = trigger._invoker.submit

    def recording(runtime: Any, body: bytes, *args: Any, **kwargs: Any) -> str:
        seen.append(json.loads(body)["data"]["invokeId"])
        return real_submit(runtime, body, *args, **kwargs)

    monkeypatch.setattr(trigger._invoker, "submit", recording)
    tag = time.time_ns()
    others = _run_command(endpoints, f"backup-by-another-team-{tag}")
    wait_for(lambda: _finished(endpoints, others) or None, 20)
    # Cloud Assistant publishes events in order: once ours has come, the other's was offered.
    ours = _run_command(endpoints, f"assistflow-direct-{tag}")
    wait_for(lambda: ours in seen or None, 20)
    assert others not in seen


def _finished(endpoints: Endpoints, invoke_id: str) -> bool:
    request = DescribeInvocationsRequest()
    request.set_InvokeId(invoke_id)
    (invocation,) = endpoints.call(request)["Invocations"]["Invocation"]
    return bool(invocation["InvocationStatus"] == "Success")
