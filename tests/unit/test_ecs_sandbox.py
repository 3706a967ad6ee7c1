"""local/emulators/ecs/sandbox.py: WorkingDir inside the instance root, the accounts, the
choice between namespaces and the documented fallback, and what a namespace run leaves."""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path

import pytest

from local.emulators.ecs import sandbox
from local.emulators.ecs.sandbox import Account, Sandbox, SandboxError, resolve_in_root
from tests.unit.processes import host_pids, sleep_marker
from tests.unit.test_ecs_emulator import alive, start_ecs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    fs = tmp_path / "i-1" / "fs"
    for folder in ("root", "tmp", "var/log"):
        (fs / folder).mkdir(parents=True)
    (fs / "etc").mkdir()
    (fs / "etc" / "motd").write_text("hi")
    (fs / "var" / "tmp-link").symlink_to("/tmp")  # absolute: from the instance root
    (fs / "var" / "up").symlink_to("../../../../..")  # climbs past / only to /
    (fs / "loop").symlink_to("loop")
    return fs


@pytest.mark.parametrize(("path", "inside"), [
    ("/../../../../", ""),
    ("/", ""),
    ("/root", "root"),
    ("root/../tmp/.", "tmp"),
    ("/var/tmp-link", "tmp"),
    ("/var/up/root", "root"),
    ("/var/log/../../var/./log", "var/log"),
])
def test_working_dir_resolves_inside_the_instance_root(root: Path, path: str,
                                                       inside: str) -> None:
    assert resolve_in_root(root, path) == (root / inside if inside else root)


@pytest.mark.parametrize("path", ["/no/such", "/etc/motd", "/loop", "/etc/motd/.."])
def test_what_is_no_directory_inside_the_root_is_none(root: Path, path: str) -> None:
    assert resolve_in_root(root, path) is None


def test_prepare_answers_as_the_agent_would(root: Path) -> None:
    prepared = Sandbox.prepare(root, "/../../..", "")
    assert (prepared.cwd, prepared.account.uid, prepared.account.name) == (root, 0, "root")
    assert Sandbox.prepare(root, "/root", "nobody").account.uid == 65534
    for working_dir, username, code in (("/nope", "", "DirectoryNotExists"),
                                        ("/", "no-such-account", "AccountNotExists")):
        with pytest.raises(SandboxError) as info:
            Sandbox.prepare(root, working_dir, username)
        assert info.value.code == code


def test_account_root_is_uid_zero() -> None:
    assert Account.named("") == Account.named("root") == Account("root", 0, 0, "/root")


def test_without_util_linux_the_fallback_is_warned_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda *_a, **_k: None)
    caplog.set_level(logging.WARNING, logger=sandbox.__name__)
    chosen = Sandbox("auto")
    assert not chosen.isolated(tmp_path) and not chosen.isolated(tmp_path)
    [warning] = caplog.records
    assert "unshare is not installed" in warning.getMessage()
    assert "endpoints.json and keys.json" in warning.getMessage()  # says what is exposed
    with pytest.raises(RuntimeError, match="ASSISTFLOW_SANDBOX=namespaces"):
        Sandbox("namespaces").isolated(tmp_path)
    with pytest.raises(ValueError, match="ASSISTFLOW_SANDBOX"):
        Sandbox("chroot")


def test_sandbox_none_still_keeps_working_dir_in_the_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTFLOW_SANDBOX", "none")
    with start_ecs(tmp_path) as ecs:
        answer = ecs.run("pwd", ["i-proc1"], WorkingDir="/../../../..")
        record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
        fs = ecs.app.model.agent.sandbox("i-proc1")
        assert base64.b64decode(record["Output"]).decode().strip() == str(fs)


def test_what_a_script_leaves_running_lives_on_until_the_emulator_stops(tmp_path: Path) -> None:
    marker = sleep_marker()
    with start_ecs(tmp_path) as ecs:
        assert ecs.app.model.agent.isolated()
        started = time.monotonic()
        answer = ecs.run(f"sleep {marker} >/dev/null 2>&1 & echo started", ["i-proc1"])
        record = ecs.wait_done(answer["InvokeId"])["i-proc1"]
        assert record["InvocationStatus"] == "Success" and time.monotonic() - started < 5
        [daemon] = host_pids(marker)  # as on an instance: a started service keeps running
    deadline = time.monotonic() + 2
    while alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(daemon)  # but no script outlives the emulator
    assert os.path.isdir(tmp_path / "instances" / "i-proc1" / "fs" / "usr")  # the mount point
