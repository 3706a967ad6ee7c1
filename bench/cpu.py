"""Where the CPU goes during a benchmark: every process of the local cloud, and inside the
cloud's own process, each emulator.

The emulators and the function host run as threads of one process (the benchmark's), the
functions in worker processes of their own. On a machine with few cores the CPU time of all of
them together bounds how fast a fan-out can be, so each is reported:

* ``functions``: CPU seconds per function, summed over its worker processes (``/proc``,
  sampled by ``bench.measure.RssSampler``);
* ``emulators``: per service, the CPU seconds its request threads spent (HTTP parsing, the
  pipeline, rendering: ``local.server.CpuMeter``) and its requests, and per API action the
  pipeline's CPU per call (``/_emulator/calls``' ``cpu_ms``);
* ``host_and_rest_s``: the rest of the cloud's process — the function host (triggers, the
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
    """Snapshots at ``begin()``, differences at ``end(rss)``."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self._wall = 0.0
        self._servers: dict[str, tuple[float, int]] = {}
        self._calls: dict[str, tuple[dict[str, int], dict[str, float]]] = {}

    def _snapshot(self) -> tuple[dict[str, tuple[float, int]],
                                 dict[str, tuple[dict[str, int], dict[str, float]]]]:
        servers = {}
        for name in SERVICES:
            meter = getattr(self.cloud.local.servers[name], "cpu", None)
            servers[name] = (meter.seconds, meter.requests) if meter is not None else (0.0, 0)
        calls = {name: self.cloud.emulator_calls(name) for name in SERVICES}
        return servers, calls

    def begin(self) -> CloudCpu:
        self._servers, self._calls = self._snapshot()
        self._wall = time.time()
        return self

    def end(self, rss: RssSampler) -> dict[str, Any]:
        wall = time.time() - self._wall
        servers, calls = self._snapshot()
        emulators: dict[str, Any] = {}
        for name in SERVICES:
            seconds = servers[name][0] - self._servers[name][0]
            requests = servers[name][1] - self._servers[name][1]
            before_n, before_ms = self._calls[name]
            now_n, now_ms = calls[name]
            actions = {}
            for action, n in sorted(now_n.items()):
                count = n - before_n.get(action, 0)
                if count > 0:
                    spent = now_ms.get(action, 0.0) - before_ms.get(action, 0.0)
                    actions[action] = {"calls": count, "pipeline_us": round(spent * 1000 / count)}
            emulators[name] = {"cpu_s": round(seconds, 2), "requests": requests,
                               "us_per_request": round(seconds * 1e6 / requests) if requests
                               else None,
                               "actions": actions}
        functions = rss.cpu_per_function()
        own = rss.own_cpu_s
        total = own + sum(functions.values())
        return {"wall_s": round(wall, 1), "total_s": round(total, 1),
                "cores_busy": round(total / wall, 2) if wall > 0 else None,
                "cloud_process_s": round(own, 1),
                "emulators": emulators,
                "host_and_rest_s": round(own - sum(e["cpu_s"] for e in emulators.values()), 1),
                "functions": functions}


def line(cpu: dict[str, Any]) -> str:
    """One log line: where the CPU seconds went."""
    emus = ", ".join(f"{n} {e['cpu_s']:.1f} s ({e['us_per_request'] or 0} µs/request)"
                     for n, e in cpu["emulators"].items())
    fns = ", ".join(f"{n.removeprefix('assistflow-')} {s:.1f} s"
                    for n, s in cpu["functions"].items())
    return (f"CPU {cpu['total_s']:.1f} s in {cpu['wall_s']:.1f} s ({cpu['cores_busy']} cores): "
            f"emulators {emus}; host and rest {cpu['host_and_rest_s']:.1f} s; "
            f"functions {fns}")
