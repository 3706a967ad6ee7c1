"""Issue 13 item 10, the local sandbox: a process instance's script stays in its instance root.

Reported: ``WorkingDir: "/../../../../"`` ran in the checkout, and a script printed the webhook
secret and the access keys from the state directory's ``endpoints.json`` into its
``output.txt``. Each script here goes the whole way — signed webhook, function, RunCommand,
the local agent — and its stored ``output.txt`` is what is checked, as in the report.

These hold where the machine lets ``unshare`` create user namespaces (this machine, as root or
not; see local/emulators/ecs/sandbox.py): the first test fails loudly where it does not,
rather than letting the others pass for the wrong reason.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, get_object, wait_for

LINUX = "i-local00000000000001"
CHECKOUT = Path(__file__).resolve().parents[2]


def run(endpoints: Endpoints, script: str, **extra: Any) -> tuple[dict[str, Any], str]:
    """Run ``script`` on the first local instance; its result.json and output.txt."""
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": script,
                                   "InstanceIds": [LINUX],
                                   "ClientToken": uuid.uuid4().hex, **extra})
    assert status == 202, body
    prefix = f"results/{body['InvokeId']}/{LINUX}"
    result = json.loads(wait_for(lambda: get_object(endpoints.bucket(), f"{prefix}/result.json"),
                                 timeout=20))
    output = get_object(endpoints.bucket(), f"{prefix}/output.txt") or b""
    return result, output.decode()


def test_scripts_run_in_namespaces_on_this_machine(cloud: LocalCloud) -> None:
    assert cloud._ecs_app().model.agent.isolated(), "unshare cannot sandbox scripts here"


def test_working_dir_cannot_climb_out_of_the_instance_root(endpoints: Endpoints) -> None:
    result, output = run(endpoints, "pwd; ls -a", WorkingDir="/../../../../")
    assert result["Status"] == "Success", result
    where, *listing = output.split()
    assert where == "/"  # the instance's own /, as on a real instance
    assert {"root", "tmp", "usr"} <= set(listing)
    assert not {"pyproject.toml", "template.yml", ".assistflow", "state"} & set(listing)
    result, output = run(endpoints, "cd ../../../../../../..; pwd; ls", WorkingDir="/root")
    assert output.split()[0] == "/" and "pyproject.toml" not in output


def test_a_working_dir_missing_in_the_instance_root_is_directory_not_exists(
        endpoints: Endpoints) -> None:
    result, _ = run(endpoints, "pwd", WorkingDir=str(CHECKOUT))  # exists on the host only
    assert (result["Status"], result["ErrorCode"]) == ("Invalid", "DirectoryNotExists")


def test_a_script_cannot_read_the_state_directory(cloud: LocalCloud,
                                                  endpoints: Endpoints) -> None:
    state = Path(endpoints["state_dir"]).resolve()
    script = "; ".join([
        f"cat {state}/endpoints.json {state}/keys.json",
        "cat ../../../endpoints.json ../../../../endpoints.json ../../../../keys.json",
        f"cat /proc/1/root{state}/endpoints.json /proc/self/root{state}/keys.json",
        "cat /proc/1/environ; ls -l /proc/1/fd",
        "find / -xdev \\( -name endpoints.json -o -name keys.json \\) 2>/dev/null",
        "echo done"])
    _, output = run(endpoints, script, WorkingDir="/")
    assert output.rstrip().endswith("done"), output
    assert cloud.keys is not None
    secrets = {"webhook secret": cloud.keys.webhook_secret,
               "access key secret": cloud.keys.access_key_secret,
               "STS secret": cloud.keys.sts_access_key_secret,
               "STS token": cloud.keys.security_token}
    for name, value in secrets.items():
        assert value not in output, f"the {name} reached output.txt"
    _, output = run(endpoints, "cat /proc/1/cmdline")  # the sandbox's first process
    assert str(state) not in output  # not even where the state directory is


def test_the_checkout_the_users_home_and_the_hosts_files_are_out_of_reach(
        endpoints: Endpoints, tmp_path: Path) -> None:
    home = Path.home()
    secret = tmp_path / "host-secret.txt"  # readable by this user on the host
    secret.write_text(f"host-only {uuid.uuid4().hex}\n")
    _, output = run(endpoints, f"cat {CHECKOUT}/pyproject.toml {secret}; "
                               f"ls -a {home} {CHECKOUT}; ls -a /root; echo done")
    assert output.rstrip().endswith("done"), output
    assert "[project]" not in output and "template.yml" not in output
    assert secret.read_text().strip() not in output
    in_home = {entry.name for entry in home.iterdir()} - {".", ".."}
    assert not in_home & set(output.split()), "the host user's home is visible"


def test_a_script_has_no_power_over_the_system_directories(endpoints: Endpoints) -> None:
    probe = Path(f"/usr/bin/assistflow-probe-{uuid.uuid4().hex[:12]}")
    try:
        _, output = run(endpoints, f"touch {probe}; mount -o remount,rw /usr; touch {probe}; "
                                   "grep Cap /proc/self/status; echo done")
        assert output.rstrip().endswith("done")
        assert not probe.exists(), "a script wrote into the host's /usr"
    finally:
        probe.unlink(missing_ok=True)  # where nothing isolates scripts, do not leave it there
    caps = dict(line.split(":\t") for line in output.splitlines() if line.startswith("Cap"))
    assert caps and set(caps.values()) == {"0000000000000000"}, caps


def test_username_runs_the_script_as_that_account(endpoints: Endpoints) -> None:
    result, output = run(endpoints, "id -un; id -u; echo $HOME", Username="nobody")
    assert result["Status"] == "Success", result
    assert output.split() == ["nobody", "65534", "/nonexistent"]
    result, output = run(endpoints, "id -un; id -u")
    assert output.split() == ["root", "0"]  # the default: root of the instance only
    result, _ = run(endpoints, "id", Username="no-such-account")
    assert (result["Status"], result["ErrorCode"]) == ("Invalid", "AccountNotExists")
