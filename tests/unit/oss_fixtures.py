"""The local OSS for the OSS tests: one emulator server per test module, reset before each test.

``tests/conftest.py`` registers this module as a plugin, so its fixtures (``shared``, ``app``,
``server``, ``bucket``, ``bucket_v4``, ``state_dir``, ``own_server``) are there for every test;
the module-scoped ``shared`` server is started once per test module that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import oss2
import pytest
import requests

from local.emulators.base import KeyRing
from local.emulators.oss import OssApp
from local.emulators.server import EmulatorServer

AK, SK = "test-ak", "test-secret"
STS_AK, STS_SK, STS_TOKEN = "STS.test-ak", "sts-secret", "sts-token"
KEYRING = KeyRing({AK: (SK, None), STS_AK: (STS_SK, STS_TOKEN)})
BUCKET = "test-bucket"
REGION = "cn-hangzhou"


def client_crc(data: bytes) -> int:
    crc = oss2.utils.Crc64()
    crc.update(data)
    return int(crc.crc)


# requests would send loopback calls to a proxy configured in the environment
for _name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OssApp, EmulatorServer]]:
    # One server for the module: stopping one costs ~0.2 s (werkzeug's shutdown poll), and the
    # control API's reset gives each test a clean store anyway.
    emulator = OssApp(KEYRING, tmp_path_factory.mktemp("oss") / "state")
    srv = EmulatorServer(emulator).start()
    yield emulator, srv
    srv.stop()


@pytest.fixture
def app(shared: tuple[OssApp, EmulatorServer]) -> OssApp:
    emulator, srv = shared
    requests.post(f"{srv.url}/_emulator/reset", timeout=5).raise_for_status()
    return emulator


@pytest.fixture
def server(shared: tuple[OssApp, EmulatorServer], app: OssApp) -> EmulatorServer:
    return shared[1]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def own_server(state_dir: Path) -> Iterator[EmulatorServer]:
    """A server of its own, for tests that move the clock or restart."""
    srv = EmulatorServer(OssApp(KEYRING, state_dir)).start()
    yield srv
    srv.stop()


@pytest.fixture
def bucket(server: EmulatorServer) -> oss2.Bucket:
    b = oss2.Bucket(oss2.Auth(AK, SK), server.url, BUCKET)
    b.create_bucket()
    return b


@pytest.fixture
def bucket_v4(server: EmulatorServer, bucket: oss2.Bucket) -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(AK, SK), server.url, BUCKET, region=REGION)


@pytest.fixture
def oss_account(server: EmulatorServer) -> dict[str, str]:
    """What a user's own code is given to reach the local OSS: an endpoint and a key pair (as
    ``endpoints.json``'s ``oss``, ``access_key_id`` and ``access_key_secret``), nothing else."""
    return {"endpoint": server.url, "access_key_id": AK, "access_key_secret": SK}
