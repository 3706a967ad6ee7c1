"""`assistflow invocations …` and `assistflow commands …` against the session's local cloud.

The real entry point in a subprocess; what it changed is checked through the official ECS SDK
(DescribeInvocations / DescribeCommands), not through the CLI itself.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, wait_for

REPO = Path(__file__).resolve().parents[2]
INSTANCE = "i-local00000000000003"


def cli(cloud: LocalCloud, *args: str, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(cloud.state_dir)}
    return subprocess.run([sys.executable, "-m", "local", *args], cwd=REPO, env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def submit(cloud: LocalCloud, script: str, timeout: int = 60) -> dict[str, Any]:
    body = json.dumps({"Type": "RunShellScript", "CommandContent": script, "Timeout": timeout,
                       "InstanceIds": [INSTANCE]})
    done = cli(cloud, "submit", "-", "--json", stdin=body)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def invocation(endpoints: Endpoints, invoke_id: str) -> dict[str, Any]:
    req = DescribeInvocationsRequest()
    req.set_InvokeId(invoke_id)
    return dict(endpoints.call(req)["Invocations"]["Invocation"][0])


def test_invocations_list_and_show(cloud: LocalCloud, endpoints: Endpoints) -> None:
    marker = uuid.uuid4().hex
    invoke_id = submit(cloud, f"echo {marker}")["InvokeId"]
    wait_for(lambda: invocation(endpoints, invoke_id)["InvocationStatus"] == "Success" or None)

    listed = cli(cloud, "invocations", "list", "--instance", INSTANCE, "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["INVOKE", "ID", "COMMAND", "TYPE", "STATUS", "INSTANCES",
                              "CREATED"]
    assert rows[0].split()[:5] == [invoke_id, "assistflow", "RunShellScript", "Success", "1"]
    as_json = json.loads(cli(cloud, "invocations", "list", "--limit", "3", "--json").stdout)
    assert 1 <= len(as_json) <= 3 and invoke_id in {item["InvokeId"] for item in as_json}

    shown = cli(cloud, "invocations", "show", invoke_id, "--output")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{invoke_id}  Success  command c-")
    assert f"{INSTANCE}  Success  0" in shown.stdout
    assert marker in shown.stdout  # --output: decoded from the API's Base64
    missing = cli(cloud, "invocations", "show", "t-doesnotexist0000")
    assert missing.returncode == 4 and "InvalidInvokeId.NotFound" in missing.stderr


def test_stop_a_long_running_invocation(cloud: LocalCloud, endpoints: Endpoints) -> None:
    invoke_id = submit(cloud, "sleep 60", timeout=120)["InvokeId"]
    wait_for(lambda: invocation(endpoints, invoke_id)["InvocationStatus"] == "Running" or None)

    done = cli(cloud, "invocations", "stop", invoke_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"stop requested for {invoke_id} on every instance")

    def terminated() -> bool | None:
        record = invocation(endpoints, invoke_id)
        status = record["InvokeInstances"]["InvokeInstance"][0]["InvocationStatus"]
        return True if status == "Terminated" else None

    started = time.monotonic()
    wait_for(terminated, timeout=15)
    assert time.monotonic() - started < 15  # killed, not timed out after 60 s
    shown = cli(cloud, "invocations", "show", invoke_id, "--json")
    record = json.loads(shown.stdout)
    assert record["InvocationStatus"] == "Stopped"
    assert record["InvokeInstances"]["InvokeInstance"][0]["InvocationStatus"] == "Terminated"
    # The collector stores the stopped run like any other; `results` says it did not succeed.
    results = wait_for(lambda: (lambda d: d if d.returncode != 4 else None)(
        cli(cloud, "results", invoke_id)), timeout=15)
    assert results.returncode == 1 and "Terminated" in results.stdout


def create_command(endpoints: Endpoints, name: str) -> str:
    req = CreateCommandRequest()
    req.set_Name(name)
    req.set_Type("RunShellScript")
    req.set_CommandContent(base64.b64encode(b"uptime\n").decode())
    req.set_Timeout(60)
    return str(endpoints.call(req)["CommandId"])


def saved(endpoints: Endpoints, command_id: str) -> list[dict[str, Any]]:
    req = DescribeCommandsRequest()
    req.set_CommandId(command_id)
    return list(endpoints.call(req)["Commands"]["Command"])


def test_commands_list_show_modify_delete(cloud: LocalCloud, endpoints: Endpoints) -> None:
    name = f"cli-{uuid.uuid4().hex[:12]}"
    command_id = create_command(endpoints, name)

    listed = cli(cloud, "commands", "list", "--name", name)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:4] == [command_id, name, "RunShellScript", "60"]

    shown = cli(cloud, "commands", "show", command_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().endswith("--- content\nuptime")

    modified = cli(cloud, "commands", "modify", command_id, "--name", f"{name}-2",
                   "--description", "nightly uptime", "--timeout", "300",
                   "--working-dir", "/tmp", "--json")
    assert modified.returncode == 0, modified.stderr
    assert json.loads(modified.stdout)["Name"] == f"{name}-2"
    (command,) = saved(endpoints, command_id)
    assert (command["Name"], command["Description"], command["Timeout"],
            command["WorkingDir"]) == (f"{name}-2", "nightly uptime", 300, "/tmp")
    nothing = cli(cloud, "commands", "modify", command_id)
    assert nothing.returncode == 2 and "nothing to modify" in nothing.stderr

    deleted = cli(cloud, "commands", "delete", command_id)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted {command_id}"
    assert saved(endpoints, command_id) == []
    gone = cli(cloud, "commands", "show", command_id)
    assert gone.returncode == 4 and "InvalidCmdId.NotFound" in gone.stderr
