"""An emulator in a process of its own (``local.emulators.process``): served on the port the
parent chose, the owner keys of the state directory, the role keys bound at runtime enforced
exactly as in-process (through oss2), the control API, and no process left behind — neither
after ``stop()`` nor after its parent was killed with SIGKILL. Served by several processes on
one socket, it answers as one emulator: state, keys, buckets, faults, clock and counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oss2
import pytest

from local.emulators.keyring import KeyRing
from local.emulators.process import (
    STOP_GRACE,
    EmulatorProcess,
    EmulatorProcessError,
    processes_for,
)
from local.profile import Profile
from local.ram import Identity, Policy
from local.server import listening_socket
from local.state import LocalKeys, issue_sts, load_or_create_keys

ACCOUNT = "1234567890123456"
BUCKET = "proc-results"
REPO = Path(__file__).resolve().parents[2]


def role(*statements: dict[str, Any]) -> Identity:
    policy = Policy.parse({"Version": "1", "Statement": list(statements)}, "FunctionRole/p")
    return Identity(f"acs:ram::{ACCOUNT}:role/app-functions", (policy,))


def control(url: str, name: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/_emulator/{name}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.loads(answer.read())


def gone(pid: int, timeout: float = 10) -> bool:
    """True once ``pid`` no longer runs (a zombie of ours counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[EmulatorProcess, KeyRing, LocalKeys]]:
    keys = load_or_create_keys(tmp_path)
    keyring = keys.keyring()
    oss = EmulatorProcess("oss", tmp_path, region="cn-hangzhou", account_id=ACCOUNT,
                          profile=Profile.fast()).spawn()
    oss.attach(keyring)
    yield oss.wait_ready(), keyring, keys
    oss.stop()


def test_it_serves_the_state_directory_with_its_owner_keys(
        served: tuple[EmulatorProcess, KeyRing, LocalKeys], tmp_path: Path) -> None:
    oss, _, keys = served
    assert oss.url == f"http://127.0.0.1:{oss.port}" and oss.pid != os.getpid()
    owner = oss2.Bucket(oss2.Auth(keys.access_key_id, keys.access_key_secret), oss.url, BUCKET)
    owner.create_bucket()
    owner.put_object("a.txt", b"hello")
    assert owner.get_object("a.txt").read() == b"hello"
    assert (tmp_path / "oss.sqlite3").exists()  # the same files as an in-process emulator
    health = control(oss.url, "health")
    assert (health["service"], health["profile"]) == ("oss", "fast")
    calls = control(oss.url, "calls")
    assert calls["calls"]["PutObject"] == 1
    assert calls["server_cpu"]["requests"] >= 3 and calls["server_cpu"]["seconds"] > 0
    assert calls["process_cpu_s"] >= calls["server_cpu"]["seconds"]
    # Its clock moves as an in-process emulator's does.
    before = control(oss.url, "clock", {"advance": 0})["now"]
    assert control(oss.url, "clock", {"advance": 3600})["now"] >= before + 3600


