"""The seed document's Python SDK sample, adapted only for Python 3 and the local endpoint,
runs ``echo 123`` on a local instance and logs ``123``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_ecs_emulator import AK, SECRET, Ecs, start_ecs

SAMPLE = Path(__file__).resolve().parents[1] / "seed" / "seed_sample.py"


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    state = tmp_path / "state"
    state.mkdir()
    with start_ecs(state) as driver:
        yield driver


def test_the_seed_sample_runs_echo_123_and_logs_its_output(ecs: Ecs, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.upper().endswith("_PROXY") and not key.startswith("ALIYUN_")}
    env.update(SEED_ECS_ENDPOINT=ecs.server.url, SEED_ACCESS_KEY_ID=AK,
               SEED_ACCESS_KEY_SECRET=SECRET, SEED_INSTANCE_ID="i-proc1", SEED_SLEEP_SECONDS="1.5",
               PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(SAMPLE)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "aliyun_assist_openapi_test.log").read_text()
    assert "ERROR" not in log, log
    assert "output: 123\n is" in log, log
