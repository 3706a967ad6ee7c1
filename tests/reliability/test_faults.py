"""Faults everywhere at once: Throttling and 5xx on a fraction of ECS, MNS and OSS calls.

Requests are submitted the way a careful client does (a ClientToken, a retry on 503) while the
emulators fail a fraction of calls. At the end every request has completed, every instance has
exactly one correct result, and no command ran twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from local.cloud import LocalCloud
from local.emulators.faults import FaultRule
from tests.conftest import write_fleet
from tests.localcloud import Endpoints, get_object, wait_for

FLEET = [f"i-flt{n:012d}" for n in range(1, 161)]
PARAMS = {"CompletionEvents": False, "MaintenanceEnabled": False}  # the follow-ups do it all

FAULTS = {
    "ecs": [FaultRule(action="*", count=0, code="Throttling", status=400, probability=0.15,
                      message="Request was denied due to request throttling."),
            FaultRule(action="*", count=0, code="ServiceUnavailable", status=503,
                      probability=0.05)],
    "mns": [FaultRule(action=a, count=0, code="InternalError", status=500, probability=0.1)
            for a in ("SendMessage", "BatchReceiveMessage", "DeleteMessage")],
    "oss": [FaultRule(action=a, count=0, code="InternalError", status=500, probability=0.1)
            for a in ("PutObject", "GetObject", "HeadObject")],
}


@pytest.fixture
def faulty_cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    state = tmp_path / "state"
    state.mkdir()
    write_fleet(state, FLEET, duration=0.5)
    cloud = LocalCloud(state, parameters=PARAMS)
    cloud.start()
    yield cloud
    cloud.stop()


def submit_until_accepted(endpoints: Endpoints, request: dict[str, object]) -> dict[str, object]:
    """What a careful client does: the same request (same ClientToken) again on 503, and on a
    202 that says some instances could not start yet (``NotStarted``, ``Retryable``)."""
    for _ in range(30):
        status, body = endpoints.post(request)  # re-signed with a fresh timestamp each time
        waiting = [n for n in body.get("NotStarted") or () if n["Retryable"]]
        if status == 202 and not waiting:
            return body
        if status == 202:
            time.sleep(0.2)
            continue
        assert status == 503, (status, body)  # transient only: nothing else may go wrong
        time.sleep(0.2)
    raise AssertionError("never accepted")


def test_under_faults_every_request_completes_once_and_nothing_is_lost(
        faulty_cloud: LocalCloud, tally: Counter[str]) -> None:
    endpoints = Endpoints(faulty_cloud.endpoints)
    for service, rules in FAULTS.items():  # through the control API: OSS is another process
        endpoints.control(service, "faults", [asdict(rule) for rule in rules])
    # An MNS message whose DeleteMessage failed comes back after its visibility timeout (60 s);
    # move the queue's clock instead of waiting.
    mns_clock = faulty_cloud.servers["mns"].app.clock
    stop_clock = threading.Event()

    def tick() -> None:
        while not stop_clock.wait(2):
            mns_clock.advance(30)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    requests = [{"Type": "RunShellScript", "CommandContent": f"echo job {n}",
                 "InstanceIds": FLEET[n * 10:(n + 1) * 10], "ClientToken": f"faults-{n}"}
                for n in range(12)]
    requests.append({"Type": "RunShellScript", "CommandContent": "echo big",
                     "InstanceIds": FLEET[:150], "ClientToken": "faults-big"})
    # what never came (a RequestId, or an InvokeId and its RequestId), diagnosed once the
    # faults stop
    stalled: tuple[str, str] | None = None
    try:
        accepted = [submit_until_accepted(endpoints, r) for r in requests]
        bucket = endpoints.bucket()
        for body in accepted:
            if "Plan" in body:  # fanned out: every InvokeId is in the request summary
                key = str(body["Summary"]).split("/", 3)[3]
                stalled = (str(body["RequestId"]), "")
                raw = wait_for(lambda k=key: _retry_oss(bucket, k), timeout=120, interval=0.5)
                body["InvokeIds"] = json.loads(raw)["InvokeIds"]
            for invoke_id in body["InvokeIds"]:  # type: ignore[union-attr]
                stalled = (str(body["RequestId"]), invoke_id)
                wait_for(lambda i=invoke_id: _retry_oss(bucket, f"results/{i}/summary.json"),
                         timeout=120, interval=0.5)
        stalled = None
    except TimeoutError:
        if stalled is None:
            raise
    finally:
        stop_clock.set()
        ticker.join()
        fired = {s: dict(endpoints.control(s, "faults")["fired"]) for s in FAULTS}
        for service in FAULTS:
            endpoints.control(service, "faults", method="DELETE")
    assert stalled is None, (f"no {'summary of ' + stalled[1] if stalled[1] else 'request summary'}"
                             f" after 120 s\n{_diagnose(faulty_cloud, *stalled)}")
    for service, per_action in fired.items():
        tally[f"faults injected ({service})"] += sum(per_action.values())
    assert all(sum(per_action.values()) > 0 for per_action in fired.values()), fired

    bucket = endpoints.bucket()
    for request, body in zip(requests, accepted, strict=True):
        req = DescribeInvocationsRequest()
        req.set_CommandId(str(body["CommandId"]))
        req.set_PageSize(50)
        invocations = endpoints.call(req)["Invocations"]["Invocation"]
        expected_batches = (len(request["InstanceIds"]) + 99) // 100  # type: ignore[arg-type]
        assert len(invocations) == expected_batches, "a batch ran twice"
        assert sorted(i["InvokeId"] for i in invocations) == sorted(body["InvokeIds"])  # type: ignore[arg-type]
        stored = 0
        for invoke_id in body["InvokeIds"]:  # type: ignore[union-attr]
            summary = json.loads(get_object(bucket, f"results/{invoke_id}/summary.json") or b"")
            assert set(summary["Counts"]) == {"Success"}, summary["Counts"]
            for instance in summary["Instances"]:
                output = get_object(bucket, f"results/{invoke_id}/{instance}/output.txt")
                assert output == f"simulated on {instance}\n".encode()
                stored += 1
        assert stored == len(request["InstanceIds"])  # type: ignore[arg-type]
    tally["requests completed under faults"] += len(requests)


def _retry_oss(bucket: object, key: str) -> bytes | None:
    """Read through the injected OSS faults (the test's own reads are not under test)."""
    import oss2

    try:
        return get_object(bucket, key)  # type: ignore[arg-type]
    except oss2.exceptions.ServerError:
        return None


def _diagnose(cloud: LocalCloud, request_id: str, invoke_id: str = "") -> str:
    """Where a request stands: its record, each batch's state and summary (a fanned-out one's),
    the invocation that never finished (its record, and what Cloud Assistant says of it), its
    open markers, and what the queues hold (the dead-letter queues included)."""
    endpoints = Endpoints(cloud.endpoints)
    bucket = endpoints.bucket()
    lines = [f"request {request_id}"]
    if invoke_id:
        record = get_object(bucket, f"invocations/{invoke_id}.json")
        lines.append(f"  invocation {invoke_id}: "
                     + (record.decode()[:400] if record else "no record"))
        for found in endpoints.invocations(InvokeId=invoke_id):
            runs = [(r.get("InstanceId"), r.get("InvocationStatus"))
                    for r in found.get("InvokeInstances", {}).get("InvokeInstance", [])]
            lines.append(f"  Cloud Assistant: {found.get('InvocationStatus')}; by instance "
                         f"{dict(Counter(status for _, status in runs))}, not Success: "
                         f"{[run for run in runs if run[1] != 'Success']}")
    raw = get_object(bucket, f"invocations/requests/{request_id}.json")
    data = json.loads(raw) if raw else {}
    lines.append(f"  record: queued={data.get('queued')} marker={data.get('marker')!r} "
                 f"command={data.get('command_id')}" if data else "  no request record")
    for n in range(len(data.get("batches") or ())):
        raw = get_object(bucket, f"invocations/requests/{request_id}/batch-{n}.json")
        batch = json.loads(raw) if raw else {}
        batch_invoke = batch.get("invoke_id", "")
        summary = get_object(bucket, f"results/{batch_invoke}/summary.json") \
            if batch_invoke else None
        lines.append(f"  batch {n}: {batch.get('state', 'no state object')} {batch_invoke} "
                     f"handed={batch.get('handed')} summary={'yes' if summary else 'no'}")
    markers = [o.key for o in bucket.list_objects(f"invocations/open/{request_id}/").object_list]
    lines.append(f"  open markers: {markers}")
    mns = cloud.servers["mns"].app.model
    for queue in ("assistflow-dispatch", "assistflow-dispatch-dlq", "assistflow-followups",
                  "assistflow-followups-dlq"):
        held = [m["body"][:160] for m in mns.queue_messages(queue)]
        lines.append(f"  {queue}: {len(held)} message(s) {held[:5]}")
    return "\n".join(lines)
