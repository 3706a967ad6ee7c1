"""Measuring: statistics, the machine's description, the function processes' memory and the
CPU time of every process of a local cloud."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.host.runtime import FunctionRuntime


# --- statistics and the machine -----------------------------------------------------------------
def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return statistics.median(data) if data else None


def percentile(values: Iterable[float], pct: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def python_speed_ms(rounds: int = 5) -> float:
    """This machine's speed at Python of the kind a fan-out runs — JSON both ways, an HMAC
    signature, dicts and string formatting, 5,000 times: the best of ``rounds`` timings, in
    milliseconds. Taken at the start and the end of a bench, it tells figures measured on
    different machines (or in a slow spell of one) apart: the same code's fan-out figures move
    with it."""
    import hashlib
    import hmac
    import json

    best = float("inf")
    for _ in range(rounds):
        begun = time.perf_counter()
        for n in range(5000):
            record = {"InstanceId": f"i-{n:08d}", "Status": "Success", "ExitCode": 0,
                      "Output": "b2sK", "Times": [n, n + 1.5], "Tags": {"team": "ops"}}
            text = json.dumps(record, sort_keys=True)
            back = json.loads(text)
            signed = hmac.new(b"key", text.encode(), hashlib.sha1).hexdigest()
            line = "&".join(f"{k}={v}" for k, v in sorted(back.items()) if isinstance(v, str))
            assert signed and line
        best = min(best, time.perf_counter() - begun)
    return round(best * 1000, 1)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    mem_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cpu_model": model, "cores": os.cpu_count(), "usable_cores": usable,
            "memory_mb": mem_mb, "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform()}


# --- resident memory of the function processes -------------------------------------------------
def _memory_kb(pid: int) -> int:
    """The larger of ``pid``'s VmHWM (the kernel's own peak) and VmRSS, in kB, from one read
    of ``/proc/<pid>/status``; 0 if it is gone."""
    found = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                found = max(found, int(line.split()[1]))
    except (OSError, ValueError):
        return 0
    return found


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` used so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


class RssSampler:
    """Samples VmRSS and VmHWM (the kernel's own peak) of every function process every
    ``interval`` s, and once more on ``__exit__``; ``peak_mb`` is the largest peak any single
    process reached. VmHWM keeps a live process's peak between samples, so the interval only
    matters for a process that ends before the last sample (the host keeps its function
    instances until it stops).

    It also follows each function process's CPU seconds (the last value seen: a process that
    ends between two samples loses at most ``interval`` of them) and, from ``__enter__`` to
    ``__exit__``, the CPU seconds of this process — the local cloud's emulators and function
    host run in it, on threads — in ``own_cpu_s``. The sampler's own reads are part of that:
    every 0.1 s, two reads of each function process's ``status`` and one of its ``stat`` cost
    1.03 s of CPU (the sampler thread's clock) in a 10,000-instance fan-out under
    ``realistic`` (~40 s, 9 function processes), taken from what it measures on a machine of
    two cores; every 0.5 s, one read of each, 0.16 s."""

    def __init__(self, runtimes: dict[str, FunctionRuntime], interval: float = 0.5) -> None:
        self.runtimes = runtimes
        self.interval = interval
        self.peak_kb: dict[int, int] = {}
        self.function_of: dict[int, str] = {}
        self.cpu_s: dict[int, float] = {}
        self._baseline: dict[int, float] = {}
        self.own_cpu_s = 0.0
        self._own_begin = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-rss")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for name, runtime in list(self.runtimes.items()):
            for pid in runtime.pids():
                kb = _memory_kb(pid)
                if kb:
                    self.function_of[pid] = name
                    self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), kb)
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self.function_of[pid] = name
                    self.cpu_s[pid] = cpu
        self.samples += 1

    def __enter__(self) -> RssSampler:
        self._own_begin = _own_cpu()
        # Processes already running (started for an earlier request) count from here on.
        self.sample()
        self._baseline = dict(self.cpu_s)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.own_cpu_s = _own_cpu() - self._own_begin

    def cpu_per_function(self) -> dict[str, float]:
        """CPU seconds per function, summed over its processes, while sampling."""
        out: dict[str, float] = {}
        baseline = self._baseline
        for pid, seconds in self.cpu_s.items():
            name = self.function_of[pid]
            out[name] = out.get(name, 0.0) + seconds - baseline.get(pid, 0.0)
        return {k: round(v, 2) for k, v in sorted(out.items())}

    @property
    def peak_mb(self) -> float:
        return max(self.peak_kb.values(), default=0) / 1024

    def per_function_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, kb in self.peak_kb.items():
            name = self.function_of[pid]
            out[name] = max(out.get(name, 0.0), kb / 1024)
        return {k: round(v, 1) for k, v in sorted(out.items())}



def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system
