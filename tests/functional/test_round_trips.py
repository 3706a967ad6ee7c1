"""Few round trips, every contract kept: the cloud calls a request costs, counted by the emulators.

A one-instance script is one RunCommand at submit and one DescribeInvocationResults when its
TaskCompleted event arrives; pre-flight runs only when Cloud Assistant refuses the call (and
then a 422 still creates nothing, ``OnIneligible: Skip`` still runs on the rest, and a
redelivery still gets the same invocation back); a saved command is invoked beside the lookup
of its Timeout; a request of several batches is checked up front. One local cloud of its own,
so that every call counted belongs to the test that counts it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest

from local.cloud import LocalCloud
from tests.conftest import SIMULATED, write_fleet
from tests.localcloud import Endpoints, get_object, invoke_ids, wait_for

LINUX = "i-local00000000000001"
STOPPED, WINDOWS = "i-local0000000000000s", "i-local0000000000000w"
ECHO: dict[str, Any] = {"Type": "RunShellScript", "CommandContent": "echo rt",
                        "InstanceIds": [LINUX]}


class Counted(Endpoints):
    """``endpoints.json`` plus the emulators' per-action call counters."""

    def calls(self, service: str = "ecs", reset: bool = False) -> dict[str, int]:
        req = urllib.request.Request(self[service] + "/_emulator/calls",
                                     method="DELETE" if reset else "GET")
        with urllib.request.urlopen(req, timeout=10) as answer:
            counts: dict[str, int] = json.loads(answer.read())["calls"]
        return counts

    def summary(self, invoke_id: str, timeout: float = 20) -> dict[str, Any]:
        key = f"results/{invoke_id}/summary.json"
        found: dict[str, Any] = json.loads(
            wait_for(lambda: get_object(self.bucket(), key), timeout=timeout))
        return found


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("round-trips")
    write_fleet(state, SIMULATED[:150])
    local = LocalCloud(state, parameters={"MaintenanceEnabled": False})  # events: the default
    local.start()
    yield local
    local.stop()


@pytest.fixture
def counted(cloud: LocalCloud) -> Counted:
    return Counted(cloud.endpoints)


def settled(counted: Counted, service: str = "ecs", quiet: float = 1.0) -> dict[str, int]:
    """The call counts once no call came for ``quiet`` seconds."""
    last = counted.calls(service)
    while True:
        time.sleep(quiet)
        now = counted.calls(service)
        if now == last:
            return now
        last = now


def test_a_one_instance_script_costs_two_ecs_calls_from_submit_to_summary(
        counted: Counted) -> None:
    counted.calls(reset=True)
    status, body = counted.post(ECHO)
    assert status == 202, body
    summary = counted.summary(body["InvokeId"])
    assert summary["Counts"] == {"Success": 1}
    output = get_object(counted.bucket(), f"results/{body['InvokeId']}/{LINUX}/output.txt")
    assert output == b"rt\n"
    # no pre-flight, no CreateCommand; the event's one look at the result; the command
    # deleted itself (KeepCommand false)
    assert settled(counted) == {"RunCommand": 1, "DescribeInvocationResults": 1}
    req = DescribeCommandsRequest()
    req.set_CommandId(body["CommandId"])
    assert counted.call(req)["Commands"]["Command"] == []
    assert [i["InvokeId"] for i in counted.invocations(CommandId=body["CommandId"])] == \
        [body["InvokeId"]]


def test_events_of_a_three_instance_run_look_once_each_and_never_ask_for_the_status(
        counted: Counted) -> None:
    counted.calls(reset=True)
    request = {**ECHO, "InstanceIds": [LINUX, "i-local00000000000002", "i-local00000000000003"]}
    status, body = counted.post(request)
    assert status == 202, body
    assert counted.summary(body["InvokeId"])["Counts"] == {"Success": 3}
    calls = settled(counted, quiet=3.0)  # a late event comes back 2 s later
    # one look per event at most (one that comes after another finished the invocation may
    # find the work done); never DescribeInvocations for the overall status
    assert set(calls) == {"RunCommand", "DescribeInvocationResults"}, calls
    assert calls["RunCommand"] == 1 and 1 <= calls["DescribeInvocationResults"] <= 3, calls


