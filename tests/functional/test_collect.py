"""The collector: every result stored once and correctly, summaries, notifications, crashes."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

from local.cloud import LocalCloud
from shared import webhook
from tests.localcloud import Endpoints, get_object, wait_for

LINUX1, LINUX2, LINUX3 = ("i-local00000000000001", "i-local00000000000002",
                          "i-local00000000000003")
STOPPED = "i-local0000000000000s"


def summary_of(endpoints: Endpoints, invoke_id: str, timeout: float = 15) -> dict[str, Any]:
    key = f"results/{invoke_id}/summary.json"
    return dict(json.loads(wait_for(lambda: get_object(endpoints.bucket(), key),
                                    timeout=timeout)))


def objects_under(endpoints: Endpoints, prefix: str) -> dict[str, bytes]:
    import oss2

    bucket = endpoints.bucket()
    return {o.key: bytes(bucket.get_object(o.key).read())
            for o in oss2.ObjectIteratorV2(bucket, prefix=prefix)}


def test_output_over_24kb_is_stored_truncated_and_flagged(endpoints: Endpoints) -> None:
    status, body = endpoints.post({"Type": "RunShellScript", "InstanceIds": [LINUX1],
                                   "CommandContent": "head -c 30720 /dev/zero | tr '\\0' x"})
    assert status == 202, body
    summary = summary_of(endpoints, body["InvokeId"])
    assert summary["Truncated"] == [LINUX1]
    assert summary["Instances"][LINUX1]["Truncated"] is True
    result = json.loads(get_object(endpoints.bucket(),
                                   f"results/{body['InvokeId']}/{LINUX1}/result.json") or b"")
    assert result["Truncated"] is True
    assert result["Dropped"] == 30720 - 24 * 1024
    assert result["OutputBytes"] == 24 * 1024
    output = get_object(endpoints.bucket(), f"results/{body['InvokeId']}/{LINUX1}/output.txt")
    assert output == b"x" * (24 * 1024)


def test_a_mixed_run_is_counted_correctly_and_its_command_deleted(endpoints: Endpoints) -> None:
    script = (f'case "$ASSISTFLOW_INSTANCE_ID" in {LINUX2}) exit 7;; {LINUX3}) sleep 30;; esac; '
              "echo fine")
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": script,
                                   "InstanceIds": [LINUX1, LINUX2, LINUX3, STOPPED],
                                   "Timeout": 10, "OnIneligible": "Skip"})
    assert status == 202, body
    summary = summary_of(endpoints, body["InvokeId"], timeout=40)
    assert summary["Counts"] == {"Failed": 1, "Skipped": 1, "Success": 1, "Timeout": 1}
    assert summary["Status"] == "PartialFailed"
    statuses = {i: doc["Status"] for i, doc in summary["Instances"].items()}
    assert statuses == {LINUX1: "Success", LINUX2: "Failed", LINUX3: "Timeout",
                        STOPPED: "Skipped"}
    assert summary["Instances"][LINUX2]["ExitCode"] == 7
    req = DescribeCommandsRequest()
    req.set_CommandId(body["CommandId"])
    wait_for(lambda: True if not endpoints.call(req)["Commands"]["Command"] else None, timeout=5)


def test_a_stopped_instance_beside_a_successful_one_gives_the_status_cloud_assistant_gives(
        endpoints: Endpoints) -> None:
    """summary.json's Status is what DescribeInvocations says of the same invocation."""
    script = f'case "$ASSISTFLOW_INSTANCE_ID" in {LINUX2}) sleep 60;; esac; echo done'
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": script,
                                   "InstanceIds": [LINUX1, LINUX2], "Timeout": 120})
    assert status == 202, body
    invoke_id = body["InvokeId"]
    request = DescribeInvocationsRequest()
    request.set_InvokeId(invoke_id)

    def statuses() -> dict[str, str]:
        invocation = endpoints.call(request)["Invocations"]["Invocation"][0]
        return {i["InstanceId"]: i["InvocationStatus"]
                for i in invocation["InvokeInstances"]["InvokeInstance"]}

    wait_for(lambda: True if statuses() == {LINUX1: "Success", LINUX2: "Running"} else None,
             timeout=15)
    stop = StopInvocationRequest()
    stop.set_InvokeId(invoke_id)
    stop.set_InstanceIds([LINUX2])
    endpoints.call(stop)
    summary = summary_of(endpoints, invoke_id, timeout=30)
    invocation = endpoints.call(request)["Invocations"]["Invocation"][0]
    assert statuses() == {LINUX1: "Success", LINUX2: "Terminated"}
    assert summary["Counts"] == {"Success": 1, "Terminated": 1}
    assert summary["Status"] == invocation["InvocationStatus"] == "Success"


