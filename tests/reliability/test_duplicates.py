"""Every trigger delivered three times, and follow-ups twice: one invocation per batch, one
result set. The request spans two InvokeCommand batches (150 instances)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import oss2
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from local.cloud import LocalCloud
from tests.conftest import SIMULATED
from tests.localcloud import Endpoints, get_object, invoke_ids, wait_for

TARGETS = SIMULATED[100:250]


def one_result_set(endpoints: Endpoints, command_id: str, invoke_ids: set[str]) -> None:
    req = DescribeInvocationsRequest()
    req.set_CommandId(command_id)
    req.set_PageSize(50)
    made = {i["InvokeId"] for i in endpoints.call(req)["Invocations"]["Invocation"]}
    assert made == invoke_ids and len(made) == 2, "one invocation per batch"
    bucket = endpoints.bucket()
    instances: list[str] = []
    for invoke_id in sorted(invoke_ids):
        summary = json.loads(wait_for(
            lambda i=invoke_id: get_object(bucket, f"results/{i}/summary.json"), timeout=20))
        instances += list(summary["Instances"])
        keys = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix=f"results/{invoke_id}/")]
        assert len(keys) == 2 + 2 * len(summary["Instances"])  # summary, report + 2 each
    assert sorted(instances) == sorted(TARGETS)  # every instance once, none twice


def test_each_trigger_three_times_and_followups_twice(cloud: LocalCloud, endpoints: Endpoints,
                                                      tally: Counter[str]) -> None:
    host = cloud.host
    assert host is not None
    stamp = time.time_ns()
    request = {"Type": "RunShellScript", "CommandContent": "echo dup", "InstanceIds": TARGETS}

    # webhook: the sender retries with the same ClientToken
    http = [endpoints.post({**request, "ClientToken": f"dup-http-{stamp}"},
                           timestamp=int(time.time()) + n) for n in range(3)]
    assert {s for s, _ in http} == {202}
    # queue: the same message (same MessageId) delivered three times
    body = json.dumps(request)
    event = json.dumps({"id": f"dup-{stamp}", "specversion": "1.0",
                        "type": "mns:Queue:SendMessage", "source": "MNS-test",
                        "data": {"requestId": "r", "messageId": f"dup-{stamp}",
                                 "messageBody": body}}).encode()
    queue = [host.runtimes["assistflow-submit-queue"].invoke(event) for _ in range(3)]
    # timer: the same tick fired three times
    tick = json.dumps({"triggerTime": f"2026-11-26T05:{stamp % 60:02d}:00Z",
                       "triggerName": f"dup-{stamp}", "payload": body}).encode()
    timer = [host.runtimes["assistflow-submit-timer"].invoke(tick) for _ in range(3)]
    tally["duplicate deliveries"] += 6

    answers: dict[str, list[dict[str, Any]]] = {
        "http": [a for _, a in http],
        "queue": [r.result["accepted"][0] for r in queue],
        "timer": [r.result for r in timer],
    }
    made: dict[str, list[str]] = {}
    for trigger, results in answers.items():
        assert len({r["CommandId"] for r in results}) == 1, trigger
        assert len({r["RequestId"] for r in results}) == 1, trigger
        # fanned out: the InvokeIds come from the request summary, one per batch
        made[trigger] = invoke_ids(endpoints, results[0])
        one_result_set(endpoints, results[0]["CommandId"], set(made[trigger]))

    # follow-ups of every invocation delivered again: same objects, nothing new
    ids = [i for found in made.values() for i in found]
    bucket = endpoints.bucket()
    folders = [f"results/{i}/" for i in ids] + [
        f"results/requests/{results[0]['RequestId']}/" for results in answers.values()]
    before = {o.key: o.etag for folder in folders
              for o in oss2.ObjectIteratorV2(bucket, prefix=folder)}
    for invoke_id in ids:
        record = json.loads(get_object(bucket, f"invocations/{invoke_id}.json") or b"")
        replay = json.dumps({"id": "again", "specversion": "1.0",
                             "type": "mns:Queue:SendMessage", "source": "MNS-test",
                             "data": {"requestId": "r", "messageId": "again",
                                      "messageBody": json.dumps(record)}}).encode()
        for _ in range(2):
            assert host.runtimes["assistflow-collect"].invoke(replay).ok
            tally["duplicate deliveries"] += 1
    after = {o.key: o.etag for folder in folders
             for o in oss2.ObjectIteratorV2(bucket, prefix=folder)}
    assert after == before  # byte-identical rewrites (same ETags), no new objects
