"""Finding a sandboxed script's processes from the host, for the ECS agent's tests."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from tests.unit.test_ecs_emulator import alive

_MARKS = itertools.count(1)


def sleep_marker() -> str:
    """A ``sleep`` argument no other process has (30 s and a unique fraction)."""
    return f"30.{os.getpid():07d}{next(_MARKS):04d}"


def host_pids(marker: str) -> list[int]:
    """Live processes, by the PID this machine sees, with ``marker`` as an argument: a
    sandboxed script's ``$!`` is a PID of its own namespace, meaningless here."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if marker.encode() in args and alive(int(entry.name)):
            found.append(int(entry.name))
    return found
