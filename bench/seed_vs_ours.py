"""Benchmark 1: the seed's flow against assistflow, for commands lasting 1 s, 10 s and 20 s.

Three local clouds, each doing its runs one after another so the ECS emulator's per-action
call counters (reset before each run) belong to one run; the seed's runs (asleep most of the
time) go on beside assistflow's, the two assistflow flows run one after the other:

* ``seed``: the seed's sequence as a function in the local host (``bench/seed_function``,
  added to a copy of ``template.yml``): CreateCommand, InvokeCommand, sleep 15 s inside the
  function, DescribeInvocationResults once. Billed = that invocation's ``duration_ms``.
* ``events``: assistflow as deployed by default (``CompletionEvents`` true): a signed webhook,
  TaskCompleted events store the result, follow-ups are a 60 s watchdog.
* ``polling``: assistflow with ``CompletionEvents`` false: the follow-ups alone collect.

Each command is ``sleep N; echo done; date +%s.%N`` on the process instance
``i-local00000000000001``; its last line is the moment it finished (same machine, same clock).
Per run: billed function seconds (assistflow: every submit and collector invocation that worked
for the InvokeId, watchdog included, summed from ``host/invocations.jsonl``), seconds from
command finish to result stored (seed: its single read, if it saw the finished result;
assistflow: when ``output.txt`` was stored), whether the result was captured, ECS API calls.

``profile`` runs all three clouds under one ``local.profile.Profile`` (the ``realistic`` pass of
``python -m bench``: the seed flow pays the same latencies); ``ours`` picks the assistflow flows.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    BENCH_DIR,
    REPO_ROOT,
    Cloud,
    billed_ms,
    log,
    read_jsonl,
)
from bench.measure import median, percentile
from local.profile import Profile
from local.state import load_or_create_keys

DURATIONS = (1, 10, 20)
SEED_SLEEP = 15.0  # the seed's time.sleep(15)
INSTANCE = "i-local00000000000001"
SEED_FUNCTION = "assistflow-seed"
FLOWS = ("seed", "events", "polling")
WATCHDOG_WAIT = 75.0  # the first watchdog look comes 60 s ±20 % after the submit


def script(seconds: int) -> str:
    return f"sleep {seconds}; echo done; date +%s.%N"


def finished_at(output: str | None) -> float | None:
    """The command's own finish time: the last line it printed."""
    for line in reversed((output or "").strip().splitlines()):
        try:
            return float(line.strip())
        except ValueError:
            return None
    return None


def seed_template(state: Path) -> Path:
    """``template.yml`` plus the seed's function, written into the state directory.

    Code folders become absolute (the copy does not live beside them); the seed function gets
    the ECS endpoint and the local account's access key the way the ported sample takes them.
    """
    doc = yaml.safe_load((REPO_ROOT / "template.yml").read_text())
    for res in doc["Resources"].values():
        meta = (res.get("Metadata") or {}).get("assistflow") or {}
        if "CodeDir" in meta:
            meta["CodeDir"] = str((REPO_ROOT / meta["CodeDir"]).resolve())
    keys = load_or_create_keys(state)  # LocalCloud.start() loads the same keys
    doc["Parameters"]["SeedAccessKeyId"] = {"Type": "String", "NoEcho": True,
                                            "Default": keys.access_key_id}
    doc["Parameters"]["SeedAccessKeySecret"] = {"Type": "String", "NoEcho": True,
                                                "Default": keys.access_key_secret}
    doc["Resources"]["SeedFunction"] = {
        "Type": "ALIYUN::FC3::Function",
        "Metadata": {"assistflow": {"CodeDir": str(BENCH_DIR / "seed_function")}},
        "Properties": {
            "FunctionName": {"Fn::Sub": "${Prefix}-seed"},
            "Description": "The seed's sample: create, invoke, sleep 15 s, read once.",
            "Runtime": "python3.10", "Handler": "index.handler",
            "MemorySize": 256, "Cpu": 0.25, "Timeout": 60,
            "EnvironmentVariables": {
                "SEED_ECS_ENDPOINT": {"Ref": "EcsEndpoint"},
                "SEED_ACCESS_KEY_ID": {"Ref": "SeedAccessKeyId"},
                "SEED_ACCESS_KEY_SECRET": {"Ref": "SeedAccessKeySecret"},
            },
        },
    }
    path = state / "bench-template.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Sample:
    flow: str
    seconds: int
    repeat: int
    invoke_id: str = ""
    captured: bool = False
    billed_s: float | None = None
    latency_s: float | None = None  # command finish -> result stored (None: not captured)
    ecs_calls: int = 0
    ecs_calls_by_action: dict[str, int] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)
    billed_ms_by_kind: dict[str, float] = field(default_factory=dict)  # submit, event, followup
    invocations: int = 0
    cold: bool = False
    error: str = ""