def test_a_refused_request_runs_preflight_once_answers_422_and_creates_nothing(
        counted: Counted) -> None:
    before = {i["InvokeId"] for i in counted.invocations()}
    counted.calls(reset=True)
    status, body = counted.post({**ECHO, "InstanceIds": [LINUX, STOPPED]})
    assert status == 422, body
    assert [(e["path"], e["rule"]) for e in body["Errors"]] == [
        ("$.InstanceIds[1]", "InstanceNotRunning")]
    assert counted.calls() == {"RunCommand": 1, "DescribeInstances": 1,
                               "DescribeCloudAssistantStatus": 1}
    assert {i["InvokeId"] for i in counted.invocations()} == before


def test_skip_runs_again_on_the_rest_and_every_redelivery_gets_the_same_invocation(
        cloud: LocalCloud, counted: Counted) -> None:
    request = {**ECHO, "CommandContent": "echo skip", "InstanceIds": [LINUX, STOPPED],
               "OnIneligible": "Skip", "ClientToken": f"rt-skip-{time.time_ns()}"}
    counted.calls(reset=True)
    status, first = counted.post(request)
    assert status == 202, first
    assert first["Skipped"] == [{"InstanceId": STOPPED, "Reason": "InstanceNotRunning",
                                 "Message": first["Skipped"][0]["Message"]}]
    assert counted.summary(first["InvokeId"])["Counts"] == {"Skipped": 1, "Success": 1}
    assert settled(counted) == {"RunCommand": 2, "DescribeInstances": 1,
                                "DescribeCloudAssistantStatus": 1,
                                "DescribeInvocationResults": 1}
    counted.calls(reset=True)
    status, again = counted.post(request, timestamp=int(time.time()) + 1)
    assert status == 202, again
    assert again == first
    # answered from the request record (shared.ledger): not one ECS call
    assert counted.calls() == {}
    # The stopped instance starts: a redelivery now must not run the script a second time.
    inventory = cloud.state_dir / "instances.json"
    original = inventory.read_text()
    fleet = json.loads(original)
    for entry in fleet["instances"]:
        if entry["InstanceId"] == STOPPED:
            entry["Status"] = "Running"
    try:
        _reload(counted, inventory, json.dumps(fleet))
        status, late = counted.post(request, timestamp=int(time.time()) + 2)
        assert status == 202 and late == first, late  # the request as it ran, once
    finally:
        _reload(counted, inventory, original)
    assert [i["InvokeId"] for i in counted.invocations(CommandId=first["CommandId"])] == \
        [first["InvokeId"]]


def test_a_saved_command_is_invoked_beside_the_lookup_of_its_timeout(counted: Counted) -> None:
    create = CreateCommandRequest()
    create.set_Name("rt-saved")
    create.set_Type("RunShellScript")
    create.set_CommandContent("ZWNobyBzYXZlZA==")  # echo saved
    create.set_Timeout(600)
    command_id = counted.call(create)["CommandId"]
    counted.calls(reset=True)
    status, body = counted.post({"CommandId": command_id, "InstanceIds": [LINUX]})
    assert status == 202, body
    counted.summary(body["InvokeId"])
    assert settled(counted) == {"InvokeCommand": 1, "DescribeCommands": 1,
                                "DescribeInvocationResults": 1}
    record = json.loads(get_object(counted.bucket(), f"invocations/{body['InvokeId']}.json")
                        or b"{}")
    assert record["deadline"] - record["submitted_at"] == pytest.approx(600 + 120)
    assert record["adhoc"] is False  # a saved command is never deleted
    counted.calls(reset=True)
    status, body = counted.post({"CommandId": command_id, "InstanceIds": [LINUX],
                                 "Timeout": 30})
    assert status == 202, body
    counted.summary(body["InvokeId"])
    # the request's Timeout: no lookup
    assert settled(counted) == {"InvokeCommand": 1, "DescribeInvocationResults": 1}
    record = json.loads(get_object(counted.bucket(), f"invocations/{body['InvokeId']}.json")
                        or b"{}")
    assert record["deadline"] - record["submitted_at"] == pytest.approx(30 + 120)
    assert counted.summary(body["InvokeId"])["Counts"] == {"Success": 1}


