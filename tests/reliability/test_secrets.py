"""No credential in logs (captured and scanned) and none in the repository."""

from __future__ import annotations

import logging
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, get_object, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_a_whole_run_logs_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                    tally: Counter[str]) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = LocalCloud(tmp_path / "state", parameters={"MaintenanceEnabled": False})
    (tmp_path / "state").mkdir()
    endpoints = Endpoints(cloud.start())
    try:
        # success, refusals and failures: every path that logs
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo ok; "
                                       "exit 3", "InstanceIds": ["i-local00000000000001"]})
        assert status == 202
        endpoints.post({"Type": "RunPython", "InstanceIds": ["x"]})
        endpoints.post({"Type": "RunShellScript", "CommandContent": "x",
                        "InstanceIds": ["i-local00000000000001"]}, secret="wrong")
        endpoints.post({"Type": "RunShellScript", "CommandContent": "x",
                        "InstanceIds": ["i-local0000000000000s"]})
        wait_for(lambda: get_object(endpoints.bucket(),
                                    f"results/{body['InvokeId']}/summary.json"), timeout=15)
        assert cloud.host is not None
        # each function's own STS pair (bound to its role), as the functions hold it
        secrets = {f"{name} {what}": runtime.environment[variable]
                   for name, runtime in cloud.host.runtimes.items()
                   for what, variable in (("STS secret", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
                                          ("STS token", "ALIBABA_CLOUD_SECURITY_TOKEN"))}
    finally:
        cloud.stop()
    assert cloud.keys is not None and len(secrets) == 12  # six functions, a pair each
    secrets.update({"access key secret": cloud.keys.access_key_secret,
                    "STS secret": cloud.keys.sts_access_key_secret,
                    "STS token": cloud.keys.security_token,
                    "webhook secret": cloud.keys.webhook_secret})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "FC Invoke" in text or "invoked" in text  # the function logs were captured
    tally["log lines scanned"] += len(caplog.records)
    for name, value in secrets.items():
        assert value not in text, f"the {name} appears in the logs"


def test_the_repository_holds_no_credentials() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    patterns = {
        "Alibaba Cloud AccessKey id": re.compile(r"LTAI[0-9A-Za-z]{12,}"),
        "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        "AWS key id": re.compile(r"AKIA[0-9A-Z]{16}"),
    }
    found = []
    for name in filter(None, files):
        if name.startswith(("tests/", "events/")):
            continue  # fixtures may carry obviously fake placeholders
        path = REPO / name
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {label}" for label, pattern in patterns.items()
                  if pattern.search(text)]
    assert not found, found
    for local_state in (".assistflow/", "keys.json", "endpoints.json"):
        assert not any(f == local_state or f.startswith(local_state) or f.endswith(local_state)
                       for f in files), f"{local_state} is committed"
