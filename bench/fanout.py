"""Benchmark 2: one command request to 10,000 simulated instances.

A fresh local cloud whose ``instances.json`` declares 10,000 simulated instances (one entry
with ``Count``; each reports ``ok`` after ``Duration`` seconds) receives one signed webhook
naming all of them. Measured: the InvokeCommand calls (100 batches), the time from the POST
until every invocation's ``summary.json`` is stored (the latest store time of the 100), the
collector invocations and their summed duration until then (``host/invocations.jsonl``), the
peak RSS of any single function process (VmHWM from /proc, sampled every 0.5 s), the objects
in the results bucket (listed through oss2) and how many instances have a ``result.json``.

``events`` is the template's default (``CompletionEvents`` true: one TaskCompleted event per
instance, each an asynchronous collector invocation, with a 60 s watchdog follow-up per
batch); ``polling`` collects by the 100 follow-ups alone.

``profile`` runs it under a ``local.profile.Profile`` (the ``realistic`` pass of
``python -m bench``); ``over_timeout`` counts the function invocations that hit their
``Timeout`` (``FunctionTimeout`` in ``host/invocations.jsonl``) — the submit included, whose
webhook then answers an error and leaves whatever it dispatched to the collectors.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from bench.common import (
    COLLECT,
    SUBMIT_HTTP,
    Cloud,
    log,
    read_jsonl,
    simulated_entry,
    simulated_ids,
)
from bench.cpu import CloudCpu, line
from bench.measure import RssSampler, median
from local.profile import Profile

DISPATCH = "assistflow-dispatch"  # the dispatch function (template.yml, issue 14)
WAIT_LIMIT = 480.0  # seconds to wait for the last summary before reporting a miss
SETTLE = 20.0  # after a failed submit: time for what it dispatched to be collected
POLL = 0.5  # seconds between two looks for the request summary


def _over_timeout(cloud: Cloud, since: float) -> dict[str, int]:
    """Invocations since ``since`` that hit their function's Timeout, by function."""
    return dict(Counter(r["function"] for r in read_jsonl(cloud.jsonl)
                        if r.get("at", 0) >= since - 1 and r.get("error") == "FunctionTimeout"))


def _results(cloud: Cloud) -> int:
    return sum(1 for k in cloud.list_keys("results/") if k.endswith("/result.json"))