def test_a_saved_command_is_checked_with_its_own_type_and_an_unknown_one_is_refused(
        counted: Counted) -> None:
    create = CreateCommandRequest()
    create.set_Name("rt-saved-linux")
    create.set_Type("RunShellScript")
    create.set_CommandContent("ZWNobyBzYXZlZA==")
    command_id = counted.call(create)["CommandId"]
    status, body = counted.post({"CommandId": command_id, "InstanceIds": [LINUX, WINDOWS],
                                 "Timeout": 30, "OnIneligible": "Skip"})
    assert status == 202, body
    assert [(s["InstanceId"], s["Reason"]) for s in body["Skipped"]] == [
        (WINDOWS, "OSTypeMismatch")]
    before = {i["InvokeId"] for i in counted.invocations()}
    status, body = counted.post({"CommandId": "c-nosuchcommand0001", "InstanceIds": [LINUX]})
    assert status == 422 and body["CloudCode"] == "InvalidCmdId.NotFound", body
    assert {i["InvokeId"] for i in counted.invocations()} == before


def test_a_request_of_several_batches_is_checked_up_front_and_invoked_batch_by_batch(
        counted: Counted) -> None:
    counted.calls(reset=True)
    status, body = counted.post({**ECHO, "InstanceIds": SIMULATED[:150]})
    assert status == 202, body
    assert body["Plan"] == {"Instances": 150, "Batches": 2, "Waves": 1}, body
    submit = {action: n for action, n in counted.calls().items()
              if action not in ("DescribeInvocationResults", "DescribeInvocations",
                                "DeleteCommand", "InvokeCommand")}  # the dispatchers' and
    assert submit == {"DescribeInstances": 2, "DescribeCloudAssistantStatus": 3,  # collectors'
                      "CreateCommand": 1}
    ids = invoke_ids(counted, body, timeout=30)  # the dispatch function invoked each batch
    assert counted.calls()["InvokeCommand"] == 2
    counts = [counted.summary(i, timeout=30)["InstanceCount"] for i in ids]
    assert counts == [100, 50]
    status, refused = counted.post({**ECHO, "InstanceIds": [*SIMULATED[:120], STOPPED]})
    assert status == 422 and [e["path"] for e in refused["Errors"]] == ["$.InstanceIds[120]"]


