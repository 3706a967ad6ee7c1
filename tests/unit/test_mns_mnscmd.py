"""``mnscmd``, the command-line tool aliyun-mns-sdk 1.3.0 installs next to the Python
interpreter, driven against the local MNS exactly as the README tells a developer to: its
``config`` command writes the endpoint and keys to a credentials file of our choosing (``-c``),
or ``-e`` / ``-a`` / ``-A`` give them on each call. It prints ``<command> succeed!`` or
``<command> fail!`` with the exception and exits 0 either way, so the output is what is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.emulators.base import KeyRing
from local.emulators.mns import MnsApp
from local.emulators.server import EmulatorServer

AK, SK = "mnscmd-ak", "mnscmd-secret"
MNSCMD = Path(sys.executable).parent / "mnscmd"


@pytest.fixture(scope="module")
def mns_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmulatorServer(MnsApp(KeyRing({AK: (SK, None)}),
                                   tmp_path_factory.mktemp("mns"))).start()
    yield server.url
    server.stop()


@pytest.fixture
def mnscmd(mns_url: str, tmp_path: Path) -> Iterator[object]:
    credentials = tmp_path / "mnscredentials"
    env = {**os.environ, "HOME": str(tmp_path)}  # never the developer's ~/.mnscredentials

    def run(*args: str) -> str:
        done = subprocess.run([str(MNSCMD), "-c", str(credentials), *args], env=env,
                              capture_output=True, text=True, timeout=30, check=True)
        return done.stdout

    out = run("config", f"--mnsendpoint={mns_url}", f"--accesskeyid={AK}",
              f"--accesskeysecret={SK}")
    assert f"Your configuration is saved into {credentials}" in out
    yield run
    run("deletequeue", "--queuename=jobs")


def field(output: str, name: str) -> str:
    found = re.search(rf"^{name}\s*:\s*(.*)$", output, re.MULTILINE)
    assert found, output
    return found.group(1).strip()


def test_mnscmd_is_installed_with_the_sdk() -> None:
    assert MNSCMD.is_file() and os.access(MNSCMD, os.X_OK)


def test_queue_commands(mnscmd: object) -> None:
    run = mnscmd  # type: ignore[assignment]
    out = run("createqueue", "--queuename=jobs", "--vistimeout=45", "--waitsec=1")  # type: ignore[operator]
    assert "createqueue succeed!" in out and "QueueURL:" in out and out.rstrip().endswith("/queues/jobs")
    run("createqueue", "--queuename=jobs-dlq")  # type: ignore[operator]
    out = run("listqueue", "--prefix=jobs", "--retnum=1")  # type: ignore[operator]
    assert "ListQueueNumber:1" in out and "NextMarker:jobs-dlq" in out
    attrs = run("getqueueattr", "--queuename=jobs")  # type: ignore[operator]
    assert (field(attrs, "VisibilityTimeout"), field(attrs, "PollingWaitSeconds")) == ("45", "1")
    out = run("setqueueattr", "--queuename=jobs", "--vistimeout=60", "--maxmsgsize=2048",  # type: ignore[operator]
              "--retentionperiod=3600", "--delaysec=0", "--loggingenabled=True")
    assert "setqueueattr succeed!" in out
    attrs = run("getqueueattr", "--queuename=jobs")  # type: ignore[operator]
    assert [field(attrs, n) for n in ("VisibilityTimeout", "MaximumMessageSize",
                                      "MessageRetentionPeriod", "LoggingEnabled")] == [
        "60", "2048", "3600", "True"]
    assert "deletequeue succeed!" in run("deletequeue", "--queuename=jobs-dlq")  # type: ignore[operator]
    out = run("listqueue", "--prefix=jobs-")  # type: ignore[operator]
    assert "Queue not exist in this account." in out


def test_message_commands(mnscmd: object) -> None:
    run = mnscmd  # type: ignore[assignment]
    run("createqueue", "--queuename=jobs")  # type: ignore[operator]
    sent = run("sendmessage", "--queuename=jobs", "--body=hello mns", "--priority=3")  # type: ignore[operator]
    assert "sendmessage succeed!" in sent
    peeked = run("peekmessage", "--queuename=jobs")  # type: ignore[operator]
    assert field(peeked, "MessageBody") == "b'hello mns'"  # base64 both ways by default
    assert field(peeked, "MessageID") == field(sent, "MessageID")
    assert (field(peeked, "DequeueCount"), field(peeked, "Priority")) == ("0", "3")
    got = run("receivemessage", "--queuename=jobs", "--waitsec=1")  # type: ignore[operator]
    assert (field(got, "MessageBody"), field(got, "DequeueCount")) == ("b'hello mns'", "1")
    assert field(got, "MessageBodyMD5") == field(sent, "MessageBodyMD5")
    moved = run("changevisibility", "--queuename=jobs",  # type: ignore[operator]
                f"--handle={field(got, 'ReceiptHandle')}", "--vistimeout=5")
    assert "changevisibility succeed!" in moved
    new_handle = field(moved, "ReceiptHandle")
    assert new_handle != field(got, "ReceiptHandle")
    stale = run("deletemessage", "--queuename=jobs", f"--handle={field(got, 'ReceiptHandle')}")  # type: ignore[operator]
    # the handle ChangeMessageVisibility replaced is no longer valid
    assert "deletemessage fail!" in stale and "ReceiptHandleError" in stale
    assert "deletemessage succeed!" in run("deletemessage", "--queuename=jobs",  # type: ignore[operator]
                                           f"--handle={new_handle}")
    empty = run("receivemessage", "--queuename=jobs", "--waitsec=0")  # type: ignore[operator]
    assert "receivemessage fail!" in empty and "MessageNotExist" in empty
    plain = run("sendmessage", "--queuename=jobs", "--body=raw text", "--base64=False")  # type: ignore[operator]
    assert "sendmessage succeed!" in plain
    got = run("receivemessage", "--queuename=jobs", "--base64=False", "--string=True")  # type: ignore[operator]
    assert field(got, "MessageBody") == "raw text"


def test_errors_come_back_as_the_service_names_them(mnscmd: object) -> None:
    run = mnscmd  # type: ignore[assignment]
    out = run("getqueueattr", "--queuename=nowhere")  # type: ignore[operator]
    assert "getqueueattr fail!" in out and "QueueNotExist" in out
    run("createqueue", "--queuename=jobs", "--vistimeout=30")  # type: ignore[operator]
    out = run("createqueue", "--queuename=jobs", "--vistimeout=31")  # type: ignore[operator]
    assert "QueueAlreadyExist" in out
    out = run("sendmessage", "--queuename=jobs", "--body=x", "--priority=17")  # type: ignore[operator]
    assert "sendmessage fail!" in out and "InvalidArgument" in out


def test_flags_instead_of_a_credentials_file(mns_url: str, tmp_path: Path) -> None:
    done = subprocess.run([str(MNSCMD), "-e", mns_url, "-a", AK, "-A", "wrong-secret",
                           "listqueue"], env={**os.environ, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=30, check=True)
    assert "listqueue fail!" in done.stdout and "SignatureDoesNotMatch" in done.stdout
