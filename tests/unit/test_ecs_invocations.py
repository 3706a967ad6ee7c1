"""RunCommand / InvokeCommand / Describe*: parameters, limits, per-instance outcomes, statuses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
    DescribeInvocationResultsRequest,
)
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest
from aliyunsdkecs.request.v20140526.RunCommandRequest import RunCommandRequest

from tests.unit.processes import host_pids, sleep_marker
from tests.unit.test_ecs_emulator import SIM_IDS, Ecs, alive, b64, make, start_ecs


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path) as driver:
        yield driver


def _invoke(ecs: Ecs, command_id: str, ids: list[str], **params: object) -> str:
    return str(ecs.call(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=ids,
                             **params))["InvokeId"])


# --- RunCommand ---------------------------------------------------------------------------

def test_run_command_content_is_plain_text_by_default(ecs: Ecs) -> None:
    answer = ecs.run("echo 123", ["i-proc1"])
    record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
    assert answer["CommandId"].startswith("c-") and answer["InvokeId"].startswith("t-")
    assert (record["InvocationStatus"], record["ExitCode"]) == ("Success", 0)
    assert record["Output"] == b64("123\n")


def test_run_command_takes_base64_content_with_content_encoding(ecs: Ecs) -> None:
    answer = ecs.run(b64("echo decoded"), ["i-proc1"], ContentEncoding="Base64")
    assert ecs.wait_done(answer["InvokeId"])["i-proc1"]["Output"] == b64("decoded\n")


def test_run_command_without_keep_command_leaves_no_command_behind(ecs: Ecs) -> None:
    answer = ecs.run("true", ["i-sim00001"])
    assert ecs.call(make(DescribeCommandsRequest))["Commands"]["Command"] == []
    err = ecs.fails(make(InvokeCommandRequest, CommandId=answer["CommandId"],
                         InstanceIds=["i-sim00001"]))
    assert err.get_error_code() == "InvalidCmdId.NotFound"


def test_run_command_with_keep_command_keeps_it_for_invoke_command(ecs: Ecs) -> None:
    answer = ecs.run("true", ["i-sim00001"], KeepCommand=True)
    assert _invoke(ecs, answer["CommandId"], ["i-sim00002"]).startswith("t-")


def test_run_command_with_the_same_client_token_runs_once(ecs: Ecs) -> None:
    first = ecs.run("echo once", ["i-sim00001"], ClientToken="run-1")
    again = ecs.run("echo once", ["i-sim00001"], ClientToken="run-1")
    assert first["InvokeId"] == again["InvokeId"] and first["CommandId"] == again["CommandId"]


# --- InvokeCommand: instances -------------------------------------------------------------

def test_an_invocation_of_100_simulated_instances_succeeds_everywhere(ecs: Ecs) -> None:
    invoke_id = _invoke(ecs, ecs.create(b64("echo hi")), SIM_IDS[:100])
    ecs.advance(5)
    records, token = [], ""
    while True:
        page = ecs.call(make(DescribeInvocationResultsRequest, InvokeId=invoke_id, MaxResults=50,
                             **({"NextToken": token} if token else {})))["Invocation"]
        records += page["InvocationResults"]["InvocationResult"]
        token = page["NextToken"]
        if not token:
            break
    assert len(records) == 100 and page["TotalCount"] == 100
    assert {r["InvocationStatus"] for r in records} == {"Success"}
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Success"


def test_an_invocation_of_101_instances_exceeds_the_limit(ecs: Ecs) -> None:
    err = ecs.fails(make(InvokeCommandRequest, CommandId=ecs.create(b64("true")),
                         InstanceIds=SIM_IDS[:101]))
    assert (err.get_error_code(), err.get_http_status()) == ("InstanceIds.ExceedLimit", 403)


def test_an_unknown_instance_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-proc1", "i-nowhere"]))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidInstance.NotFound", 404)
    assert "i-nowhere" in err.get_error_msg()


def test_an_invocation_needs_an_instance(ecs: Ecs) -> None:
    err = ecs.fails(make(InvokeCommandRequest, CommandId=ecs.create(b64("true"))))
    assert (err.get_error_code(), err.get_http_status()) == ("MissingParam.InstanceId", 400)


def test_an_invoke_command_timeout_below_10_seconds_is_invalid(ecs: Ecs) -> None:
    err = ecs.fails(make(InvokeCommandRequest, CommandId=ecs.create(b64("true")),
                         InstanceIds=["i-sim00001"], Timeout=5))
    assert err.get_error_code() == "InvalidParameter.Timeout"


def test_invoke_command_client_token_same_parameters_same_invoke_id(ecs: Ecs) -> None:
    command_id = ecs.create(b64("true"))
    first = _invoke(ecs, command_id, ["i-sim00001"], ClientToken="inv-1")
    assert _invoke(ecs, command_id, ["i-sim00001"], ClientToken="inv-1") == first
    assert len(ecs.call(make(DescribeInvocationsRequest, CommandId=command_id))
               ["Invocations"]["Invocation"]) == 1


def test_invoke_command_client_token_other_parameters_is_a_mismatch(ecs: Ecs) -> None:
    command_id = ecs.create(b64("true"))
    _invoke(ecs, command_id, ["i-sim00001"], ClientToken="inv-2")
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-sim00002"],
                         ClientToken="inv-2"))
    assert (err.get_error_code(), err.get_http_status()) == ("IdempotentParameterMismatch", 403)


def test_an_unknown_repeat_mode_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(InvokeCommandRequest, CommandId=ecs.create(b64("true")),
                         InstanceIds=["i-sim00001"], RepeatMode="Sometimes"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidRepeatMode.NotFound", 404)


def test_an_unknown_termination_mode_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], TerminationMode="Gently"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidTerminationMode.NotFound", 404)


def test_dry_run_checks_without_running(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], RepeatMode="DryRun"))
    assert (err.get_error_code(), err.get_http_status()) == ("DryRunOperation", 400)
    assert ecs.call(make(DescribeInvocationsRequest))["Invocations"]["Invocation"] == []


def test_dry_run_names_an_instance_that_cannot_run_the_command(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001", "i-noagent"], RepeatMode="DryRun"))
    assert err.get_error_code() == "InvalidInstance.NotMatch"
    assert "ClientNotRunning" in err.get_error_msg()


def test_a_client_token_over_64_characters_is_malformed(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], ClientToken="t" * 65))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidClientToken.Malformed", 400)


def test_a_username_over_255_characters_is_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], Username="u" * 256))
    assert (err.get_error_code(), err.get_http_status()) == ("Username.ExceedLimit", 403)


def test_a_launcher_over_1_kb_is_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], Launcher="l" * 1025))
    assert (err.get_error_code(), err.get_http_status()) == \
        ("InvalidLauncher.LengthLimitExceeded", 403)


def test_an_unknown_content_encoding_counts_as_run_commands_plain_text(ecs: Ecs) -> None:
    answer = ecs.run("echo as-is", ["i-proc1"], ContentEncoding="Rot13")
    assert ecs.wait_done(answer["InvokeId"])["i-proc1"]["Output"] == b64("as-is\n")


# --- parameters ---------------------------------------------------------------------------

def test_parameters_and_built_ins_are_substituted(ecs: Ecs) -> None:
    command_id = ecs.create(b64("echo {{greeting}} {{ ACS::InstanceId }} {{ACS::InstanceName}}"
                                " {{unset}}."), EnableParameter=True)
    invoke_id = _invoke(ecs, command_id, ["i-proc1"], Parameters=json.dumps({"greeting": "hi"}))
    record = ecs.wait_done(invoke_id)["i-proc1"]
    assert record["Output"] == b64("hi i-proc1 proc-1 .\n")


def test_a_parameter_the_command_does_not_define_is_not_matched(ecs: Ecs) -> None:
    command_id = ecs.create(b64("echo {{a}}"), EnableParameter=True)
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-sim00001"],
                         Parameters=json.dumps({"b": "1"})))
    assert (err.get_error_code(), err.get_http_status()) == ("Parameter.NotMatched", 403)


def test_parameters_for_a_command_without_enable_parameter_are_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(InvokeCommandRequest, CommandId=ecs.create(b64("echo {{a}}")),
                         InstanceIds=["i-sim00001"], Parameters=json.dumps({"a": "1"})))
    assert (err.get_error_code(), err.get_http_status()) == ("Parameter.Disabled", 400)


def test_more_than_10_parameters_are_refused(ecs: Ecs) -> None:
    names = [f"p{n}" for n in range(11)]
    command_id = ecs.create(b64(" ".join(f"{{{{{n}}}}}" for n in names)), EnableParameter=True)
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-sim00001"],
                         Parameters=json.dumps(dict.fromkeys(names, "x"))))
    assert (err.get_error_code(), err.get_http_status()) == ("ParameterCount.ExceedLimit", 403)


# --- per-instance outcomes ----------------------------------------------------------------

def test_a_non_zero_exit_code_fails_the_run(ecs: Ecs) -> None:
    record = ecs.wait_done(ecs.run("echo out; exit 7", ["i-proc1"])["InvokeId"])["i-proc1"]
    assert (record["InvocationStatus"], record["ExitCode"], record["ErrorCode"]) == \
        ("Failed", 7, "ExitCodeNonzero")
    assert record["InvokeRecordStatus"] == "Finished"  # the legacy wording, as documented


def test_a_timeout_kills_the_process_tree_and_reports_execution_timeout(ecs: Ecs) -> None:
    marker = sleep_marker()
    started = time.monotonic()
    answer = ecs.run(f"sleep {marker} & wait", ["i-proc1"], Timeout=1)
    deadline = time.monotonic() + 1
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        children = host_pids(marker)
    record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
    assert time.monotonic() - started < 5
    assert (record["InvocationStatus"], record["ErrorCode"]) == ("Timeout", "ExecutionTimeout")
    time.sleep(0.1)
    assert children and not any(alive(c) for c in children)  # the child went with its parent


def test_a_simulated_run_longer_than_its_timeout_times_out_on_the_clock(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-slow"], Timeout=30)["InvokeId"]
    ecs.advance(30)
    record = ecs.by_instance(invoke_id)["i-slow"]
    assert (record["InvocationStatus"], record["ErrorCode"]) == ("Timeout", "ExecutionTimeout")


def test_output_over_24_kb_is_truncated_and_the_rest_counted_as_dropped(ecs: Ecs) -> None:
    answer = ecs.run("head -c 30000 /dev/zero | tr '\\0' a", ["i-proc1"])
    record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
    assert record["InvocationStatus"] == "Success"
    assert record["Output"] == b64("a" * 24576)
    assert record["Dropped"] == 30000 - 24576


def test_a_missing_working_directory_is_reported_per_instance(ecs: Ecs) -> None:
    answer = ecs.run("pwd", ["i-proc1"], WorkingDir="/no/such/dir")
    record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
    assert (record["InvocationStatus"], record["ErrorCode"]) == ("Invalid", "DirectoryNotExists")


def test_an_unknown_user_is_reported_per_instance(ecs: Ecs) -> None:
    answer = ecs.run("id", ["i-proc1"], Username="no-such-user-here")
    record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
    assert (record["InvocationStatus"], record["ErrorCode"]) == ("Invalid", "AccountNotExists")


@pytest.mark.parametrize(("instance", "content", "reason"), [
    ("i-stopped", "true", "InstanceNotRunning"),
    ("i-noagent", "true", "ClientNotRunning"),
    ("i-win", "echo hi", "CommandNotApplicable"),
])
def test_an_unfit_instance_fails_the_whole_call_and_nothing_is_created(
        ecs: Ecs, instance: str, content: str, reason: str) -> None:
    """InvokeCommand's usage notes: one instance that does not meet the requirements fails
    the call; RunCommand's own command goes with it."""
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent=content,
                         InstanceIds=["i-sim00001", instance]))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidInstance.NotMatch", 400)
    assert instance in err.get_error_msg() and reason in err.get_error_msg()
    command_id = ecs.create(b64("true"))
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id,
                         InstanceIds=[instance, "i-sim00002"]))
    assert err.get_error_code() == "InvalidInstance.NotMatch"
    assert ecs.call(make(DescribeInvocationsRequest))["Invocations"]["Invocation"] == []
    commands = ecs.call(make(DescribeCommandsRequest))["Commands"]["Command"]
    assert [c["CommandId"] for c in commands] == [command_id]