def test_the_events_of_a_fanned_out_request_read_one_record_not_one_per_batch(
        cloud: LocalCloud, counted: Counted) -> None:
    """Both batches of 150 instances (100 and 50) are too large for events, so their follow-ups
    collect them: the first event's record says so for the whole command, and the second
    batch's event is let go without reading its record. A request with a batch small enough
    for events (110: 100 and 10) says nothing of the kind."""
    from shared import record
    from shared.clients import Clients
    from shared.collect import on_task_completed
    from shared.collector_events import TaskCompleted
    from shared.config import Settings
    from shared.ledger import read_request

    clients = Clients(Settings.from_env(cloud.host.runtimes["assistflow-collect"].environment))
    status, body = counted.post({**ECHO, "CommandContent": "echo fan", "InstanceIds":
                                 SIMULATED[:150]})
    assert status == 202, body
    ids = invoke_ids(counted, body, timeout=30)
    for invoke_id in ids:
        counted.summary(invoke_id, timeout=30)
    command_id = read_request(clients.results, body["RequestId"]).command_id
    settled(counted, "oss")  # the request's own events are over
    record._cache.clear()
    record._followed.clear()
    counted.calls("oss", reset=True)
    for invoke_id, instance_id in zip(ids, (SIMULATED[0], SIMULATED[149]), strict=True):
        event = TaskCompleted({"invokeId": invoke_id, "instanceId": instance_id,
                               "commandId": command_id, "invocationStatus": "Success"})
        assert on_task_completed(event, clients) is None  # the follow-ups' to collect
    assert counted.calls("oss").get("GetObject") == 1
    assert record.followed_command(command_id)

    status, body = counted.post({**ECHO, "CommandContent": "echo few", "InstanceIds":
                                 SIMULATED[:110]})
    assert status == 202, body
    ids = invoke_ids(counted, body, timeout=30)
    record._cache.clear()
    found = record.read_record(clients.results, ids[0])
    assert found is not None and not found.events_unused
    assert not record.followed_command(found.command_id)
    for invoke_id in ids:  # over before the next test counts its calls
        counted.summary(invoke_id, timeout=30)
    settled(counted)


def test_an_event_without_invoke_id_is_matched_to_its_invocation_by_a_lookup(
        cloud: LocalCloud, counted: Counted) -> None:
    status, body = counted.post({**ECHO, "CommandContent": "echo lookup"})
    assert status == 202, body
    counted.summary(body["InvokeId"])
    key = f"results/{body['InvokeId']}/{LINUX}/output.txt"
    counted.bucket().delete_object(key)
    event = json.loads((_events_dir() / "ecs-task-completed.json").read_text())
    event["data"] = {"commandId": body["CommandId"], "instanceId": LINUX,
                     "invocationStatus": "Success", "exitCode": "0",
                     "finishTime": "2026-11-26T04:00:02Z", "commandName": "assistflow"}
    counted.calls(reset=True)
    runtime = cloud.host.runtimes["assistflow-collect"]  # type: ignore[union-attr]
    outcome = runtime.invoke(json.dumps([event]).encode())
    assert outcome.ok, outcome.error
    assert outcome.result["events"] == [{"InvokeId": None, "Ours": True, "Finished": True}]
    assert get_object(counted.bucket(), key) == b"lookup\n"
    assert counted.calls() == {"DescribeInvocations": 1, "DescribeInvocationResults": 1}


def _reload(counted: Counted, inventory: Any, text: str) -> None:
    inventory.write_text(text)
    req = urllib.request.Request(counted["ecs"] + "/_emulator/inventory", data=b"{}",
                                 method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).close()


def _events_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "events"


def test_a_periodic_script_is_created_and_invoked_and_a_refused_one_leaves_no_command(
        counted: Counted) -> None:
    """RunCommand's own command is deleted when its run is over; a schedule needs it longer.
    (Last in this module: its follow-ups keep looking until it is stopped.)"""
    from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

    periodic = {**ECHO, "CommandContent": "echo tick", "RepeatMode": "Period",
                "Frequency": "rate(5m)"}

    def commands() -> set[str]:
        req = DescribeCommandsRequest()
        req.set_PageSize(50)
        return {c["CommandId"] for c in counted.call(req)["Commands"]["Command"]}

    before = commands()
    status, refused = counted.post({**periodic, "InstanceIds": [LINUX, STOPPED]})
    assert status == 422, refused
    assert commands() == before  # the command created for it was deleted again
    counted.calls(reset=True)
    status, body = counted.post(periodic)
    assert status == 202, body
    assert counted.calls() == {"CreateCommand": 1, "InvokeCommand": 1}
    assert commands() == before | {body["CommandId"]}
    stop = StopInvocationRequest()
    stop.set_InvokeId(body["InvokeId"])
    counted.call(stop)
