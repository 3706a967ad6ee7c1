"""Issue 13, item 3: a request over 100 instances completes after one of its batches fails.

150 simulated instances are two InvokeCommand batches (100 + 50), each a dispatch job of its
own (issue 14). The
faults go through the ECS emulator's ``/_emulator/faults``, in order: a first rule without a
code lets the first InvokeCommand through untouched (whichever batch makes it), so the next
ones — the other batch's — are the ones that fail. Before the fix, the caller was told to retry
(503), batch 1's collector deleted the ad-hoc command meanwhile, and the retry got 422
``InvalidCmdId.NotFound``; a permanent error on batch 2 answered a refusal although 100
instances ran.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from local.cloud import LocalCloud
from tests.conftest import write_fleet
from tests.localcloud import Endpoints, get_object, invoke_ids, request_summary, wait_for
from tests.reliability.cloud_control import (
    add_faults,
    calls,
    clear_faults,
    command_exists,
    keys,
)

FLEET = [f"i-bat{n:012d}" for n in range(1, 151)]
PASS_ONE = {"action": "InvokeCommand", "count": 1}  # no code, no delay: the call goes through


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    state = tmp_path_factory.mktemp("batches")
    write_fleet(state, FLEET, duration=0.2)
    cloud = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    cloud.start()
    yield Endpoints(cloud.endpoints)
    cloud.stop()


@pytest.fixture(autouse=True)
def no_faults_left(endpoints: Endpoints) -> Iterator[None]:
    yield
    clear_faults(endpoints, "ecs")


def request(token: str) -> dict[str, Any]:
    return {"Type": "RunShellScript", "CommandContent": f"echo {token}",
            "InstanceIds": FLEET, "ClientToken": token}


def every_result(endpoints: Endpoints, invoke_ids: list[str]) -> set[str]:
    """The instances with a result.json, once every invocation's summary is stored."""
    bucket = endpoints.bucket()
    for invoke_id in invoke_ids:
        wait_for(lambda i=invoke_id: get_object(bucket, f"results/{i}/summary.json"),
                 timeout=60, interval=0.3)
    return {key.split("/")[2] for invoke_id in invoke_ids
            for key in keys(endpoints, f"results/{invoke_id}/")
            if key.endswith("/result.json")}


def gone(endpoints: Endpoints, command_id: str) -> bool | None:
    return True if not command_exists(endpoints, command_id) else None


def test_150_instances_with_the_second_invoke_failing_once_complete_from_one_delivery(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    """Issue 13's must-show, fanned out (issue 14): the 202 comes at once, each batch is its
    own dispatch job, and the failing one is retried by its dispatcher (jittered backoff) or
    its trigger — the caller delivers nothing again."""
    token = f"batches-once-{time.time_ns()}"
    add_faults(endpoints, "ecs", PASS_ONE, {"action": "InvokeCommand", "count": 1,
                                            "code": "ServiceUnavailable", "status": 503})
    status, body = endpoints.post(request(token))
    assert status == 202 and body["Plan"]["Batches"] == 2, body
    ids = invoke_ids(endpoints, body)
    assert len(ids) == 2
    assert every_result(endpoints, ids) == set(FLEET)
    ran = endpoints.invocations(CommandId=body["CommandId"])
    assert sorted(i["InvokeId"] for i in ran) == sorted(ids)  # no batch twice
    wait_for(lambda: gone(endpoints, body["CommandId"]), timeout=30, interval=0.5)
    tally["batch requests completed after a 503"] += 1


def test_a_batch_failing_again_and_again_is_retried_by_its_trigger_and_runs_once(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    token = f"batches-resume-{time.time_ns()}"
    # the other batch's dispatcher fails every attempt of its first invocation (3 tries)
    add_faults(endpoints, "ecs", PASS_ONE, {"action": "InvokeCommand", "count": 3,
                                            "code": "ServiceUnavailable", "status": 503})
    status, first = endpoints.post(request(token))
    assert status == 202, first
    ids = invoke_ids(endpoints, first, timeout=90)  # the trigger delivered the job again
    assert len(ids) == 2 and every_result(endpoints, ids) == set(FLEET)
    ran = endpoints.invocations(CommandId=first["CommandId"])
    assert sorted(i["InvokeId"] for i in ran) == sorted(ids)
    wait_for(lambda: gone(endpoints, first["CommandId"]), timeout=30, interval=0.5)
    # and again: answered from the request record, nothing invoked or created
    calls(endpoints, reset=True)
    status, again = endpoints.post(request(token))
    assert status == 202 and again["RequestId"] == first["RequestId"], again
    assert sorted(again["InvokeIds"]) == sorted(ids)
    assert "InvokeCommand" not in calls(endpoints) and "CreateCommand" not in calls(endpoints)
    tally["batches retried by their dispatch trigger"] += 1


def test_a_batch_refused_for_good_is_reported_per_instance_and_the_rest_completes(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    token = f"batches-refused-{time.time_ns()}"
    add_faults(endpoints, "ecs", PASS_ONE, {
        "action": "InvokeCommand", "count": 1, "code": "InvalidInstance.NotMatch",
        "status": 400, "message": "The specified instance is not in a state to run commands."})
    status, body = endpoints.post(request(token))
    assert status == 202, body
    summary = request_summary(endpoints, body, timeout=60)
    assert len(summary["InvokeIds"]) == 1
    refused = {i for i, e in summary["Instances"].items() if e["Status"] == "NotStarted"}
    assert len(refused) in (50, 100)
    assert {summary["Instances"][i]["Reason"] for i in refused} == {"InvalidInstance.NotMatch"}
    assert summary["Counts"] == {"NotStarted": len(refused), "Success": 150 - len(refused)}
    assert summary["Status"] == "Success"  # NotStarted never ran: not counted, as Skipped
    assert every_result(endpoints, summary["InvokeIds"]) == set(FLEET) - refused
    # nothing is left to start: the command goes once the batch that ran is collected
    wait_for(lambda: gone(endpoints, body["CommandId"]), timeout=30, interval=0.5)
    calls(endpoints, reset=True)
    status, again = endpoints.post(request(token))
    assert status == 202 and again["InvokeIds"] == summary["InvokeIds"], again
    assert calls(endpoints) == {}
    states = sorted(json.loads(get_object(endpoints.bucket(), key) or b"{}")["state"]
                    for key in keys(endpoints, f"invocations/requests/{body['RequestId']}/")
                    if "/batch-" in key)
    assert states == ["Failed", "Invoked"]
    assert keys(endpoints, f"invocations/open/{body['RequestId']}/") == []
    tally["batches refused for good, the rest completed"] += 1
