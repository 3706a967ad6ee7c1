"""`assistflow submit` and `assistflow results` against the session's local cloud.

The real entry point (``python -m local``) in a subprocess, so stdout is a pipe: the progress
view must come out as plain lines. Each request carries a unique marker so that nothing another
test did can be mistaken for its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from local.cloud import LocalCloud
from tests.conftest import SIMULATED

REPO = Path(__file__).resolve().parents[2]
LINUX = ["i-local00000000000001", "i-local00000000000002"]
STOPPED = "i-local0000000000000s"
TABLE_HEADER = ["INSTANCE", "STATUS", "EXIT", "DURATION", "TRUNCATED"]


def cli(cloud: LocalCloud, *args: str, stdin: str | None = None, state: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(state or cloud.state_dir)}
    return subprocess.run([sys.executable, "-m", "local", *args], cwd=REPO, env=env,
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def request_file(tmp_path: Path, script: str, instances: list[str] | None = None,
                 **extra: Any) -> Path:
    path = tmp_path / f"request-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"Type": "RunShellScript", "CommandContent": script,
                                "InstanceIds": instances or LINUX, **extra}))
    return path


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The per-instance table at the end of the output: instance -> its columns."""
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.split() == TABLE_HEADER)
    rows = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if not cells or not cells[0].startswith("i-"):
            break
        rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("via", ["http", "queue", "direct"])