def test_a_bat_script_runs_on_the_simulated_windows_instance(ecs: Ecs) -> None:
    invoke_id = ecs.run("echo hi", ["i-win"], Type="RunBatScript")["InvokeId"]
    ecs.advance(1)
    assert ecs.by_instance(invoke_id)["i-win"]["InvocationStatus"] == "Success"


# --- overall status -----------------------------------------------------------------------

@pytest.mark.parametrize(("ids", "overall", "legacy"), [
    (["i-sim00001", "i-sim00002"], "Success", "Finished"),
    (["i-fail", "i-fail2"], "Failed", "Finished"),  # legacy: exit≠0 is "Finished"
    (["i-sim00001", "i-fail"], "PartialFailed", "Finished"),
])
def test_the_overall_status_aggregates_the_instances(
        ecs: Ecs, ids: list[str], overall: str, legacy: str) -> None:
    invoke_id = ecs.run("true", ids)["InvokeId"]
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Running"
    ecs.advance(5)
    invocation = ecs.invocation(invoke_id)
    assert (invocation["InvocationStatus"], invocation["InvokeStatus"]) == (overall, legacy)


def test_describe_invocations_filters_on_the_overall_status(ecs: Ecs) -> None:
    ok = ecs.run("true", ["i-sim00001"])["InvokeId"]
    bad = ecs.run("true", ["i-fail"])["InvokeId"]
    ecs.advance(5)
    page = ecs.call(make(DescribeInvocationsRequest, InvokeStatus="Failed"))
    assert [i["InvokeId"] for i in page["Invocations"]["Invocation"]] == [bad]
    assert ok != bad


def test_describe_invocations_includes_output_only_when_asked(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00001"])["InvokeId"]
    ecs.advance(5)
    plain = ecs.invocation(invoke_id)["InvokeInstances"]["InvokeInstance"][0]
    full = ecs.invocation(invoke_id, IncludeOutput=True, ContentEncoding="PlainText")
    assert plain["Output"] == ""
    assert full["InvokeInstances"]["InvokeInstance"][0]["Output"] == "sim-ok\n"
    assert full["CommandContent"] == "true"


def test_describe_invocation_results_pages_with_page_number(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", SIM_IDS[:25])["InvokeId"]
    page = ecs.call(make(DescribeInvocationResultsRequest, InvokeId=invoke_id, PageNumber=3,
                         PageSize=10))["Invocation"]
    assert (page["TotalCount"], page["PageNumber"], page["PageSize"]) == (25, 3, 10)
    assert [r["InstanceId"] for r in page["InvocationResults"]["InvocationResult"]] == \
        SIM_IDS[20:25]


def test_describe_invocation_results_of_an_unknown_invoke_id_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(DescribeInvocationResultsRequest, InvokeId="t-missing"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidInvokeId.NotFound", 404)
