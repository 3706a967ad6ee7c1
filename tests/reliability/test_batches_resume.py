"""Issue 13, item 3: a request over 100 instances completes after one of its batches fails.

150 simulated instances are two InvokeCommand batches (100 + 50), invoked side by side. The
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
from tests.localcloud import Endpoints, get_object, wait_for
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


def test_150_instances_with_the_second_invoke_failing_once_complete_within_three_deliveries(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    token = f"batches-once-{time.time_ns()}"
    add_faults(endpoints, "ecs", PASS_ONE, {"action": "InvokeCommand", "count": 1,
                                            "code": "ServiceUnavailable", "status": 503})
    answers = []
    for _ in range(3):
        status, body = endpoints.post(request(token))  # re-signed each time, same ClientToken
        answers.append((status, body))
        if status == 202 and len(body["InvokeIds"]) == 2:
            break
        assert status in (202, 503), body
        time.sleep(1)
    status, body = answers[-1]
    assert status == 202 and len(body["InvokeIds"]) == 2, answers
    assert "NotStarted" not in body
    assert every_result(endpoints, body["InvokeIds"]) == set(FLEET)
    ran = endpoints.invocations(CommandId=body["CommandId"])
    assert sorted(i["InvokeId"] for i in ran) == sorted(body["InvokeIds"])  # no batch twice
    wait_for(lambda: gone(endpoints, body["CommandId"]), timeout=30, interval=0.5)
    tally["batch requests completed after a 503"] += 1


def test_a_batch_that_could_not_start_is_resumed_by_the_same_token_and_nothing_runs_twice(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    token = f"batches-resume-{time.time_ns()}"
    # the other batch fails every attempt of this delivery (the submit retries a 503 twice)
    add_faults(endpoints, "ecs", PASS_ONE, {"action": "InvokeCommand", "count": 3,
                                            "code": "ServiceUnavailable", "status": 503})
    status, first = endpoints.post(request(token))
    assert status == 202, first  # something runs: never a refusal
    assert len(first["InvokeIds"]) == 1
    waiting = {n["InstanceId"] for n in first["NotStarted"]}
    assert len(waiting) in (50, 100) and waiting < set(FLEET)
    assert all(n["Retryable"] and n["Reason"] == "ServiceUnavailable"
               for n in first["NotStarted"])
    # The batch that ran is collected; its collector must leave the command for the rest.
    done = every_result(endpoints, first["InvokeIds"])
    assert done == set(FLEET) - waiting
    time.sleep(1.5)  # what the collector would delete, it has deleted by now
    assert command_exists(endpoints, first["CommandId"])

    calls(endpoints, reset=True)
    status, second = endpoints.post(request(token))
    assert status == 202, second
    assert "NotStarted" not in second
    assert second["InvokeIds"][0] in first["InvokeIds"] or \
        second["InvokeIds"][1] in first["InvokeIds"]
    assert len(second["InvokeIds"]) == 2 and second["CommandId"] == first["CommandId"]
    assert calls(endpoints).get("InvokeCommand") == 1  # exactly the batch that did not run
    assert every_result(endpoints, second["InvokeIds"]) == set(FLEET)
    ran = endpoints.invocations(CommandId=first["CommandId"])
    assert sorted(i["InvokeId"] for i in ran) == sorted(second["InvokeIds"])
    wait_for(lambda: gone(endpoints, first["CommandId"]), timeout=30, interval=0.5)
    # and again: answered from the request record, nothing invoked
    calls(endpoints, reset=True)
    status, third = endpoints.post(request(token))
    assert (status, third) == (202, second)
    assert "InvokeCommand" not in calls(endpoints) and "CreateCommand" not in calls(endpoints)
    tally["batches resumed by a redelivery"] += 1


def test_a_batch_refused_for_good_is_reported_per_instance_and_the_rest_completes(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    token = f"batches-refused-{time.time_ns()}"
    add_faults(endpoints, "ecs", PASS_ONE, {
        "action": "InvokeCommand", "count": 1, "code": "InvalidInstance.NotMatch",
        "status": 400, "message": "The specified instance is not in a state to run commands."})
    status, body = endpoints.post(request(token))
    assert status == 202, body  # 100 or 50 instances run: not a refusal
    assert len(body["InvokeIds"]) == 1
    refused = body["NotStarted"]
    assert len(refused) in (50, 100)
    assert {(n["Reason"], n["Retryable"]) for n in refused} == {("InvalidInstance.NotMatch",
                                                                 False)}
    assert every_result(endpoints, body["InvokeIds"]) == \
        set(FLEET) - {n["InstanceId"] for n in refused}
    # nothing is left to start: the command goes once the batch that ran is collected
    wait_for(lambda: gone(endpoints, body["CommandId"]), timeout=30, interval=0.5)
    calls(endpoints, reset=True)
    status, again = endpoints.post(request(token))
    assert (status, again) == (202, body)  # the same answer, from the request record
    assert calls(endpoints) == {}
    record = json.loads(get_object(endpoints.bucket(),
                                   f"invocations/requests/{body['RequestId']}.json") or b"{}")
    assert sorted(b["state"] for b in record["batches"]) == ["Failed", "Invoked"]
    assert keys(endpoints, f"invocations/open/{body['RequestId']}/") == []
    tally["partial starts answered 202"] += 1
