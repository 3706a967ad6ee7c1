"""Issue 13, item 1: a failing notification is its own bounded job and holds nothing up.

A receiver that always fails used to make the collector re-queue itself without end,
rewriting every result and never deleting the ad-hoc command; on the event path the
notification got four tries within seconds and was lost. Now the summary is stored once, the
command is deleted, and the notification is retried on its own schedule (15 s doubling, for
``NotifyRetrySeconds``), its progress in ``summary.json``'s ``Notification``. The MNS clock is
moved instead of waiting, so the minutes below take seconds.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest

from local.cloud import LocalCloud
from shared import webhook
from tests.conftest import write_fleet
from tests.localcloud import Endpoints, get_object, invoke_ids, wait_for
from tests.reliability.receivers import Receiver, advance_queues, receiving

FLEET = [f"i-ntf{n:012d}" for n in range(1, 102)]  # 101: a created (ad-hoc) command, 2 batches
LINUX1 = "i-local00000000000001"


def start_cloud(state: Path, **parameters: Any) -> LocalCloud:
    state.mkdir()
    write_fleet(state, FLEET, duration=0.2)
    cloud = LocalCloud(state, parameters={"MaintenanceEnabled": False, **parameters})
    cloud.start()
    return cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The template's defaults (completion events on, NotifyRetrySeconds one day)."""
    local = start_cloud(tmp_path_factory.mktemp("notify") / "state")
    yield local
    local.stop()


def summary(endpoints: Endpoints, request_id: str, timeout: float = 30) -> dict[str, Any]:
    """The request summary: the notification is one job per request (issue 14)."""
    key = f"results/requests/{request_id}/summary.json"
    return dict(json.loads(wait_for(lambda: get_object(endpoints.bucket(), key), timeout)))


def stored(cloud: LocalCloud, prefix: str) -> dict[str, tuple[float, str]]:
    """Every object under ``prefix``: (when the OSS emulator stored it, its ETag), from its
    control API (``/_emulator/buckets/<bucket>/objects``)."""
    endpoints = Endpoints(cloud.endpoints)
    listing = endpoints.control(
        "oss", f"buckets/{endpoints['results_bucket']}/objects?{urlencode({'prefix': prefix})}")
    return {o["key"]: (o["stored_at"], o["etag"]) for o in listing["objects"]}


def first_attempt(endpoints: Endpoints, receiver: Receiver) -> str:
    """Submit a one-instance command notifying ``receiver``; its RequestId once it was
    tried."""
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo n",
                                   "InstanceIds": [LINUX1], "Notify": {"Url": receiver.url}})
    assert status == 202, body
    request_id = str(body["RequestId"])
    wait_for(lambda: receiver.attempts(request_id) or None, 15)
    return request_id


def command_exists(endpoints: Endpoints, command_id: str) -> bool:
    request = DescribeCommandsRequest()
    request.set_CommandId(command_id)
    return bool(endpoints.call(request)["Commands"]["Command"])


def test_a_receiver_that_always_fails_holds_nothing_up(cloud: LocalCloud,
                                                       tally: Counter[str]) -> None:
    endpoints = Endpoints(cloud.endpoints)
    with receiving([500]) as receiver:
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo hi",
                                       "InstanceIds": FLEET, "Notify": {"Url": receiver.url}})
        assert status == 202, body
        request_id = body["RequestId"]
        ids = invoke_ids(endpoints, body)
        assert len(ids) == 2  # two batches, one notification: the request's
        assert summary(endpoints, request_id)["Notification"]["Status"] in (
            "Pending", "Retrying")
        # The ad-hoc command is deleted once the results are stored, whatever the receiver does.
        wait_for(lambda: None if command_exists(endpoints, body["CommandId"]) else True,
                 timeout=60)
        wait_for(lambda: receiver.attempts(request_id) or None, 10)
        request_summary = f"results/requests/{request_id}/summary.json"
        prefixes = [f"results/{i}/" for i in ids] + [f"results/requests/{request_id}/"]
        before = {p: stored(cloud, p) for p in prefixes}
        first = summary(endpoints, request_id)

        advance_queues(cloud, 90)  # the next 90 s of the notification's schedule
        wait_for(lambda: True if len(receiver.attempts(request_id)) >= 2 and summary(
            endpoints, request_id)["Notification"]["Attempts"] == len(
                receiver.attempts(request_id)) else None, 15)

        attempts = receiver.attempts(request_id)
        tally["notification attempts against a failing receiver"] += len(attempts)
        # 15 s, then 30 s, then 60 s apart (±20 %): three or four in 90 s, not dozens
        assert 2 <= len(attempts) <= 5, len(attempts)
        assert [a.headers["X-Assistflow-Attempt"] for a in attempts] == [
            str(n) for n in range(1, len(attempts) + 1)]
        for attempt in attempts:  # every attempt signed like the webhook, same summary
            assert webhook.verify(endpoints["webhook_secret"], attempt.headers, attempt.body)
            assert attempt.body == attempts[0].body
        assert json.loads(attempts[0].body)["InvokeIds"] == ids
        for prefix in prefixes:
            after = stored(cloud, prefix)
            assert set(after) == set(before[prefix])
            rewritten = {k for k in after if after[k] != before[prefix][k]}
            assert rewritten <= {request_summary}, rewritten  # no result written again
        now = summary(endpoints, request_id)
        notification = now.pop("Notification")
        assert now == {k: v for k, v in first.items()
                       if k != "Notification"}  # only the Notification part changed
        assert notification["Status"] == "Retrying"
        assert notification["Attempts"] == len(attempts)
        assert "answered 500" in notification["LastError"]
        assert notification["NextAttemptAt"] > notification["LastAttemptAt"]


