"""The fleet (inventory, pre-flight APIs, scale), fault injection and SDK retries, restarts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aliyunsdkcore.retry.backoff_strategy import DefaultMixedBackoffStrategy
from aliyunsdkecs.request.v20140526.DescribeCloudAssistantStatusRequest import (
    DescribeCloudAssistantStatusRequest,
)
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
    DescribeInvocationResultsRequest,
)
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

from local.emulators.ecs.inventory import default_fleet, expand, load_inventory
from tests.unit.test_ecs_emulator import SIM_IDS, Ecs, b64, make, start_ecs


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path) as driver:
        yield driver


@pytest.fixture
def fast_backoff(ecs: Ecs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's throttling backoff (0.5 s doubling) shortened; its retry decisions unchanged."""
    monkeypatch.setattr(DefaultMixedBackoffStrategy, "SDK_DEFAULT_TROTTLED_BASE_DELAY", 5)
    monkeypatch.setattr(DefaultMixedBackoffStrategy, "SDK_DEFAULT_BASE_DELAY", 5)
    ecs.sdk = ecs.client()  # the backoff is read when a client is built


# --- inventory ----------------------------------------------------------------------------

def test_an_entry_with_a_count_expands_to_numbered_instances() -> None:
    fleet = expand({"InstanceId": "i-web", "InstanceName": "web", "Count": 3, "Mode": "simulated"})
    assert [(i.InstanceId, i.InstanceName) for i in fleet] == [
        ("i-web00001", "web-1"), ("i-web00002", "web-2"), ("i-web00003", "web-3")]
    assert {i.Mode for i in fleet} == {"simulated"}


def test_instance_tags_are_a_simple_object_of_strings() -> None:
    [tagged] = expand({"InstanceId": "i-web", "Tags": {"team": "ops", "env": ""}})
    assert tagged.Tags == {"team": "ops", "env": ""}
    assert expand({"InstanceId": "i-web"})[0].Tags == {}
    for bad in ([{"Key": "team", "Value": "ops"}], {"team": 1}, {"": "x"}):
        with pytest.raises(ValueError, match="Tags"):
            expand({"InstanceId": "i-web", "Tags": bad})


def test_a_resource_group_is_rg_and_lowercase_letters_or_digits_and_counts_share_it() -> None:
    fleet = expand({"InstanceId": "i-web", "Count": 2, "ResourceGroupId": "rg-web1",
                    "Tags": {"team": "ops"}})
    assert [(i.ResourceGroupId, i.Tags) for i in fleet] == [("rg-web1", {"team": "ops"})] * 2
    assert expand({"InstanceId": "i-web"})[0].ResourceGroupId == ""
    for bad in ("web", "rg-", "rg-Web", 7):
        with pytest.raises(ValueError, match="ResourceGroupId"):
            expand({"InstanceId": "i-web", "ResourceGroupId": bad})
    with pytest.raises(ValueError, match="at most 20"):
        expand({"InstanceId": "i-web", "Tags": {f"k{n}": "v" for n in range(21)}})


def test_the_default_inventory_has_each_failure_path(tmp_path: Path) -> None:
    fleet = load_inventory(tmp_path / "instances.json")
    assert fleet == default_fleet() and (tmp_path / "instances.json").exists()
    assert sum(i.ready and i.OSType == "linux" for i in fleet) >= 3
    assert {("Stopped", True), ("Running", False)} <= {(i.Status, i.AgentInstalled) for i in fleet}
    assert any(i.OSType == "windows" for i in fleet)