def test_a_redelivered_followup_and_a_killed_collector_leave_one_correct_set(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    status, body = endpoints.post({"Type": "RunShellScript", "InstanceIds": [LINUX1, LINUX2],
                                   "CommandContent": "echo twice"})
    assert status == 202, body
    summary = summary_of(endpoints, body["InvokeId"])
    prefix = f"results/{body['InvokeId']}/"
    first = objects_under(endpoints, prefix)
    assert set(first) == {prefix + "summary.json", prefix + "report.html"} | {
        f"{prefix}{i}/{name}" for i in (LINUX1, LINUX2) for name in ("output.txt", "result.json")}

    from shared.followup import FollowUp

    followup = FollowUp(
        invoke_id=body["InvokeId"], command_id=body["CommandId"], region=endpoints["region"],
        pending=(LINUX1, LINUX2), attempt=1, deadline=time.time() + 60,
        bucket=endpoints["results_bucket"], prefix="results", request_id=summary["RequestId"],
        adhoc=True, source="http", submitted_at=0.0)
    event = _followup_event(followup.to_json())
    runtime = cloud.host.runtimes["assistflow-collect"]  # type: ignore[union-attr]

    # Kill the collector while it is between two writes: slow every PutObject down, wait for
    # the first object to change, then SIGKILL the function instance mid-way.
    endpoints.control("oss", "faults", _SLOW_PUTS)
    crashed: list[Any] = []
    worker = threading.Thread(target=lambda: crashed.append(runtime.invoke(event)))
    worker.start()
    wait_for(lambda: True if runtime.pids() and endpoints.control("oss", "faults")["faults"][0][
        "count"] < _SLOW_PUTS["count"] else None, timeout=10)
    killed = runtime.pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    worker.join(timeout=20)
    # SIGKILL lands asynchronously: wait until the host has seen every instance die.
    wait_for(lambda: True if not set(killed) & set(runtime.pids()) else None, timeout=10)
    endpoints.control("oss", "faults", method="DELETE")
    assert crashed and not crashed[0].ok  # the kill failed that invocation
    # Redelivery (twice, as MNS may): the set is complete and identical to the first one.
    for _ in range(2):
        again = runtime.invoke(event)
        assert again.ok, again.error
    second = objects_under(endpoints, prefix)
    assert set(second) == set(first)
    for key, data in first.items():
        assert second[key] == data, key  # byte for byte, summary included


def _look_again(cloud: LocalCloud, endpoints: Endpoints, instances: list[str],
                faults: list[dict[str, Any]], oss_faults: list[dict[str, Any]] | None = None,
                **fields: Any) -> tuple[str, float, Any, dict[str, float]]:
    """Run a command on ``instances``, wait until it is collected, then have the collector
    look at it once more (a follow-up for every instance, invoked by hand, with ``fields``
    changed) while ECS plays ``faults`` on DescribeInvocationResults (and OSS ``oss_faults``).
    (InvokeId, when the look began, the invocation, when each ``result.json`` was last
    stored)."""
    from shared.followup import FollowUp

    status, body = endpoints.post({"Type": "RunShellScript", "InstanceIds": instances,
                                   "CommandContent": "echo paged"})
    assert status == 202, body
    invoke_id = body["InvokeId"]
    summary = summary_of(endpoints, invoke_id, timeout=30)
    assert summary["Counts"] == {"Success": len(instances)}
    followup = FollowUp(
        invoke_id=invoke_id, command_id=body["CommandId"], region=endpoints["region"],
        pending=tuple(instances), attempt=1, deadline=time.time() + 60,
        bucket=endpoints["results_bucket"], prefix="results", request_id=summary["RequestId"],
        adhoc=True, source="http", submitted_at=0.0)
    followup = replace(followup, **{k: v(summary) if callable(v) else v
                                    for k, v in fields.items()})
    runtime = cloud.host.runtimes["assistflow-collect"]  # type: ignore[union-attr]
    endpoints.control("ecs", "faults", faults)
    if oss_faults:
        endpoints.control("oss", "faults", oss_faults)
    try:
        begun = time.time()
        looked = runtime.invoke(_followup_event(followup.to_json()))
    finally:
        endpoints.control("ecs", "faults", method="DELETE")
        endpoints.control("oss", "faults", method="DELETE")
    assert looked.ok, looked.error
    stored = {o["key"].split("/")[-2]: float(o["stored_at"]) for o in endpoints.control(
        "oss", f"buckets/{endpoints['results_bucket']}/objects?prefix=results/{invoke_id}/"
    )["objects"] if o["key"].endswith("/result.json")}
    return invoke_id, begun, looked, stored


def test_a_look_over_two_pages_stores_the_first_while_the_second_is_fetched(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    """DescribeInvocationResults answers 50 results a page: the first page's instances are
    written while the second page is on its way, not after it."""
    from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
        DescribeInvocationResultsRequest,
    )

    from tests.conftest import SIMULATED

    # every DescribeInvocationResults answered 1.5 s late
    invoke_id, begun, _, stored = _look_again(
        cloud, endpoints, SIMULATED[200:260],
        [{"action": "DescribeInvocationResults", "count": 0, "delay": 1.5}])
    first_page = DescribeInvocationResultsRequest()
    first_page.set_InvokeId(invoke_id)
    first_page.set_MaxResults(50)
    page = endpoints.call(first_page)["Invocation"]["InvocationResults"]["InvocationResult"]
    on_first = {r["InstanceId"] for r in page}
    first = [at for instance, at in stored.items() if instance in on_first]
    second = [at for instance, at in stored.items() if instance not in on_first]
    assert len(first) == 50 and len(second) == 10
    assert all(at > begun + 1.5 for at in first + second)  # written again by this look
    # the second page cannot answer before begun + 3 s; the first page was stored before it
    assert max(first) < min(second) - 0.5, (max(first) - begun, min(second) - begun)


def _slow_writes(cloud: LocalCloud, endpoints: Endpoints, instances: list[str]
                 ) -> tuple[float, list[float]]:
    """One look over ``instances`` with every PutObject answered 0.4 s late: when it began,
    and when each of its ``result.json`` objects was stored, in order."""
    _, begun, looked, stored = _look_again(
        cloud, endpoints, instances, [], [{"action": "PutObject", "count": 0, "delay": 0.4}])
    assert looked.ok, looked.error
    return begun, sorted(at for at in stored.values() if at > begun)


def test_a_look_writes_its_instances_objects_thirty_two_at_a_time(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    """Each PutObject answered 0.4 s late: the first result.json objects all land together,
    ``WRITES_AT_ONCE`` (32) of them, more than the threads' pool of writes - and never more."""
    from shared.parallel import STORE_POOL_SIZE, WRITES_AT_ONCE
    from tests.conftest import SIMULATED

    begun, times = _slow_writes(cloud, endpoints, SIMULATED[260:300])
    assert len(times) == 40
    # output.txt then result.json: the first result.json objects come ~0.8 s in, together;
    # the next ones a whole round (0.8 s) later
    first_round = [at for at in times if at < times[0] + 0.4]
    assert STORE_POOL_SIZE < len(first_round) <= WRITES_AT_ONCE, [
        round(t - begun, 2) for t in times]


def test_the_second_pages_writes_join_the_first_pages_before_they_finish(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    """Each PutObject answered 0.4 s late, 60 instances (pages of 50 and 10): an instance's two
    objects take 0.8 s, so 32 at a time the first page's 50 take two rounds, the second of
    them with 18 instances. The second page's 10 are written in that second round, beside
    them - the writes do not drain before they start (a third round, 0.8 s later)."""
    from tests.conftest import SIMULATED

    begun, times = _slow_writes(cloud, endpoints, SIMULATED[200:260])
    assert len(times) == 60
    rounds = 1 + sum(1 for a, b in itertools.pairwise(times) if b - a > 0.4)
    assert rounds == 2, [round(t - begun, 2) for t in times]


def test_a_batch_of_several_puts_its_advance_marker_beside_its_report_before_its_summary(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    """A batch of a request of several: the close's ``advance`` marker is written with the
    report, before ``summary.json`` (the close then waits for one round trip less). OSS
    refusing every DeleteObject here stops the close at its first delete, so the marker stays
    to be looked at."""
    from shared.ledger import OPEN_PREFIX, marker_key
    from tests.conftest import SIMULATED

    invoke_id, _, looked, _ = _look_again(
        cloud, endpoints, SIMULATED[100:103], [],
        [{"action": "DeleteObject", "count": 0, "code": "AccessDenied", "status": 403}],
        batches=2, marker=lambda s: marker_key(s["RequestId"], 0, time.time() + 600))
    assert looked.result["collected"][0]["Finished"] is True, looked.result
    request_id = summary_of(endpoints, invoke_id)["RequestId"]

    def stored(prefix: str) -> dict[str, float]:
        return {o["key"]: float(o["stored_at"]) for o in endpoints.control(
            "oss", f"buckets/{endpoints['results_bucket']}/objects?prefix={prefix}")["objects"]}

    advance = [at for key, at in stored(f"{OPEN_PREFIX}/{request_id}/").items()
               if key.split("/")[-1].startswith("advance.")]
    summary_at = stored(f"results/{invoke_id}/summary.json")[f"results/{invoke_id}/summary.json"]
    assert len(advance) == 1 and advance[0] < summary_at, (advance, summary_at)


def test_a_second_page_that_fails_keeps_the_first_pages_objects_and_looks_again_for_the_rest(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    """The first page's instances are stored; DescribeInvocationResults failing for the second
    page (a 503, past the collector's patience) re-queues a follow-up for the other 10 only."""
    from tests.conftest import SIMULATED

    # The first rule answers the first page (and is used up); every later call meets the 503.
    invoke_id, begun, looked, stored = _look_again(cloud, endpoints, SIMULATED[140:200], [
        {"action": "DescribeInvocationResults", "count": 1, "delay": 0.01},
        {"action": "DescribeInvocationResults", "count": 0, "code": "ServiceUnavailable",
         "status": 503}])
    assert looked.result["collected"] == [
        {"InvokeId": invoke_id, "Stored": 50, "Pending": 10, "Finished": False}]
    assert sum(1 for at in stored.values() if at > begun) == 50


class _Callbacks(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def callback_url() -> Iterator[str]:
    _Callbacks.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/done"
    server.shutdown()


def test_a_completion_callback_arrives_once_signed_like_the_webhook(
        cloud: LocalCloud, endpoints: Endpoints, callback_url: str) -> None:
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo cb",
                                   "InstanceIds": [LINUX1], "Notify": {"Url": callback_url}})
    assert status == 202, body
    wait_for(lambda: _Callbacks.received or None, timeout=10)
    headers, payload = _Callbacks.received[0]
    assert webhook.verify(endpoints["webhook_secret"], headers, payload)
    assert headers["X-Assistflow-Event"] == "invocation.completed"
    summary = json.loads(payload)  # the request summary: one notification per request
    assert summary["RequestId"] == body["RequestId"] and summary["Status"] == "Success"
    assert summary["InvokeIds"] == [body["InvokeId"]]
    # The final follow-up delivered again does not notify again.
    from shared.followup import FollowUp

    followup = FollowUp(
        invoke_id=body["InvokeId"], command_id=body["CommandId"], region=endpoints["region"],
        pending=(LINUX1,), attempt=1, deadline=time.time() + 60,
        bucket=endpoints["results_bucket"], prefix="results", request_id=summary["RequestId"],
        adhoc=True, source="http", submitted_at=0.0,
        notify={"Url": callback_url})
    runtime = cloud.host.runtimes["assistflow-collect"]  # type: ignore[union-attr]
    assert runtime.invoke(_followup_event(followup.to_json())).ok
    time.sleep(0.5)
    assert len(_Callbacks.received) == 1


def test_a_queue_notification_carries_the_summary(endpoints: Endpoints) -> None:
    from mns.queue import QueueMeta

    queue = endpoints.mns().get_queue("assistflow-notify-test")
    queue.create(QueueMeta())
    queue.set_encoding(False)
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo q",
                                   "InstanceIds": [LINUX1],
                                   "Notify": {"Queue": "assistflow-notify-test"}})
    assert status == 202, body
    message = queue.receive_message(10)
    summary = json.loads(message.message_body)  # the request summary
    assert (summary["RequestId"], summary["InvokeIds"]) == (body["RequestId"], [body["InvokeId"]])
    assert summary["Counts"] == {"Success": 1}


_SLOW_PUTS = {"action": "PutObject", "count": 50, "delay": 0.3}  # a FaultRule


def _followup_event(body: str) -> bytes:
    return json.dumps({"id": "redelivered", "specversion": "1.0",
                       "type": "mns:Queue:SendMessage", "source": "MNS-test",
                       "data": {"requestId": "r", "messageId": "redelivered",
                                "messageBody": body}}).encode()
