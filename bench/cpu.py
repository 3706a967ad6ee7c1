"""Where the CPU goes during a benchmark: every process of the local cloud, and inside the
emulators, each one.

The ECS and MNS emulators and the function host run as threads of one process (the
benchmark's), the OSS emulator in a process of its own (``local.emulators.process``), the
functions in worker processes. On a machine with few cores the CPU time of all of them
together bounds how fast a fan-out can be, so each is reported:

* ``functions``: CPU seconds per function, summed over its worker processes (``/proc``,
  sampled by ``bench.measure.RssSampler``);
* ``emulators``: per service, the CPU seconds its request threads spent (HTTP parsing, the
  pipeline, rendering: ``local.server.CpuMeter``) and its requests, and per API action the
  pipeline's CPU per call — all from its ``/_emulator/calls``; for one in a process of its own,
  also ``process_s``, that whole process's CPU (its request threads and the rest: the
  serving loop, the garbage collector);
* ``cloud_process_s``: the cloud's own process plus every emulator process;
* ``host_and_rest_s``: the rest of the cloud's own process — the function host (triggers, the
  pipes to the workers, ``invocations.jsonl``), the ECS agent, and the benchmark's own polling;
* ``total_s`` and ``cores_busy`` (``total_s`` over the wall time).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.common import Cloud
    from bench.measure import RssSampler

SERVICES = ("ecs", "mns", "oss")


class CloudCpu:
    """Snapshots of every emulator's ``/_emulator/calls`` at ``begin()``, differences at
    ``end(rss)``."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self._wall = 0.0
        self._before: dict[str, dict[str, Any]] = {}

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: self.cloud.emulator_calls(name) for name in SERVICES}

    def begin(self) -> CloudCpu:
        self._before = self._snapshot()
        self._wall = time.time()
        return self

    def end(self, rss: RssSampler) -> dict[str, Any]:
        wall = time.time() - self._wall
        now = self._snapshot()
        emulators = {name: _difference(self._before[name], now[name]) for name in SERVICES}
        functions = rss.cpu_per_function()
        own = rss.own_cpu_s
        apart = sum(e.get("process_s", 0.0) for e in emulators.values())
        total = own + apart + sum(functions.values())
        in_own = sum(e["cpu_s"] for e in emulators.values() if "process_s" not in e)
        return {"wall_s": round(wall, 1), "total_s": round(total, 1),
                "cores_busy": round(total / wall, 2) if wall > 0 else None,
                "cloud_process_s": round(own + apart, 1),
                "emulators": emulators,
                "host_and_rest_s": round(own - in_own, 1),
                "functions": functions}


def _difference(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """One emulator's CPU between two ``/_emulator/calls`` answers."""
    server_before = before.get("server_cpu") or {"seconds": 0.0, "requests": 0}
    server_now = now.get("server_cpu") or {"seconds": 0.0, "requests": 0}
    seconds = server_now["seconds"] - server_before["seconds"]
    requests = server_now["requests"] - server_before["requests"]
    before_n, before_ms = before["calls"], before.get("cpu_ms") or {}
    now_n, now_ms = now["calls"], now.get("cpu_ms") or {}
    actions = {}
    for action, n in sorted(now_n.items()):
        count = n - before_n.get(action, 0)
        if count > 0:
            spent = now_ms.get(action, 0.0) - before_ms.get(action, 0.0)
            actions[action] = {"calls": count, "pipeline_us": round(spent * 1000 / count)}
    out: dict[str, Any] = {
        "cpu_s": round(seconds, 2), "requests": requests,
        "us_per_request": round(seconds * 1e6 / requests) if requests else None,
        "actions": actions}
    if "process_cpu_s" in now:
        out["process_s"] = round(now["process_cpu_s"] - before.get("process_cpu_s", 0.0), 2)
    return out


def line(cpu: dict[str, Any]) -> str:
    """One log line: where the CPU seconds went."""
    emus = ", ".join(
        f"{n} {e['cpu_s']:.1f} s ({e['us_per_request'] or 0} µs/request"
        + (f"; its process {e['process_s']:.1f} s" if "process_s" in e else "") + ")"
        for n, e in cpu["emulators"].items())
    fns = ", ".join(f"{n.removeprefix('assistflow-')} {s:.1f} s"
                    for n, s in cpu["functions"].items())
    return (f"CPU {cpu['total_s']:.1f} s in {cpu['wall_s']:.1f} s ({cpu['cores_busy']} cores): "
            f"cloud processes {cpu['cloud_process_s']:.1f} s — emulators {emus}; host and rest "
            f"{cpu['host_and_rest_s']:.1f} s; functions {fns}")