def test_submit_wait_shows_progress_then_the_per_instance_table(
        cloud: LocalCloud, tmp_path: Path, via: str) -> None:
    marker = uuid.uuid4().hex
    done = cli(cloud, "submit", str(request_file(tmp_path, f"echo {marker}")), "--via", via,
               "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    first = "queued as message" if via == "queue" else f"submitted via {via}: command c-"
    assert out.startswith(first), out
    progress = [line for line in out.splitlines() if "instance(s) finished" in line]
    assert progress, out  # plain lines: stdout is not a terminal
    assert all(line.startswith("[") for line in progress)  # each one timestamped, no ANSI
    assert "\x1b[" not in out
    assert "2/2 instance(s) finished: 2 ok, 0 failed, 0 running" in progress[-1]
    rows = table_rows(out)
    assert sorted(rows) == LINUX
    for cells in rows.values():
        assert cells[1:3] == ["Success", "0"] and cells[3].endswith("s") and cells[4] == "no"
    assert ": Success (Success 2); oss://assistflow-results/results/t-" in out
    invoke_id = next(line.split(":", 1)[0] for line in out.splitlines()
                     if line.startswith("t-") and ": Success (Success 2)" in line)
    assert "request r-" in out and "Success (Success 2) over 1 invocation(s)" in out
    result = cli(cloud, "results", invoke_id, "--instance", LINUX[0])
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout  # the instance's real output, read back from OSS


def test_failed_instances_exit_1_and_their_output_is_shown(cloud: LocalCloud,
                                                           tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    done = cli(cloud, "submit", str(request_file(tmp_path, f"echo {marker}; exit 3")), "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert {cells[1] for cells in rows.values()} == {"Failed"}
    assert {cells[2] for cells in rows.values()} == {"3"}
    for instance in LINUX:
        assert f"--- {instance} Failed (exit 3" in done.stdout
    assert f"    {marker}" in done.stdout
    assert ": Failed (Failed 2);" in done.stdout


@pytest.mark.parametrize("via", ["http", "queue", "direct"])
def test_an_invalid_request_exits_3_with_every_violation(cloud: LocalCloud, via: str) -> None:
    body = json.dumps({"Type": "RunPython", "CommandContent": "x", "InstanceIds": ["nope"]})
    done = cli(cloud, "submit", "-", "--via", via, stdin=body)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("assistflow submit: InvalidRequest (400): the command request "
                               "has 2 problems")
    assert any(line.startswith("  $.Type: ") for line in lines[1:])
    assert any(line.startswith("  $.InstanceIds[0]: ") for line in lines[1:])
    assert done.stdout == "" and "Traceback" not in done.stderr


def test_an_ineligible_instance_is_refused_with_exit_4(cloud: LocalCloud, tmp_path: Path) -> None:
    done = cli(cloud, "submit", str(request_file(tmp_path, "echo x", [STOPPED])))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "IneligibleInstances (422)" in done.stderr and "Stopped" in done.stderr


def test_json_output_keeps_stdout_parseable(cloud: LocalCloud, tmp_path: Path) -> None:
    done = cli(cloud, "submit", str(request_file(tmp_path, "echo json")), "--via", "direct",
               "--wait", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["Accepted"]["InvokeIds"] == list(report["Summaries"])
    assert {row["InstanceId"] for row in report["Instances"]} == set(LINUX)
    assert all(row["Status"] == "Success" for row in report["Instances"])
    assert "instance(s) finished" in done.stderr  # progress goes to stderr with --json
    assert report["Summaries"][report["Accepted"]["InvokeId"]]["Source"] == "cli"


def test_queue_submission_of_more_than_100_instances_finds_every_batch(
        cloud: LocalCloud, tmp_path: Path) -> None:
    instances = SIMULATED[:150]
    done = cli(cloud, "submit", str(request_file(tmp_path, f"echo {uuid.uuid4().hex}",
                                                 instances)), "--via", "queue", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    found = next(line for line in done.stdout.splitlines() if line.startswith("found: "))
    assert found.count("t-") == 2, found  # 100 + 50: two InvokeCommand calls
    assert len(table_rows(done.stdout)) == 150


def test_results_shows_the_summary_and_one_instance(cloud: LocalCloud, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    submitted = cli(cloud, "submit", str(request_file(tmp_path, f"echo {marker}")), "--wait",
                    "--json")
    invoke_id = json.loads(submitted.stdout)["Accepted"]["InvokeId"]
    done = cli(cloud, "results", invoke_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{invoke_id}  command c-")
    assert sorted(table_rows(done.stdout)) == LINUX
    as_json = json.loads(cli(cloud, "results", invoke_id, "--json").stdout)
    assert as_json["Summary"]["Status"] == "Success" and len(as_json["Instances"]) == 2
    one = json.loads(cli(cloud, "results", invoke_id, "--instance", LINUX[1], "--json").stdout)
    assert one["Result"]["Status"] == "Success" and one["Output"] == f"{marker}\n"
    missing = cli(cloud, "results", "t-doesnotexist0000")
    assert missing.returncode == 4 and "no results for t-doesnotexist0000" in missing.stderr


def test_without_a_local_cloud_every_command_exits_2_with_what_to_do(
        cloud: LocalCloud, tmp_path: Path) -> None:
    for args in (["submit", "-"], ["results", "t-x"], ["invocations", "list"],
                 ["commands", "list"]):
        done = cli(cloud, *args, stdin="{}", state=tmp_path)
        assert done.returncode == 2, args
        (line,) = done.stderr.strip().splitlines()
        assert "no local cloud is running" in line and "assistflow up" in line, line
    assert not any(tmp_path.iterdir())  # and it left nothing behind
    bad_flag = cli(cloud, "submit", "-", "--via", "carrier-pigeon")
    assert bad_flag.returncode == 2 and "invalid choice" in bad_flag.stderr


def test_secrets_never_reach_the_output(cloud: LocalCloud, tmp_path: Path) -> None:
    endpoints = json.loads(cloud.endpoints_path.read_text())
    done = cli(cloud, "-v", "submit", str(request_file(tmp_path, "echo s")), "--wait")
    assert done.returncode == 0, done.stderr
    for secret in (endpoints["webhook_secret"], endpoints["access_key_secret"]):
        assert secret not in done.stdout and secret not in done.stderr


def test_wait_follows_the_requests_own_output_location(cloud: LocalCloud, tmp_path: Path) -> None:
    prefix = f"results/cli-{uuid.uuid4().hex[:8]}"  # the role may write only under results/
    done = cli(cloud, "submit", str(request_file(tmp_path, "echo elsewhere",
                                                 Output={"Prefix": prefix})), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"oss://assistflow-results/{prefix}/t-" in done.stdout
    invoke_id = done.stdout.split(f"oss://assistflow-results/{prefix}/", 1)[1].split("/", 1)[0]
    assert cli(cloud, "results", invoke_id).returncode == 4  # not under the default prefix
    found = cli(cloud, "results", invoke_id, "--prefix", prefix)
    assert found.returncode == 0 and sorted(table_rows(found.stdout)) == LINUX