def test_a_role_key_bound_in_the_parent_is_enforced_at_once(
        served: tuple[EmulatorProcess, KeyRing, LocalKeys]) -> None:
    oss, keyring, keys = served
    owner = oss2.Bucket(oss2.Auth(keys.access_key_id, keys.access_key_secret), oss.url, BUCKET)
    owner.create_bucket()
    who = role({"Effect": "Allow", "Action": ["oss:PutObject", "oss:GetObject"],
                "Resource": f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/*"},
               {"Effect": "Deny", "Action": "oss:GetObject",
                "Resource": f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/secret"})
    creds = issue_sts(keyring, who)  # returns once the child accepts the key: no retry needed
    bucket = oss2.Bucket(oss2.StsAuth(creds.access_key_id, creds.access_key_secret,
                                      creds.security_token), oss.url, BUCKET)
    bucket.put_object("out/x", b"1")
    assert bucket.get_object("out/x").read() == b"1"
    owner.put_object("out/secret", b"s")
    for refused in (lambda: bucket.put_object("elsewhere", b"1"),
                    lambda: bucket.get_object("out/secret")):
        with pytest.raises(oss2.exceptions.AccessDenied):
            refused()
    # The token belongs to the key: the same pair without it is refused.
    tokenless = oss2.Bucket(oss2.Auth(creds.access_key_id, creds.access_key_secret), oss.url,
                            BUCKET)
    with pytest.raises(oss2.exceptions.ServerError):
        tokenless.put_object("out/y", b"1")


def test_stop_ends_the_process_and_frees_the_port(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path)
    oss = EmulatorProcess("oss", tmp_path, account_id=ACCOUNT, profile=Profile.fast()).start()
    pid, port = oss.pid, oss.port
    assert pid is not None
    oss.stop()
    assert gone(pid, timeout=1)
    listening_socket(port).close()  # the port is free again
    with pytest.raises(EmulatorProcessError):
        oss.bind("STS.X", "s", "t", role({"Effect": "Allow", "Action": "*", "Resource": "*"}))


def test_a_port_in_use_fails_in_the_parent(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path)
    taken = listening_socket(0)
    try:
        with pytest.raises(OSError):
            EmulatorProcess("oss", tmp_path, port=taken.getsockname()[1], account_id=ACCOUNT,
                            profile=Profile.fast()).spawn()
    finally:
        taken.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_parent_killed_with_sigkill_leaves_no_emulator(tmp_path: Path, processes: int) -> None:
    load_or_create_keys(tmp_path)
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import json, sys, time, urllib.request
        from pathlib import Path
        from local.emulators.process import EmulatorProcess
        from local.profile import Profile
        oss = EmulatorProcess("oss", Path({str(tmp_path)!r}), account_id="{ACCOUNT}",
                              profile=Profile.fast(), processes={processes}).start()
        with urllib.request.urlopen(oss.url + "/_emulator/calls", timeout=10) as answer:
            print(*(p["pid"] for p in json.loads(answer.read())["processes"]), flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(children) == processes
        assert not any(gone(child, timeout=0.2) for child in children)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert all(gone(child) for child in children), "the emulator outlived its parent"
    finally:
        parent.kill()
        parent.wait()


# --- served by several processes (local.emulators.serve --processes) --------------------------
@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[EmulatorProcess, KeyRing, LocalKeys, list[str]]]:
    """The OSS emulator served by two processes; each one's private URL (where it alone
    answers), the primary's first."""
    keys = load_or_create_keys(tmp_path)
    keyring = keys.keyring()
    oss = EmulatorProcess("oss", tmp_path, region="cn-hangzhou", account_id=ACCOUNT,
                          profile=Profile.fast(), processes=2).spawn()
    oss.attach(keyring)
    oss.wait_ready()
    processes = control(oss.url, "calls")["processes"]
    assert processes[0]["pid"] == oss.pid and len(processes) == 2
    yield oss, keyring, keys, [p["url"] for p in processes]
    began = time.monotonic()
    oss.stop()
    # by itself: each process's accept() must not block (another took the connection)
    assert time.monotonic() - began < STOP_GRACE, "the primary had to be killed"
    assert all(gone(p["pid"], timeout=2) for p in processes), "a process outlived stop()"


def test_two_processes_share_one_socket_and_answer_as_one_emulator(
        two: tuple[EmulatorProcess, KeyRing, LocalKeys, list[str]]) -> None:
    oss, keyring, keys, (first, second) = two
    auth = oss2.Auth(keys.access_key_id, keys.access_key_secret)
    oss2.Bucket(auth, oss.url, BUCKET).create_bucket()
    for n in range(60):  # a new connection each: the kernel hands each to either process
        oss2.Bucket(auth, oss.url, BUCKET, session=oss2.Session()).put_object(f"k{n}", b"x")
    calls = control(oss.url, "calls")
    assert (calls["calls"]["PutBucket"], calls["calls"]["PutObject"]) == (1, 60)
    assert all(p["requests"] > 0 for p in calls["processes"]), calls["processes"]
    # What one process stored the other reads at once, and the control API answers the
    # same wherever a call lands.
    oss2.Bucket(auth, first, BUCKET).put_object("written-by-first", b"1")
    assert oss2.Bucket(auth, second, BUCKET).get_object("written-by-first").read() == b"1"
    assert control(second, "calls")["calls"] == control(first, "calls")["calls"]
    # A key bound after the start is accepted by both before the bind returns.
    creds = issue_sts(keyring, role({"Effect": "Allow", "Action": "oss:PutObject",
                                     "Resource": f"acs:oss:*:{ACCOUNT}:{BUCKET}/out/*"}))
    for url in (first, second):
        bucket = oss2.Bucket(oss2.StsAuth(creds.access_key_id, creds.access_key_secret,
                                          creds.security_token), url, BUCKET)
        bucket.put_object("out/x", b"1")
        with pytest.raises(oss2.exceptions.AccessDenied):
            bucket.put_object("elsewhere", b"1")


def test_a_bucket_written_by_one_process_is_seen_so_by_the_other_at_once(
        two: tuple[EmulatorProcess, KeyRing, LocalKeys, list[str]]) -> None:
    """Each process caches the buckets it looked up; another's bucket write empties it."""
    _, _, keys, (first, second) = two
    auth = oss2.Auth(keys.access_key_id, keys.access_key_secret)
    at_first, at_second = (oss2.Bucket(auth, url, "cached") for url in (first, second))
    for writer, reader in ((at_first, at_second), (at_second, at_first)):
        with pytest.raises(oss2.exceptions.NoSuchBucket):
            reader.put_object("k", b"1")  # looked up (and cached) as missing
        writer.create_bucket()
        reader.put_object("k", b"1")
        writer.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
        assert reader.get_bucket_acl().acl == oss2.BUCKET_ACL_PUBLIC_READ
        reader.delete_object("k")
        writer.delete_bucket()
        with pytest.raises(oss2.exceptions.NoSuchBucket):
            reader.put_object("k", b"1")


def test_a_counted_fault_fires_that_often_whichever_process_takes_the_calls(
        two: tuple[EmulatorProcess, KeyRing, LocalKeys, list[str]]) -> None:
    oss, _, keys, (first, second) = two
    auth = oss2.Auth(keys.access_key_id, keys.access_key_secret)
    oss2.Bucket(auth, first, BUCKET).create_bucket()
    control(second, "faults", {"action": "PutObject", "code": "InternalError", "status": 500,
                               "count": 3})  # added through the worker: kept by the primary
    failed = 0
    for n in range(10):
        for url in (second, first):
            try:
                oss2.Bucket(auth, url, BUCKET).put_object(f"k{n}", b"x")
            except oss2.exceptions.ServerError as err:
                assert err.status == 500
                failed += 1
    assert failed == 3
    assert control(first, "faults") == {"faults": [], "fired": {"PutObject": 3}}
    # A delay rule stalls a call wherever it lands.
    control(oss.url, "faults", {"action": "GetObject", "delay": 0.3, "count": 1})
    began = time.monotonic()
    oss2.Bucket(auth, second, BUCKET).get_object("k9").read()  # (k0 failed twice)
    assert time.monotonic() - began >= 0.3


def test_the_clock_counts_and_a_reset_reach_every_process(
        two: tuple[EmulatorProcess, KeyRing, LocalKeys, list[str]]) -> None:
    oss, _, keys, (first, second) = two
    auth = oss2.Auth(keys.access_key_id, keys.access_key_secret)
    oss2.Bucket(auth, first, BUCKET).create_bucket()
    now = control(first, "clock", {"advance": 0})["now"]
    control(second, "clock", {"advance": 7200})
    for url in (first, second):
        bucket = oss2.Bucket(auth, url, BUCKET)
        bucket.put_object(f"from-{url[-5:]}", b"1")
        assert bucket.head_object(f"from-{url[-5:]}").last_modified >= now + 7200 - 1
    assert control(second, "calls")["calls"]["PutObject"] == 2
    request = urllib.request.Request(f"{second}/_emulator/calls", method="DELETE")
    with urllib.request.urlopen(request, timeout=10):
        pass
    assert control(first, "calls")["calls"] == {}
    oss2.Bucket(auth, second, BUCKET).put_object("again", b"1")
    assert control(oss.url, "reset", {}) == {"reset": True}
    assert control(first, "calls")["calls"] == {}
    for url in (first, second):
        with pytest.raises(oss2.exceptions.NoSuchBucket):
            oss2.Bucket(auth, url, BUCKET).get_object("again")


def test_the_oss_emulator_takes_two_processes_unless_its_rate_is_limited() -> None:
    fast = Profile.fast()
    assert processes_for("oss", fast) == min(2, os.cpu_count() or 1)
    assert processes_for("ecs", fast) == processes_for("mns", fast) == 1
    limited = Profile.parse({"name": "limited", "throttling": {"oss": {
        "window_seconds": 60, "default_limit": 100,
        "error": {"code": "Throttling", "status": 503, "message": "slow down"}}}})
    assert processes_for("oss", limited) == 1
