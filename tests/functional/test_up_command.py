"""`assistflow up` — what `make run` starts — from an empty state directory to a stored result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.localcloud import Endpoints, get_object, interruptible, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_up_starts_from_nothing_serves_the_webhook_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "fresh"
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(state)}
    proc = subprocess.Popen([sys.executable, "-m", "local", "up"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=interruptible)
    try:
        endpoints_file = state / "endpoints.json"
        wait_for(lambda: True if endpoints_file.exists() else None, timeout=30)
        endpoints = Endpoints(json.loads(endpoints_file.read_text()))
        for key in ("ecs", "mns", "oss", "webhook_url", "region", "access_key_id",
                    "access_key_secret", "webhook_secret", "results_bucket", "instances",
                    "dashboard_url"):
            assert endpoints[key], key
        assert oct(endpoints_file.stat().st_mode & 0o777) == "0o600"  # it holds local secrets

        instance = endpoints["instances"][0]
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo 123",
                                       "InstanceIds": [instance]})
        assert status == 202, body
        key = f"results/{body['InvokeId']}/{instance}/output.txt"
        assert wait_for(lambda: get_object(endpoints.bucket(), key), timeout=10) == b"123\n"
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "assistflow local cloud is up" in output
    assert f"  dashboard {endpoints['dashboard_url']}" in output  # make run prints its address
    assert not (state / "endpoints.json").exists()  # gone once the cloud is down
    assert (state / "keys.json").exists() and (state / "ecs.sqlite3").exists()
