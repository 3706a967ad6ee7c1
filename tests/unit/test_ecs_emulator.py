"""The local Cloud Assistant through aliyun-python-sdk-ecs: commands, signing, the test fleet.

This module also holds what the other ``test_ecs_*`` files share: the test fleet, ``start_ecs``
(an emulator on a free port with that fleet) and ``Ecs``, a small driver around the official
SDK and the control API. One behaviour per test; time is moved with the control API's
``advance`` instead of sleeping, except where a real process must run.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest
from aliyunsdkecs.request.v20140526.DeleteCommandRequest import DeleteCommandRequest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
    DescribeInvocationResultsRequest,
)
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest
from aliyunsdkecs.request.v20140526.ModifyCommandRequest import ModifyCommandRequest
from aliyunsdkecs.request.v20140526.RunCommandRequest import RunCommandRequest

from local.emulators.base import KeyRing
from local.emulators.ecs import EcsApp
from local.emulators.server import EmulatorServer

AK, SECRET = "LTAIlocaltestkey", "local-test-secret"
STS_AK, STS_SECRET, STS_TOKEN = "STS.localtestkey", "sts-secret", "sts-token-value"
REGION = "cn-hangzhou"
NO_PROXY = {"http": None, "https": None}
TERMINAL = {"Success", "Failed", "Timeout", "Error", "Invalid", "Aborted", "Cancelled",
            "Terminated"}
SIM_IDS = [f"i-sim{n:05d}" for n in range(1, 121)]

FLEET: list[dict[str, Any]] = [
    {"InstanceId": "i-proc1", "InstanceName": "proc-1", "Mode": "process"},
    {"InstanceId": "i-proc2", "InstanceName": "proc-2", "Mode": "process"},
    {"InstanceId": "i-stopped", "Status": "Stopped", "Mode": "simulated"},
    {"InstanceId": "i-noagent", "AgentInstalled": False, "AgentVersion": "", "Mode": "simulated"},
    {"InstanceId": "i-win", "OSType": "windows", "Mode": "simulated"},
    {"InstanceId": "i-sim", "InstanceName": "sim", "Count": 120, "Mode": "simulated",
     "Simulated": {"Output": "sim-ok\n", "ExitCode": 0, "Duration": 5}},
    {"InstanceId": "i-fail", "Mode": "simulated",
     "Simulated": {"Output": "boom\n", "ExitCode": 3, "Duration": 5}},
    {"InstanceId": "i-fail2", "Mode": "simulated",
     "Simulated": {"Output": "boom\n", "ExitCode": 4, "Duration": 5}},
    {"InstanceId": "i-slow", "Mode": "simulated",
     "Simulated": {"Output": "slow\n", "ExitCode": 0, "Duration": 1000}},
    {"InstanceId": "i-chatty", "Mode": "simulated",
     "Simulated": {"Output": "x" * 30000, "ExitCode": 0, "Duration": 1}},
]


def make(cls: type[RpcRequest], **params: Any) -> RpcRequest:
    """An SDK request with ``set_<Name>(value)`` applied for each keyword."""
    req = cls()
    for name, value in params.items():
        getattr(req, f"set_{name}")(value)
    return req


class Ecs:
    """The official SDK and the control API pointed at one running emulator."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        assert isinstance(server.app, EcsApp)
        self.app: EcsApp = server.app
        self.host = server.url.split("://", 1)[1]
        self.sdk = self.client()

    def client(self, ak: str = AK, secret: str = SECRET, token: str | None = None,
               **kwargs: Any) -> AcsClient:
        if token is not None:
            client = AcsClient(region_id=REGION, credential=StsTokenCredential(ak, secret, token),
                               proxy=NO_PROXY, **kwargs)
        else:
            client = AcsClient(ak, secret, REGION, proxy=NO_PROXY, **kwargs)
        client.add_endpoint(REGION, "Ecs", self.host)
        return client

    def call(self, req: RpcRequest, client: AcsClient | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads((client or self.sdk).do_action_with_exception(req))
        return answer

    def fails(self, req: RpcRequest, client: AcsClient | None = None) -> ServerException:
        with pytest.raises(ServerException) as caught:
            self.call(req, client)
        return caught.value

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.server.url}/_emulator/{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=15) as resp:
            return json.loads(resp.read())

    def advance(self, seconds: float) -> None:
        self.control("POST", "advance", {"seconds": seconds})

    def run(self, content: str, ids: list[str], **params: Any) -> dict[str, Any]:
        return self.call(make(RunCommandRequest, Type=params.pop("Type", "RunShellScript"),
                              CommandContent=content, InstanceIds=ids, **params))

    def create(self, content_b64: str, name: str = "cmd", **params: Any) -> str:
        return str(self.call(make(CreateCommandRequest, Name=name, Type="RunShellScript",
                                  CommandContent=content_b64, **params))["CommandId"])

    def results(self, invoke_id: str, **params: Any) -> list[dict[str, Any]]:
        page = self.call(make(DescribeInvocationResultsRequest, InvokeId=invoke_id,
                              MaxResults=50, **params))
        records: list[dict[str, Any]] = page["Invocation"]["InvocationResults"]["InvocationResult"]
        return records

    def by_instance(self, invoke_id: str) -> dict[str, dict[str, Any]]:
        return {r["InstanceId"]: r for r in self.results(invoke_id)}

    def invocation(self, invoke_id: str, **params: Any) -> dict[str, Any]:
        page = self.call(make(DescribeInvocationsRequest, InvokeId=invoke_id, **params))
        invocation: dict[str, Any] = page["Invocations"]["Invocation"][0]
        return invocation

    def wait_done(self, invoke_id: str, timeout: float = 10) -> dict[str, dict[str, Any]]:
        """Results once every instance is terminal (for process-mode runs, in real time)."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.by_instance(invoke_id)
            if all(r["InvocationStatus"] in TERMINAL for r in records.values()):
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"{invoke_id} still running: {records}")
            time.sleep(0.05)


@contextmanager
def start_ecs(state_dir: Path, fleet: list[dict[str, Any]] | None = None,
              agent_workers: int = 32) -> Iterator[Ecs]:
    """An emulator over ``fleet`` (the test fleet by default), stopped afterwards."""
    (state_dir / "instances.json").write_text(json.dumps({"instances": fleet or FLEET}))
    keyring = KeyRing({AK: (SECRET, None), STS_AK: (STS_SECRET, STS_TOKEN)})
    server = EmulatorServer(EcsApp(keyring, state_dir, agent_workers=agent_workers)).start()
    try:
        yield Ecs(server)
    finally:
        server.stop()


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent that does not reap (PID 1 here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path) as driver:
        yield driver


# --- CreateCommand / DescribeCommands / ModifyCommand / DeleteCommand -------------------------

def test_create_command_content_is_base64_by_default(ecs: Ecs) -> None:
    command_id = ecs.create(b64("echo 123"), Description="says 123")
    [command] = ecs.call(make(DescribeCommandsRequest, CommandId=command_id))["Commands"]["Command"]
    assert command_id.startswith("c-")
    assert command["CommandContent"] == b64("echo 123")
    assert (command["Name"], command["Description"], command["Timeout"]) == ("cmd", "says 123", 60)


def test_create_command_accepts_plain_text_content(ecs: Ecs) -> None:
    command_id = ecs.create("echo plain", ContentEncoding="PlainText")
    page = ecs.call(make(DescribeCommandsRequest, CommandId=command_id, ContentEncoding="PlainText"))
    assert page["Commands"]["Command"][0]["CommandContent"] == "echo plain"


def test_create_command_with_the_same_client_token_returns_the_same_command(ecs: Ecs) -> None:
    first = ecs.create(b64("echo 1"), ClientToken="token-1")
    again = ecs.create(b64("echo 1"), ClientToken="token-1")
    assert first == again
    assert len(ecs.call(make(DescribeCommandsRequest))["Commands"]["Command"]) == 1


def test_create_command_token_reused_with_other_parameters_is_a_mismatch(ecs: Ecs) -> None:
    ecs.create(b64("echo 1"), ClientToken="token-2")
    err = ecs.fails(make(CreateCommandRequest, Name="cmd", Type="RunShellScript",
                         CommandContent=b64("echo 2"), ClientToken="token-2"))
    assert (err.get_error_code(), err.get_http_status()) == ("IdempotentParameterMismatch", 403)


def test_an_unknown_command_type_is_invalid_cmd_type(ecs: Ecs) -> None:
    err = ecs.fails(make(CreateCommandRequest, Name="x", Type="RunPythonScript",
                         CommandContent=b64("print(1)")))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidCmdType.NotFound", 403)


def test_content_over_24_kb_in_base64_is_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(CreateCommandRequest, Name="big", Type="RunShellScript",
                         CommandContent=b64("#" * 18500)))  # 24,668 Base64 characters
    assert (err.get_error_code(), err.get_http_status()) == ("CmdContent.ExceedLimit", 403)


@pytest.mark.parametrize(("field", "value", "code", "status"), [
    ("Name", "n" * 129, "CmdName.ExceedLimit", 403),
    ("Description", "d" * 513, "CmdDesc.ExceedLimit", 403),
    ("WorkingDir", "/" + "w" * 200, "InvalidParameter.WorkingDir", 400),
])
def test_name_description_and_working_dir_lengths_are_limited(
        ecs: Ecs, field: str, value: str, code: str, status: int) -> None:
    params: dict[str, Any] = {"Name": "ok", "Type": "RunShellScript", "CommandContent": b64("true")}
    params[field] = value
    err = ecs.fails(make(CreateCommandRequest, **params))
    assert (err.get_error_code(), err.get_http_status()) == (code, status)


def test_parameter_names_of_an_enable_parameter_command_are_listed(ecs: Ecs) -> None:
    command_id = ecs.create(b64("echo {{ name }} {{Port}} {{ACS::InstanceId}} {{name}}"),
                            EnableParameter=True)
    [command] = ecs.call(make(DescribeCommandsRequest, CommandId=command_id))["Commands"]["Command"]
    assert command["EnableParameter"] is True
    assert command["ParameterNames"]["ParameterName"] == ["name", "Port"]


def test_an_acs_prefix_that_is_no_built_in_is_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(CreateCommandRequest, Name="x", Type="RunShellScript",
                         CommandContent=b64("echo {{ACS::Nope}}"), EnableParameter=True))
    assert (err.get_error_code(), err.get_http_status()) == ("CmdParam.InvalidParamName", 403)


def test_the_retained_command_quota_is_enforced(ecs: Ecs) -> None:
    ecs.app.model.command_quota = 2
    ecs.create(b64("true"))
    ecs.create(b64("true"))
    err = ecs.fails(make(CreateCommandRequest, Name="third", Type="RunShellScript",
                         CommandContent=b64("true")))
    assert (err.get_error_code(), err.get_http_status()) == ("CmdCount.ExceedQuota", 403)


def test_modify_command_changes_name_description_timeout_and_working_dir(ecs: Ecs) -> None:
    command_id = ecs.create(b64("pwd"))
    ecs.call(make(ModifyCommandRequest, CommandId=command_id, Name="renamed", Description="new",
                  Timeout=120, WorkingDir="/tmp", CommandContent=b64("ignored")))
    [command] = ecs.call(make(DescribeCommandsRequest, CommandId=command_id))["Commands"]["Command"]
    assert (command["Name"], command["Description"], command["Timeout"],
            command["WorkingDir"]) == ("renamed", "new", 120, "/tmp")
    assert command["CommandContent"] == b64("pwd")  # CommandContent is deprecated: no effect


def test_modify_command_of_an_unknown_id_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(ModifyCommandRequest, CommandId="c-missing", Name="x"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidCmdId.NotFound", 404)


def test_a_deleted_command_cannot_be_invoked(ecs: Ecs) -> None:
    command_id = ecs.create(b64("true"))
    ecs.call(make(DeleteCommandRequest, CommandId=command_id))
    err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-proc1"]))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidCmdId.NotFound", 404)


def test_describe_commands_filters_by_name_wildcard(ecs: Ecs) -> None:
    for name in ("deploy-web", "deploy-db", "cleanup"):
        ecs.create(b64("true"), name=name)
    page = ecs.call(make(DescribeCommandsRequest, Name="deploy-*"))
    assert sorted(c["Name"] for c in page["Commands"]["Command"]) == ["deploy-db", "deploy-web"]


def test_describe_commands_pages_with_page_number_and_size(ecs: Ecs) -> None:
    for n in range(5):
        ecs.create(b64("true"), name=f"c{n}")
    page = ecs.call(make(DescribeCommandsRequest, PageNumber=2, PageSize=2))
    assert (page["TotalCount"], page["PageNumber"], page["PageSize"]) == (5, 2, 2)
    assert [c["Name"] for c in page["Commands"]["Command"]] == ["c2", "c1"]  # newest first


def test_describe_commands_pages_with_max_results_and_next_token(ecs: Ecs) -> None:
    for n in range(5):
        ecs.create(b64("true"), name=f"c{n}")
    names, token = [], ""
    while True:
        req = make(DescribeCommandsRequest, MaxResults=2, **({"NextToken": token} if token else {}))
        page = ecs.call(req)
        names += [c["Name"] for c in page["Commands"]["Command"]]
        token = page["NextToken"]
        if not token:
            break
    assert names == ["c4", "c3", "c2", "c1", "c0"]


def test_a_page_size_over_50_is_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(DescribeCommandsRequest, PageSize=51))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidParam.PageSize", 403)


# --- authentication -----------------------------------------------------------------------

def test_a_wrong_secret_is_recognised_by_the_sdk_from_the_string_to_sign(ecs: Ecs) -> None:
    # aliyunsdkcore compares the server's string-to-sign (after the colon) with its own and,
    # when they agree, reports the secret as the culprit.
    err = ecs.fails(make(DescribeCommandsRequest), ecs.client(secret="not-the-secret"))
    assert err.get_error_code() == "InvalidAccessKeySecret"
    assert err.get_http_status() == 400


def test_an_unknown_access_key_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(DescribeCommandsRequest), ecs.client(ak="LTAInobody"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


def test_sts_credentials_with_their_security_token_are_accepted(ecs: Ecs) -> None:
    client = ecs.client(STS_AK, STS_SECRET, STS_TOKEN)
    assert ecs.call(make(DescribeCommandsRequest), client)["TotalCount"] == 0


def test_an_sts_key_without_its_token_is_refused(ecs: Ecs) -> None:
    err = ecs.fails(make(DescribeCommandsRequest), ecs.client(STS_AK, STS_SECRET))
    assert err.get_error_code() == "InvalidSecurityToken.Mismatch"