def _run_seed(cloud: Cloud, repeats: int, durations: tuple[int, ...],
              out: list[Sample]) -> None:
    runtime = cloud.runtimes[SEED_FUNCTION]
    runtime.invoke(json.dumps({"instance_id": INSTANCE, "command": "echo warm",
                               "sleep_seconds": 0}).encode())  # warm-up, not measured
    for repeat in range(repeats):
        for seconds in durations:
            sample = Sample("seed", seconds, repeat)
            cloud.ecs_calls(reset=True)
            inv = runtime.invoke(json.dumps({"instance_id": INSTANCE, "command": script(seconds),
                                             "sleep_seconds": SEED_SLEEP}).encode())
            calls = cloud.ecs_calls()
            result = inv.result if isinstance(inv.result, dict) else {}
            output = result.get("output")
            sample.invoke_id = str(result.get("invoke_id", ""))
            sample.request_ids = [inv.request_id]
            sample.invocations = 1
            sample.cold = inv.cold
            sample.billed_s = billed_ms(cloud.jsonl, [inv.request_id]) / 1000
            sample.ecs_calls_by_action = calls
            sample.ecs_calls = sum(calls.values())
            finish = finished_at(output)
            sample.captured = bool(result.get("status") in ("Success", "Finished")
                                   and output and "done" in output and finish)
            if sample.captured and finish is not None:
                sample.latency_s = float(result["read_at"]) - finish
            if not inv.ok:
                sample.error = str((inv.error or {}).get("errorMessage"))
            out.append(sample)
            log(f"seed    {seconds:>2} s #{repeat + 1}: billed {sample.billed_s:.2f} s, "
                f"captured {sample.captured}, latency {_fmt(sample.latency_s)}, "
                f"ECS calls {sample.ecs_calls}")