def test_ten_thousand_simulated_instances_run_a_hundred_invocations_quickly(
        tmp_path: Path) -> None:
    fleet = [{"InstanceId": "i-big", "Count": 10000, "Mode": "simulated",
              "Simulated": {"Output": "ok\n", "ExitCode": 0, "Duration": 30}}]
    with start_ecs(tmp_path, fleet) as ecs:
        ids = sorted(ecs.app.model.instances)
        assert len(ids) == 10000
        command_id = ecs.create(b64("uptime"))
        started = time.monotonic()
        invoke_ids = [ecs.call(make(InvokeCommandRequest, CommandId=command_id,
                                    InstanceIds=ids[n:n + 100]))["InvokeId"]
                      for n in range(0, 10000, 100)]
        ecs.advance(30)
        elapsed = time.monotonic() - started
        assert ecs.app.model.agent.scheduler.pending() == 0
        done = ecs.app.model.store.one("SELECT COUNT(*) AS n FROM results WHERE status = 'Success'")
        assert done is not None and done["n"] == 10000
        assert ecs.invocation(invoke_ids[-1])["InvocationStatus"] == "Success"
        assert elapsed < 15, f"100 x 100 simulated runs took {elapsed:.1f} s"


def test_the_inventory_can_be_reloaded_after_editing(ecs: Ecs, tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    data = json.loads(path.read_text())
    data["instances"].append({"InstanceId": "i-added", "Mode": "simulated"})
    path.write_text(json.dumps(data))
    assert ecs.control("POST", "inventory")["instances"] == len(ecs.app.model.instances)
    assert "i-added" in ecs.app.model.instances


# --- DescribeInstances / DescribeCloudAssistantStatus ---------------------------------------

def test_describe_instances_gives_what_a_pre_flight_check_needs(ecs: Ecs) -> None:
    page = ecs.call(make(DescribeInstancesRequest,
                         InstanceIds=json.dumps(["i-proc1", "i-stopped", "i-win"]), MaxResults=100))
    found = {i["InstanceId"]: i for i in page["Instances"]["Instance"]}
    assert {k: (v["Status"], v["OSType"]) for k, v in found.items()} == {
        "i-proc1": ("Running", "linux"), "i-stopped": ("Stopped", "linux"),
        "i-win": ("Running", "windows")}
    assert found["i-proc1"]["InstanceName"] == "proc-1" and found["i-proc1"]["RegionId"]


def test_describe_instances_filters_on_status_and_pages(ecs: Ecs) -> None:
    page = ecs.call(make(DescribeInstancesRequest, Status="Stopped"))
    assert [i["InstanceId"] for i in page["Instances"]["Instance"]] == ["i-stopped"]
    page = ecs.call(make(DescribeInstancesRequest, MaxResults=100))
    assert len(page["Instances"]["Instance"]) == 100 and page["NextToken"]
    page = ecs.call(make(DescribeInstancesRequest, PageSize=100))
    assert page["TotalCount"] == len(ecs.app.model.instances)


def test_cloud_assistant_status_is_true_only_with_a_running_agent(ecs: Ecs) -> None:
    page = ecs.call(make(DescribeCloudAssistantStatusRequest,
                         InstanceIds=["i-proc1", "i-noagent", "i-stopped"]))
    found = {s["InstanceId"]: s for s in
             page["InstanceCloudAssistantStatusSet"]["InstanceCloudAssistantStatus"]}
    assert {k: v["CloudAssistantStatus"] for k, v in found.items()} == {
        "i-proc1": "true", "i-noagent": "false", "i-stopped": "false"}
    assert found["i-noagent"]["CloudAssistantVersion"] == ""
    assert found["i-proc1"]["OSType"] == "Linux" and found["i-proc1"]["LastHeartbeatTime"]


def test_cloud_assistant_status_counts_invocations(ecs: Ecs) -> None:
    ecs.run("true", ["i-sim00001"])
    page = ecs.call(make(DescribeCloudAssistantStatusRequest, InstanceIds=["i-sim00001"]))
    [status] = page["InstanceCloudAssistantStatusSet"]["InstanceCloudAssistantStatus"]
    assert (status["InvocationCount"], status["ActiveTaskCount"]) == (1, 1)
    assert status["LastInvokedTime"]


def test_cloud_assistant_status_takes_at_most_50_instances(ecs: Ecs) -> None:
    err = ecs.fails(make(DescribeCloudAssistantStatusRequest, InstanceIds=SIM_IDS[:51]))
    assert (err.get_error_code(), err.get_http_status()) == ("InstanceIds.ExceedLimit", 403)


# --- faults and the SDK's retries ---------------------------------------------------------

def _calls(ecs: Ecs, action: str) -> int:
    return int(ecs.control("GET", "calls")["calls"].get(action, 0))


def test_throttling_on_a_describe_call_is_retried_by_the_sdk(ecs: Ecs, fast_backoff: None) -> None:
    invoke_id = ecs.run("true", ["i-sim00001"])["InvokeId"]
    ecs.control("POST", "faults", {"action": "DescribeInvocationResults", "count": 2,
                                   "code": "Throttling", "status": 400})
    assert len(ecs.results(invoke_id)) == 1  # the third attempt gets through
    assert _calls(ecs, "DescribeInvocationResults") == 3
    assert ecs.control("GET", "faults")["faults"] == []


def test_the_sdk_gives_up_on_throttling_after_three_retries(ecs: Ecs, fast_backoff: None) -> None:
    invoke_id = ecs.run("true", ["i-sim00001"])["InvokeId"]
    ecs.control("POST", "faults", {"action": "DescribeInvocationResults", "count": 0,
                                   "code": "Throttling", "status": 400})
    err = ecs.fails(make(DescribeInvocationResultsRequest, InvokeId=invoke_id))
    assert (err.get_error_code(), err.get_http_status()) == ("Throttling", 400)
    assert err.get_error_msg() == "Request was denied due to request throttling."
    assert _calls(ecs, "DescribeInvocationResults") == 4  # one call and three retries


def test_throttling_on_invoke_command_is_surfaced_without_retry(
        ecs: Ecs, fast_backoff: None) -> None:
    command_id = ecs.create(b64("true"))
    ecs.control("POST", "faults", {"action": "InvokeCommand", "count": 1, "code": "Throttling",
                                   "status": 400})
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-sim00001"]))
    assert err.get_error_code() == "Throttling"
    assert _calls(ecs, "InvokeCommand") == 1


def test_an_injected_server_error_on_a_describe_call_is_retried(ecs: Ecs, fast_backoff: None) -> None:
    ecs.control("POST", "faults", {"action": "DescribeInstances", "count": 1,
                                   "code": "InternalError", "status": 500})
    assert ecs.call(make(DescribeInstancesRequest))["Instances"]["Instance"]
    assert _calls(ecs, "DescribeInstances") == 2


def test_an_injected_delay_slows_the_call_down(ecs: Ecs) -> None:
    ecs.control("POST", "faults", {"action": "DescribeInstances", "count": 1, "delay": 0.3})
    started = time.monotonic()
    ecs.call(make(DescribeInstancesRequest))
    assert time.monotonic() - started >= 0.3


def test_an_unknown_action_is_not_found(ecs: Ecs) -> None:
    from aliyunsdkcore.request import RpcRequest

    err = ecs.fails(RpcRequest("Ecs", "2014-05-26", "DescribeUnicorns"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidAction.NotFound", 404)


# --- state across restarts and resets -----------------------------------------------------

def test_a_periodic_invocation_resumes_after_a_restart(tmp_path: Path) -> None:
    with start_ecs(tmp_path) as ecs:
        invoke_id = ecs.run("true", ["i-sim00001"], Frequency="rate(1m)", Timeout=30)["InvokeId"]
        ecs.advance(65)
    with start_ecs(tmp_path) as again:
        again.advance(60)
        again.advance(5)
        assert [r["Repeats"] for r in again.results(invoke_id, IncludeHistory=True)] == [1, 2]


def test_reset_forgets_commands_and_invocations(ecs: Ecs) -> None:
    ecs.run("true", ["i-sim00001"], KeepCommand=True)
    ecs.control("POST", "reset")
    state = ecs.control("GET", "state")
    assert (state["commands"], state["invocations"]) == ([], [])
