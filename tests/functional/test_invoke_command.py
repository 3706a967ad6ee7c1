"""`assistflow invoke FUNCTION --event FILE` against a local cloud started here.

The real CLI entry point (``python -m local invoke``) in a subprocess, through FC's invoke API
with aliyun-fc2, using the canonical events of ``events/``. The functions are fixtures
(tests/fixtures/host/invoke.yml) so the test exercises the host and the CLI, not the product.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.cloud import LocalCloud

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
TEMPLATE = REPO / "tests" / "fixtures" / "host" / "invoke.yml"
# What endpoints.json promised before the invoke API existed; it must keep every key.
CONTRACT = ("ecs", "mns", "oss", "webhook_url", "region", "access_key_id", "access_key_secret",
            "webhook_secret", "results_bucket", "instances", "followup_queue", "results_prefix",
            "state_dir", "functions")


@pytest.fixture(scope="module")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("invoke-state")
    records = tmp_path_factory.mktemp("invoke-records")
    cloud = LocalCloud(state, template=TEMPLATE, parameters={"RecordDir": str(records)})
    cloud.start()
    cloud.records = records  # type: ignore[attr-defined]
    yield cloud
    cloud.stop()


def invoke(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "local", "invoke", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_endpoints_json_gains_fc_and_keeps_its_keys(local_cloud: LocalCloud) -> None:
    endpoints = json.loads(local_cloud.endpoints_path.read_text())
    assert endpoints["fc"].startswith("http://127.0.0.1:")
    assert set(CONTRACT) <= set(endpoints)


def test_invoke_with_an_http_event(local_cloud: LocalCloud, tmp_path: Path) -> None:
    event = json.loads((EVENTS / "http-submit.json").read_text())
    event["headers"]["X-Assistflow-Timestamp"] = str(int(time.time()))
    path = tmp_path / "http.json"
    path.write_text(json.dumps(event))
    done = invoke(local_cloud.state_dir, "invoke-http", "--event", str(path))
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["statusCode"] == 201
    assert json.loads(response["body"]) == event  # the function got the event file, unchanged
    assert "invoke-http: ok in" in done.stderr and "request 1-" in done.stderr


def test_invoke_with_the_timer_event_by_suffix(local_cloud: LocalCloud) -> None:
    done = invoke(local_cloud.state_dir, "timer", "--event", str(EVENTS / "timer.json"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["triggerName"] == "maintenance"
    assert result["triggerTime"] == "2026-11-26T04:00:00Z"
    assert result["InstanceIds"] == ["i-local00000000000001"]


def test_a_function_error_exits_1_with_one_line(local_cloud: LocalCloud) -> None:
    done = invoke(local_cloud.state_dir, "invoke-fail", "--event", str(EVENTS / "timer.json"))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "invoke-fail failed: ValueError: boom: this function always fails" in lines[0]
    assert "authorization" not in done.stderr.lower()  # fc2's header dump is silenced


def test_async_invoke_prints_the_request_id_and_the_function_runs(local_cloud: LocalCloud) -> None:
    done = invoke(local_cloud.state_dir, "record", "--event", str(EVENTS / "timer.json"),
                  "--async")
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.strip()
    assert request_id.startswith("1-")
    records = local_cloud.records / "invoke-record.jsonl"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not (records.exists() and request_id in records.read_text()):
        assert time.monotonic() < deadline, "the async invocation never ran"
        time.sleep(0.05)


def test_unknown_function_and_missing_cloud_exit_2(local_cloud: LocalCloud,
                                                   tmp_path: Path) -> None:
    done = invoke(local_cloud.state_dir, "nope")
    assert done.returncode == 2 and "invoke-http" in done.stderr  # lists what exists
    done = invoke(tmp_path, "anything")
    assert done.returncode == 2
    assert "no local cloud is running" in done.stderr and "assistflow up" in done.stderr
