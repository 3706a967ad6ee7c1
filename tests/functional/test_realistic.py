"""The whole flow under the ``realistic`` profile, through the official SDKs.

A local cloud of its own runs ``local/profiles/realistic.yml`` (seeded, so every run draws the
same latencies): ECS calls take their ~120 ms, a signed ``echo`` request still ends with its
``output.txt`` in OSS, every emulator names the profile. Bursting an ECS action past its
documented per-minute rate gets ECS's throttling error through aliyunsdkcore — on an ECS
emulator of its own, so the burst cannot throttle the flow.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from local.cloud import LocalCloud
from local.emulators.ecs import EcsApp
from local.emulators.profile_hooks import CallPacing
from local.emulators.server import EmulatorServer
from local.profile import Profile
from local.state import load_or_create_keys
from tests.localcloud import Endpoints, get_object, interruptible, wait_for

pytestmark = pytest.mark.slow

SEED = 20261201
INSTANCE = "i-local00000000000001"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    state = tmp_path_factory.mktemp("realistic")
    cloud = LocalCloud(state, parameters={"MaintenanceEnabled": False},
                       profile=Profile.load("realistic", seed=SEED))
    cloud.start()
    yield Endpoints(cloud.endpoints)
    cloud.stop()


def _health(base_url: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{base_url}/_emulator/health", timeout=10) as resp:
        health: dict[str, str] = json.loads(resp.read())
    return health


def test_every_emulator_and_endpoints_json_name_the_profile(realistic: Endpoints) -> None:
    assert realistic["profile"] == "realistic"
    for service in ("ecs", "mns", "oss"):
        health = _health(realistic[service])
        assert (health["service"], health["status"], health["profile"]) == (
            service, "ok", "realistic")


def test_assistflow_up_takes_the_profile_by_flag_and_refuses_an_unknown_one(
        tmp_path: Path) -> None:
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(tmp_path), "ASSISTFLOW_PROFILE": "fast"}
    bad = subprocess.run([sys.executable, "-m", "local", "up", "--profile", "turbo"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "no profile 'turbo'; there are: fast, realistic" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "local", "up", "--profile", "realistic"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        endpoints_file = tmp_path / "endpoints.json"
        wait_for(lambda: True if endpoints_file.exists() else None, timeout=30)
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints["profile"] == "realistic"  # the flag wins over the environment
        assert _health(endpoints["ecs"])["profile"] == "realistic"
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "profile   realistic" in output


def test_ecs_calls_through_the_sdk_take_at_least_100_ms_at_the_median(
        realistic: Endpoints) -> None:
    client = realistic.acs()
    took = []
    for _ in range(10):
        request = DescribeInstancesRequest()
        request.set_InstanceIds(json.dumps([INSTANCE]))
        began = time.perf_counter()
        answer = json.loads(client.do_action_with_exception(request))
        took.append(time.perf_counter() - began)
        assert answer["Instances"]["Instance"][0]["InstanceId"] == INSTANCE
    assert statistics.median(took) >= 0.100, took


def test_a_signed_echo_request_still_ends_with_its_output_in_oss(realistic: Endpoints) -> None:
    status, body = realistic.post({"Type": "RunShellScript", "CommandContent": "echo realistic",
                                   "InstanceIds": [INSTANCE]})
    assert status == 202, body
    key = f"{realistic['results_prefix']}/{body['InvokeId']}/{INSTANCE}/output.txt"
    output = wait_for(lambda: get_object(realistic.bucket(), key), timeout=60, interval=0.25)
    assert output == b"realistic\n"


# --- throttling -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lone_ecs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """An ECS emulator under the realistic profile, alone: a burst here throttles no flow."""
    state = tmp_path_factory.mktemp("lone-ecs")
    keys = load_or_create_keys(state)
    app = EcsApp(keys.keyring(), state)
    app.pacing = CallPacing(Profile.load("realistic", seed=SEED), "ecs")
    server = EmulatorServer(app, 0).start()
    server.keys = keys  # type: ignore[attr-defined]
    yield server
    server.stop()


def _client(server: EmulatorServer) -> AcsClient:
    keys = server.keys  # type: ignore[attr-defined]
    client = AcsClient(keys.access_key_id, keys.access_key_secret, "cn-hangzhou",
                       proxy={"http": None, "https": None})
    client.add_endpoint("cn-hangzhou", "Ecs", server.url.split("://", 1)[1])
    return client


def _describe_invocations(client: AcsClient) -> str:
    try:
        client.do_action_with_exception(DescribeInvocationsRequest())
    except ServerException as exc:
        return f"{exc.get_http_status()} {exc.get_error_code()} {exc.get_error_msg()}"
    return "ok"


def test_bursting_an_action_past_its_rate_gets_ecs_throttling_error(
        lone_ecs: EmulatorServer, tmp_path: Path) -> None:
    app = lone_ecs.app
    limit = Profile.load("realistic").throttling["ecs"].limit_for("DescribeInvocations")
    assert limit == 1000
    app.clock.advance(60 - app.clock.now() % 60 + 0.001)  # a whole minute ahead of the burst
    app.calls.clear()
    with ThreadPoolExecutor(max_workers=48) as pool:
        clients = [_client(lone_ecs) for _ in range(48)]
        answers = list(pool.map(lambda i: _describe_invocations(clients[i % 48]), range(limit)))
    assert answers == ["ok"] * limit
    client = _client(lone_ecs)
    assert _describe_invocations(client) == (
        "400 Throttling.User Request was denied due to user flow control.")
    # aliyunsdkcore retries only the exact code Throttling: this refusal was one call
    assert app.calls.snapshot()["DescribeInvocations"] == limit + 1
    # other actions keep their own count in the same minute ...
    client.do_action_with_exception(DescribeCommandsRequest())
    # ... and the throttled one can be called again in the next minute
    app.clock.advance(60)
    assert _describe_invocations(client) == "ok"