def test_on_the_event_path_a_notification_outlasts_a_receiver_outage(
        cloud: LocalCloud) -> None:
    endpoints = Endpoints(cloud.endpoints)
    with receiving([503, 500, 204]) as receiver:  # down for a while, then back
        request_id = first_attempt(endpoints, receiver)
        advance_queues(cloud, 60)  # past the watchdog follow-up too
        wait_for(lambda: summary(endpoints, request_id)["Notification"]["Status"] == "Sent"
                 or None, 15)
        notification = summary(endpoints, request_id)["Notification"]
        assert (notification["Attempts"], notification["LastError"]) == (3, "")
        advance_queues(cloud, 60)
        assert len(receiver.attempts(request_id)) == 3  # sent once; nothing after


def test_the_retries_end_within_notify_retry_seconds(tmp_path: Path) -> None:
    cloud = start_cloud(tmp_path / "state", NotifyRetrySeconds=60)
    try:
        endpoints = Endpoints(cloud.endpoints)
        with receiving([500]) as receiver:
            request_id = first_attempt(endpoints, receiver)
            advance_queues(cloud, 240, step=10)
            notification = wait_for(lambda: summary(endpoints, request_id)["Notification"]
                                    if summary(endpoints, request_id)["Notification"]["Status"]
                                    == "GaveUp" else None, 15)
            # 15 s and 30 s waited; the next 60 s would pass the 60 s bound
            assert notification["Status"] == "GaveUp", notification
            assert notification["Attempts"] == 3 == len(receiver.attempts(request_id))
            assert "answered 500" in notification["LastError"]
            assert "NotifyRetrySeconds 60" in notification["LastError"]
    finally:
        cloud.stop()


def test_a_missing_notify_queue_is_retried_until_it_exists(cloud: LocalCloud) -> None:
    from mns.queue import QueueMeta

    endpoints = Endpoints(cloud.endpoints)
    name = "assistflow-notify-late"
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo q",
                                   "InstanceIds": [LINUX1], "Notify": {"Queue": name}})
    assert status == 202, body
    invoke_id, request_id = body["InvokeId"], body["RequestId"]
    first = wait_for(lambda: summary(endpoints, request_id)["Notification"] if summary(
        endpoints, request_id)["Notification"]["Attempts"] else None, 15)
    assert first["Status"] == "Retrying" and "QueueNotExist" in first["LastError"]
    queue = endpoints.mns().get_queue(name)
    queue.create(QueueMeta())  # an operator creates it: the next attempt delivers
    queue.set_encoding(False)
    advance_queues(cloud, 20)
    message = queue.receive_message(10)
    sent = json.loads(message.message_body)  # the request summary
    assert (sent["RequestId"], sent["InvokeIds"]) == (request_id, [invoke_id])
    notification = summary(endpoints, request_id)["Notification"]
    assert (notification["Status"], notification["Attempts"]) == ("Sent", 2)


def test_a_notification_survives_a_failure_of_its_own_scheduling(tmp_path: Path) -> None:
    cloud = start_cloud(tmp_path / "state")  # its own: no other job may meet the faults
    try:
        survive_a_scheduling_failure(cloud)
    finally:
        cloud.stop()


def survive_a_scheduling_failure(cloud: LocalCloud) -> None:
    from local.emulators.faults import FaultRule

    endpoints = Endpoints(cloud.endpoints)
    mns = cloud.servers["mns"].app
    with receiving([500, 500, 204]) as receiver:
        request_id = first_attempt(endpoints, receiver)
        wait_for(lambda: summary(endpoints, request_id)["Notification"]["Attempts"] or None, 10)
        # Attempt 2 fails, and so does queuing attempt 3 (every retry of the SendMessage):
        # the attempt is handed on (its message sent again) instead of being lost.
        mns.faults.add(FaultRule(action="SendMessage", count=3, code="InternalError"))
        try:
            advance_queues(cloud, 20)
            wait_for(lambda: None if mns.faults.rules else True, 10)
        finally:
            mns.faults.clear()
        advance_queues(cloud, 40)
        notification = wait_for(lambda: summary(endpoints, request_id)["Notification"]
                                if summary(endpoints, request_id)["Notification"]["Status"]
                                == "Sent" else None, 15)
        assert [r.headers["X-Assistflow-Attempt"] for r in receiver.attempts(request_id)] == [
            "1", "2", "2"]  # attempt 2 made again, then delivered: sent once
        assert notification["Attempts"] == 2