def _run_ours(flow: str, cloud: Cloud, repeats: int, durations: tuple[int, ...],
              out: list[Sample], last_submit: dict[str, float]) -> None:
    warm_status, warm = cloud.post({"Type": "RunShellScript", "CommandContent": "echo warm",
                                    "InstanceIds": [INSTANCE]})
    if warm_status == 202:  # warm-up, not measured
        cloud.ledger.wait_finished([warm["InvokeId"]], timeout=60)
    for repeat in range(repeats):
        for seconds in durations:
            sample = Sample(flow, seconds, repeat)
            cloud.ecs_calls(reset=True)
            status, body = cloud.post({"Type": "RunShellScript", "CommandContent": script(seconds),
                                       "InstanceIds": [INSTANCE], "Name": f"assistflow-bench-{seconds}s"})
            last_submit[flow] = time.time()
            if status != 202:
                sample.error = f"webhook answered {status}: {body}"
                out.append(sample)
                continue
            sample.invoke_id = invoke_id = str(body["InvokeId"])
            if not cloud.ledger.wait_finished([invoke_id], timeout=seconds + 150):
                sample.error = "no summary within the time limit"
            calls = cloud.ecs_calls()
            sample.ecs_calls_by_action = calls
            sample.ecs_calls = sum(calls.values())
            key = f"results/{invoke_id}/{INSTANCE}/output.txt"
            stored = cloud.stored_at(key)
            raw = cloud.read(key)
            output = raw.decode("utf-8", "replace") if raw is not None else None
            finish = finished_at(output)
            sample.captured = bool(output and "done" in output and finish and stored)
            if sample.captured and stored is not None and finish is not None:
                sample.latency_s = stored - finish
            out.append(sample)
            log(f"{flow:<7} {seconds:>2} s #{repeat + 1}: captured {sample.captured}, "
                f"latency {_fmt(sample.latency_s)}, ECS calls {sample.ecs_calls}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _guarded(name: str, errors: dict[str, str], target: Any, *args: Any) -> threading.Thread:
    def body() -> None:
        try:
            target(*args)
        except Exception as exc:
            errors[name] = repr(exc)
            log(f"{name} failed: {exc!r}")

    thread = threading.Thread(target=body, name=f"bench-{name}", daemon=True)
    thread.start()
    return thread


def run(repeats: int, durations: tuple[int, ...] = DURATIONS, profile: Profile | None = None,
        ours: tuple[str, ...] = ("events", "polling")) -> dict[str, Any]:
    clouds = {"seed": Cloud("seed", {"CompletionEvents": False}, template=seed_template,
                            profile=profile)}
    clouds.update({flow: Cloud(flow, {"CompletionEvents": flow == "events"}, profile=profile)
                   for flow in ours})
    samples: dict[str, list[Sample]] = {flow: [] for flow in FLOWS}
    errors: dict[str, str] = {}
    last_submit: dict[str, float] = {}
    started = time.time()
    try:
        for cloud in clouds.values():
            cloud.start()
        # The seed flow sleeps most of the time, so it runs beside ours; the two assistflow
        # flows run one after the other so neither bills the other's load.
        def ours_flows() -> None:
            for flow in ours:
                try:
                    _run_ours(flow, clouds[flow], repeats, durations, samples[flow], last_submit)
                except Exception as exc:
                    errors[flow] = repr(exc)
                    log(f"{flow} failed: {exc!r}")

        threads = [
            _guarded("seed", errors, _run_seed, clouds["seed"], repeats, durations,
                     samples["seed"]),
            _guarded("ours", errors, ours_flows),
        ]
        for thread in threads:
            thread.join()
        # With completion events the follow-ups are a watchdog that looks 60 s (±20 %) after
        # the submit: it is billed too, so wait for it before adding up.
        events = clouds.get("events")
        ids = [s.invoke_id for s in samples["events"] if s.invoke_id]
        remaining = max(0.0, last_submit.get("events", 0.0) + WATCHDOG_WAIT - time.time())
        if ids and events is not None:
            log(f"waiting up to {remaining + 15:.0f} s for the events flow's watchdog looks")
            events.ledger.wait(lambda: all(
                any(e.kind == "followup" for e in events.ledger.by_invoke.get(i, ()))
                for i in ids), timeout=remaining + 15)
        for flow in ours:
            cloud = clouds[flow]
            for sample in samples[flow]:
                entries = cloud.ledger.of(sample.invoke_id)
                sample.request_ids = sorted({e.request_id for e in entries})
                sample.invocations = len(entries)
                sample.cold = any(e.cold for e in entries)
                sample.billed_s = billed_ms(cloud.jsonl, sample.request_ids) / 1000
                by_kind: dict[str, float] = {}
                for entry in {e.request_id: e for e in entries}.values():
                    by_kind[entry.kind] = by_kind.get(entry.kind, 0.0) + billed_ms(
                        cloud.jsonl, [entry.request_id])
                sample.billed_ms_by_kind = {k: round(v, 2) for k, v in sorted(by_kind.items())}
        # The warm-ups' first invocations started their instances: what a cold start bills.
        cold_ms = {flow: {r["function"]: r["duration_ms"] for r in read_jsonl(clouds[flow].jsonl)
                          if r.get("cold")} for flow in clouds}
    finally:
        for cloud in clouds.values():
            cloud.stop()
    result = summarize(samples, durations, repeats, errors, time.time() - started)
    result["cold_first_invocation_ms"] = cold_ms
    result["profile"] = (profile or Profile.fast()).name
    return result


def summarize(samples: dict[str, list[Sample]], durations: tuple[int, ...], repeats: int,
              errors: dict[str, str], elapsed: float) -> dict[str, Any]:
    per_command: dict[str, Any] = {}
    for seconds in durations:
        row: dict[str, Any] = {}
        for flow in FLOWS:
            runs = [s for s in samples[flow] if s.seconds == seconds]
            billed = [s.billed_s for s in runs if s.billed_s is not None]
            delays = [s.latency_s for s in runs if s.latency_s is not None]
            row[flow] = {
                "runs": len(runs),
                "billed_s": median(billed),
                "latency_after_finish_s": median(delays),
                "captured": sum(s.captured for s in runs),
                "ecs_calls": median(s.ecs_calls for s in runs),
                "function_invocations": median(s.invocations for s in runs),
                "billed_ms_by_kind": {
                    kind: median(s.billed_ms_by_kind.get(kind, 0.0) for s in runs)
                    for kind in sorted({k for s in runs for k in s.billed_ms_by_kind})},
            }
        for flow in ("events", "polling"):
            seed_b, ours_b = row["seed"]["billed_s"], row[flow]["billed_s"]
            row[f"billed_seed_over_{flow}"] = (seed_b / ours_b) if seed_b and ours_b else None
            seed_c, ours_c = row["seed"]["ecs_calls"], row[flow]["ecs_calls"]
            row[f"ecs_calls_{flow}_over_seed"] = (ours_c / seed_c) if seed_c and ours_c else None
            seed_l, ours_l = (row["seed"]["latency_after_finish_s"],
                              row[flow]["latency_after_finish_s"])
            row[f"latency_{flow}_over_seed"] = (ours_l / seed_l) if seed_l and ours_l else None
        per_command[str(seconds)] = row

    def total_ratio(flow: str) -> float | None:
        seed = [per_command[str(s)]["seed"]["billed_s"] for s in durations]
        ours = [per_command[str(s)][flow]["billed_s"] for s in durations]
        if None in seed or None in ours or not sum(ours):
            return None
        return sum(seed) / sum(ours)

    latency: dict[str, dict[str, Any]] = {}
    for flow in FLOWS:
        values = [s.latency_s for s in samples[flow] if s.latency_s is not None]
        latency[flow] = {"p50": percentile(values, 50), "p95": percentile(values, 95),
                         "n": len(values), "of": len(samples[flow])}

    def captured(flow: str, seconds: int) -> bool:
        runs = [s for s in samples[flow] if s.seconds == seconds]
        return bool(runs) and all(s.captured for s in runs)

    by_kind: dict[str, dict[str, float | None]] = {}
    for flow in ("events", "polling"):
        kinds = sorted({k for s in samples[flow] for k in s.billed_ms_by_kind})
        by_kind[flow] = {k: median(s.billed_ms_by_kind.get(k, 0.0) for s in samples[flow])
                         for k in kinds}

    longest = max(durations)
    return {
        "repeats": repeats,
        "durations_s": list(durations),
        "seed_sleep_s": SEED_SLEEP,
        "elapsed_s": elapsed,
        "per_command": per_command,
        "latency_after_finish_s": latency,
        "billed_ms_by_kind": by_kind,
        "billed_ratio_seed_over_events": total_ratio("events"),
        # ECS API calls from the POST until the summary was stored (the watchdog look later)
        "ecs_calls_per_request": {flow: median(s.ecs_calls for s in samples[flow]
                                               if s.invoke_id and not s.error)
                                  for flow in FLOWS},
        "billed_ratio_seed_over_polling": total_ratio("polling"),
        "seed_captured_longest": captured("seed", longest),
        "events_captured_longest": captured("events", longest),
        "polling_captured_longest": captured("polling", longest),
        "errors": errors,
        "samples": [asdict(s) for flow in FLOWS for s in samples[flow]],
    }
