"""Issue 13, item 2: a saved command is judged by what it is, and AllowedCommands pins which run.

With ``AllowedTypes=RunShellScript``, ``{"CommandId": <a saved RunPowerShellScript>,
"InstanceIds": [<windows>]}`` was accepted and ran, and a ``Type`` sent beside ``CommandId``
replaced the saved command's type in pre-flight. Now the intake looks the saved command up
(one DescribeCommands) before anything runs whenever the allow-list or a ``Type`` beside it
needs it: its own type meets ``AllowedTypes`` (403), a contradicting ``Type`` is a 400, and
``AllowedCommands`` (ids, names, name prefixes ending in ``*``) pins the saved commands a
deployment runs at all. Everything through the real webhook of a local cloud started with
those parameters; "nothing invoked" is asked of Cloud Assistant itself.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest

from local.cloud import LocalCloud
from tests.functional.test_round_trips import Counted
from tests.functional.test_submit import created, invocations_of, output_of
from tests.localcloud import Endpoints

LINUX, WINDOWS = "i-local00000000000001", "i-local0000000000000w"


def save(endpoints: Endpoints, name: str, type_: str, script: str) -> str:
    """CreateCommand with the account owner's keys: a command saved outside assistflow."""
    create = CreateCommandRequest()
    create.set_Name(name)
    create.set_Type(type_)
    create.set_CommandContent(base64.b64encode(script.encode()).decode())
    command_id: str = endpoints.call(create)["CommandId"]
    return command_id


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counted]:
    cloud = LocalCloud(tmp_path_factory.mktemp("saved-allow"), parameters={
        "AllowedTypes": "RunShellScript", "AllowedCommands": "ops-*, nightly-report",
        "MaintenanceEnabled": False})
    yield Counted(cloud.start())
    cloud.stop()


def refused_without_invoking(endpoints: Counted, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body``; assert no command or invocation came of it; the answer."""
    before = created(endpoints)
    endpoints.calls(reset=True)
    status, answer = endpoints.post(body)
    calls = endpoints.calls()
    assert not {"InvokeCommand", "RunCommand", "CreateCommand"} & set(calls), calls
    assert created(endpoints) == before
    return {"Status": status, **answer}


def test_the_saved_powershell_command_under_allowed_types_shell_is_403_and_nothing_runs(
        pinned: Counted, tally: Any) -> None:
    command_id = save(pinned, "ops-windows", "RunPowerShellScript", "Get-Date")
    answer = refused_without_invoking(pinned, {"CommandId": command_id,
                                               "InstanceIds": [WINDOWS]})
    tally["saved commands refused by the allow-list"] += 1
    assert answer["Status"] == 403, answer
    assert [(e["path"], e["rule"]) for e in answer["Errors"]] == [("$.CommandId", "allowList")]
    assert "RunPowerShellScript" in answer["Errors"][0]["message"]
    assert invocations_of(pinned, command_id) == []


def test_a_type_that_contradicts_the_saved_command_is_400_and_never_stands_in_for_it(
        pinned: Counted) -> None:
    command_id = save(pinned, "ops-windows-2", "RunPowerShellScript", "Get-Date")
    answer = refused_without_invoking(pinned, {"CommandId": command_id, "Type": "RunShellScript",
                                               "InstanceIds": [WINDOWS]})
    assert answer["Status"] == 400, answer
    assert [(e["path"], e["rule"]) for e in answer["Errors"]] == [("$.Type", "savedType")]
    assert invocations_of(pinned, command_id) == []


def test_a_saved_command_outside_allowed_commands_is_403(pinned: Counted) -> None:
    command_id = save(pinned, "cleanup", "RunShellScript", "echo not pinned")
    answer = refused_without_invoking(pinned, {"CommandId": command_id, "InstanceIds": [LINUX]})
    assert answer["Status"] == 403, answer
    assert [(e["path"], e["rule"]) for e in answer["Errors"]] == [("$.CommandId", "allowList")]
    assert "AllowedCommands" in answer["Errors"][0]["message"] or \
        "ALLOWED_COMMANDS" in answer["Errors"][0]["message"]
    assert invocations_of(pinned, command_id) == []


@pytest.mark.parametrize("name", ["ops-linux", "nightly-report"])
def test_a_pinned_shell_command_runs_after_one_lookup(pinned: Counted, name: str) -> None:
    command_id = save(pinned, name, "RunShellScript", f"echo {name}")
    pinned.calls(reset=True)
    status, body = pinned.post({"CommandId": command_id, "InstanceIds": [LINUX]})
    assert status == 202, body
    assert output_of(pinned, body["InvokeId"], LINUX) == f"{name}\n".encode()
    pinned.summary(body["InvokeId"])
    calls = pinned.calls()
    # looked up once, before invoking; pre-flight and the deadline reuse what it said
    assert (calls.get("DescribeCommands"), calls.get("InvokeCommand")) == (1, 1), calls


def test_without_an_allow_list_a_type_beside_command_id_is_checked_not_used(
        endpoints: Endpoints) -> None:
    """On the session's cloud (no allow-list): the lie is a 400 up front; the truth lets
    pre-flight judge each instance by the saved command's own type."""
    shell = save(endpoints, "assistflow-saved-shell", "RunShellScript", "echo shell")
    before = created(endpoints)
    status, body = endpoints.post({"CommandId": shell, "Type": "RunPowerShellScript",
                                   "InstanceIds": [WINDOWS]})
    assert status == 400 and body["Errors"][0]["rule"] == "savedType", body
    assert created(endpoints) == before
    powershell = save(endpoints, "assistflow-saved-ps", "RunPowerShellScript", "Get-Date")
    status, body = endpoints.post({"CommandId": powershell, "InstanceIds": [LINUX, WINDOWS],
                                   "OnIneligible": "Skip"})
    assert status == 202, body
    assert [(s["InstanceId"], s["Reason"]) for s in body["Skipped"]] == [
        (LINUX, "OSTypeMismatch")]
