"""Fixtures: a whole local cloud (emulators + function host running template.yml)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.cloud import LocalCloud
from tests.localcloud import Endpoints

# The local OSS's fixtures (a server per module, ``bucket``, ``server``…) for tests/unit/test_oss_*.py.
pytest_plugins = ["tests.unit.oss_fixtures"]

# aliyunsdkcore 2.16.1 hands requests an explicit proxies dict built from HTTP(S)_PROXY
# (aliyunsdkcore/http/http_response.py), so NO_PROXY is ignored: loopback calls must not
# see a proxy from the CI environment.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
             "ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"):
    os.environ.pop(_var, None)


SIMULATED = [f"i-sim{n:015d}" for n in range(1, 301)]


def write_fleet(state: Path, simulated: list[str], duration: float = 0.2) -> None:
    """The default local fleet plus ``simulated`` instances (no process; fixed output)."""
    from dataclasses import asdict

    from local.emulators.ecs.inventory import Instance, SimulatedRun, default_fleet

    fleet = default_fleet() + [
        Instance(i, f"sim-{n}", Mode="simulated",
                 Simulated=SimulatedRun(Output=f"simulated on {i}\n", ExitCode=0,
                                        Duration=duration))
        for n, i in enumerate(simulated)]
    (state / "instances.json").write_text(json.dumps({"instances": [asdict(i) for i in fleet]}))


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """One local cloud for the session, in a fresh state directory.

    Its fleet is the default one (three process instances, a stopped one, one without agent,
    a Windows one) plus 300 simulated Linux instances for fan-out tests.
    """
    state = tmp_path_factory.mktemp("state")
    write_fleet(state, SIMULATED)
    # The maintenance timer would add invocations every minute; tests that need it start it.
    local = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def endpoints(cloud: LocalCloud) -> Endpoints:
    return Endpoints(cloud.endpoints)


@pytest.fixture
def fresh_cloud_dir(tmp_path: Path) -> Path:
    """A state directory for a test that starts and stops its own local cloud."""
    state = tmp_path / "state"
    state.mkdir()
    return state