def one_run(instances: int, duration: float, mode: str,
            profile: Profile | None = None) -> dict[str, Any]:
    cloud = Cloud(f"fanout-{mode}", {"CompletionEvents": mode == "events"},
                  extra_instances=[simulated_entry(instances, duration, output="ok\n")],
                  profile=profile)
    begun = time.time()
    cloud.start()
    out: dict[str, Any] = {"mode": mode, "instances": instances,
                           "simulated_duration_s": duration,
                           "cloud_start_s": time.time() - begun}
    try:
        ids = simulated_ids(instances)
        cloud.ecs_calls(reset=True)
        request = {"Type": "RunShellScript", "CommandContent": "echo ok",
                   "InstanceIds": ids, "Name": "assistflow-bench-fanout"}
        cpu = CloudCpu(cloud).begin()
        with RssSampler(cloud.runtimes) as rss:
            posted = time.time()
            status, body = cloud.post(request, timeout=300)
            out["submit_s"] = time.time() - posted
            out["status"] = status
            if status != 202:
                out["error"] = f"webhook answered {status}: {str(body)[:500]}"
                time.sleep(SETTLE)
                timeouts = _over_timeout(cloud, posted)
                out.update({"over_timeout": sum(timeouts.values()),
                            "over_timeout_by_function": timeouts, "results": _results(cloud)})
                log(f"fanout {mode}: the submit failed ({out['error'][:200]}); "
                    f"{out['results']} result.json, {out['over_timeout']} over their Timeout")
                return out
            out["not_started"] = len(body.get("NotStarted") or ())  # a partial start: 202 too
            # The request summary (issue 14) is written once every batch is collected; the
            # 202 of a fanned-out request names no InvokeId yet (the dispatchers invoke them).
            request_key = f"results/requests/{body['RequestId']}/summary.json"
            deadline = time.time() + WAIT_LIMIT
            request_at = None
            while request_at is None and time.time() < deadline:
                request_at = cloud.stored_at(request_key)
                # the figure is when OSS stored the summary, not when this loop saw it: a
                # look every 0.5 s costs the cores the fan-out runs on less than every 0.2 s
                time.sleep(POLL)
            done_wall = time.time()
            request_summary = json.loads(cloud.read(request_key) or b"{}") if request_at else {}
            invoke_ids = list(request_summary.get("InvokeIds") or body.get("InvokeIds") or [])
            stored: dict[str, float] = {}
            for invoke_id in invoke_ids:
                at = cloud.stored_at(f"results/{invoke_id}/summary.json")
                if at is not None:
                    stored[invoke_id] = at
            # What the collectors did until the last summary (events may still be queued).
            records = [r for r in read_jsonl(cloud.jsonl) if r.get("at", 0) >= posted - 1]
            calls = cloud.ecs_calls()
            accepted_async = cloud.local.host.invoker.accepted if cloud.local.host else 0
        out["cpu"] = cpu.end(rss)
        kinds = Counter(e.kind for e in cloud.ledger.entries if e.function == COLLECT)
        collect = [r for r in records if r["function"] == COLLECT]
        submit = [r for r in records if r["function"] == SUBMIT_HTTP]
        dispatch = [r for r in records if r["function"] == DISPATCH]
        times = sorted(at - posted for at in stored.values())
        out.update({
            "invocations": len(invoke_ids),
            "summaries": len(stored),
            "complete": request_at is not None and len(stored) == len(invoke_ids),
            # until the request summary: every batch collected and the summary written
            "seconds": (request_at - posted) if request_at is not None else None,
            "last_invocation_summary_s": (max(stored.values()) - posted) if stored else None,
            "dispatch_invocations": len(dispatch),
            "dispatch_billed_s": sum(r["duration_ms"] for r in dispatch) / 1000,
            "dispatch_max_ms": max((r["duration_ms"] for r in dispatch), default=None),
            "seconds_to_half": times[len(times) // 2] if times else None,
            # when each summary was stored, seconds after the POST: where the time went
            "summary_times_s": [round(t, 2) for t in times],
            "waited_s": done_wall - posted,
            "invoke_command_calls": calls.get("InvokeCommand", 0),
            "ecs_calls": calls,
            "submit_ms": sum(r["duration_ms"] for r in submit),
            "collector_invocations": len(collect),
            "collector_invocations_by_kind": dict(kinds),
            "collector_billed_s": sum(r["duration_ms"] for r in collect) / 1000,
            "collector_failed": sum(1 for r in collect if not r.get("ok")),
            "collector_median_ms": median(r["duration_ms"] for r in collect),
            "async_events_accepted": accepted_async,
            "async_events_not_run_yet": max(0, accepted_async - kinds.get("event", 0)),
            "peak_rss_mb": round(rss.peak_mb, 1),
            "peak_rss_mb_by_function": rss.per_function_mb(),
            "function_processes": len(rss.peak_kb),
        })
        keys = cloud.list_keys()
        results = sum(1 for k in keys if k.startswith("results/") and k.endswith("/result.json"))
        outputs = sum(1 for k in keys if k.startswith("results/") and k.endswith("/output.txt"))
        timeouts = _over_timeout(cloud, posted)
        out.update({"oss_objects": len(keys), "results": results, "outputs": outputs,
                    "summary_objects": sum(1 for k in keys if k.endswith("/summary.json")),
                    "over_timeout": sum(timeouts.values()),
                    "over_timeout_by_function": timeouts})
        log(f"fanout {mode}: {out['summaries']}/{out['invocations']} summaries in "
            f"{_fmt(out['seconds'])}, {results} result.json, {len(keys)} objects, "
            f"{len(collect)} collector invocations ({out['collector_billed_s']:.1f} s), "
            f"peak RSS {out['peak_rss_mb']} MB, {out['over_timeout']} over their Timeout")
        log(f"fanout {mode}: {line(out['cpu'])}")
        return out
    finally:
        cloud.stop()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def run(instances: int, duration: float, modes: dict[str, int],
        profile: Profile | None = None) -> dict[str, Any]:
    """``modes``: how many runs of each mode; each figure is the median of its mode's runs
    (the seconds of every run listed too: the local cloud shares its cores, and this machine's
    speed can move by a quarter from one run to the next)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for mode, repeats in modes.items():
        runs[mode] = [one_run(instances, duration, mode, profile) for _ in range(repeats)]
    summary: dict[str, Any] = {}
    for mode, items in runs.items():
        def med(key: str, items: list[dict[str, Any]] = items) -> float | None:
            return median(float(i[key]) for i in items if i.get(key) is not None)

        summary[mode] = {
            "runs": len(items),
            "complete_runs": sum(1 for i in items if i.get("complete")),
            "seconds": med("seconds"),
            "seconds_runs": [round(float(i["seconds"]), 1) for i in items
                             if i.get("seconds") is not None],
            # the worst run: every run must store every result
            "results": min((float(i["results"]) for i in items if i.get("results") is not None),
                           default=None),
            "peak_rss_mb": med("peak_rss_mb"),
            "invoke_command_calls": med("invoke_command_calls"),
            "collector_invocations": med("collector_invocations"),
            "collector_billed_s": med("collector_billed_s"),
            "oss_objects": med("oss_objects"),
            "submit_s": med("submit_s"),
            "dispatch_invocations": med("dispatch_invocations"),
            "cpu_total_s": median(float(i["cpu"]["total_s"]) for i in items if i.get("cpu")),
            # the worst run: the target is none at all
            "over_timeout": max((int(i.get("over_timeout") or 0) for i in items), default=None),
        }
    return {"instances": instances, "simulated_duration_s": duration,
            "repeats": max(modes.values(), default=0),
            "profile": (profile or Profile.fast()).name, "summary": summary, "runs": runs}
