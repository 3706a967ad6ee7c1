"""The table ``python -m bench`` prints: each benchmark's rows, then ``latest.json``'s headline
keys beside their targets (under both profiles where a benchmark ran under both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import cold_start
from bench.cpu import line as cpu_line

# key -> target, as "<op> <bound>"; `render` marks each "met" or "MISSED"
TARGETS = {
    "billed_ratio_seed_over_ours": ">= 300",
    "latency_after_finish_p50_s": "<= 0.5",
    "latency_after_finish_p95_s": "<= 1.5",
    "fanout_10k_seconds": "<= 30",
    "fanout_10k_webhook_answer_s": "<= 5",
    "fanout_10k_peak_rss_mb": "<= 256",
    "fanout_10k_over_timeout": "<= 0",
    "import_ms": "<= 120 each",
    # under the realistic profile (local/profiles/realistic.yml)
    "billed_ratio_seed_over_ours_realistic": ">= 40",
    "latency_after_finish_p50_s_realistic": "<= 1.0",
    "latency_after_finish_p95_s_realistic": "<= 2.0",
    "fanout_10k_over_timeout_realistic": "<= 0",
    "fanout_10k_seconds_realistic": "<= 30",
    "fanout_10k_webhook_answer_s_realistic": "<= 5",
}

HEADLINE = ("billed_ratio_seed_over_ours", "latency_after_finish_p50_s",
            "latency_after_finish_p95_s", "seed_captured_20s", "ours_captured_20s",
            "fanout_10k_seconds", "fanout_10k_seconds_runs", "fanout_10k_results", "fanout_10k_peak_rss_mb",
            "fanout_10k_over_timeout", "fanout_10k_webhook_answer_s", "webhook_submits_per_s",
            "billed_ratio_seed_over_ours_realistic", "latency_after_finish_p50_s_realistic",
            "latency_after_finish_p95_s_realistic", "fanout_10k_seconds_realistic",
            "fanout_10k_seconds_runs_realistic", "fanout_10k_results_realistic",
            "fanout_10k_over_timeout_realistic", "fanout_10k_webhook_answer_s_realistic",
            "ecs_calls_per_request", "report_render_ms_100", "report_render_ms_10000",
            "report_bytes_100", "report_bytes_10000", "oss_puts_per_s", "oss_fanout_floor_s",
            "oss_puts_per_s_realistic", "oss_fanout_floor_s_realistic",
            "oss_client_cpu_ratio_threads_over_writes",
            "oss_client_cpu_ratio_threads_over_writes_realistic")


def num(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def met(value: Any, target: str) -> str:
    if value is None or not target:
        return ""
    op, _, limit = target.partition(" ")
    bound = float(limit.split()[0])
    ok = value >= bound if op == ">=" else value <= bound
    return "met" if ok else "MISSED"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _seed_section(sv: dict[str, Any], number: str, suffix: str,
                  targets: dict[str, str]) -> list[str]:
    ratio_t = targets[f"billed_ratio_seed_over_ours{suffix}"]
    p50_t = targets[f"latency_after_finish_p50_s{suffix}"]
    p95_t = targets[f"latency_after_finish_p95_s{suffix}"]
    rows: list[tuple[str, ...]] = []
    for seconds, row in sv["per_command"].items():
        for flow in ("seed", "events", "polling"):
            cell = row[flow]
            if not cell["runs"]:
                continue  # a flow this pass did not run
            ratio = "" if flow == "seed" else num(row[f"billed_seed_over_{flow}"], 0, "x")
            rows.append((f"{seconds} s", flow, num(cell["billed_s"], 3), ratio,
                         num(cell["latency_after_finish_s"]), f"{cell['captured']}/{cell['runs']}",
                         num(cell["ecs_calls"], 0), num(cell["function_invocations"], 0)))
    lat = sv["latency_after_finish_s"]
    kinds = "; ".join(f"{flow}: " + ", ".join(f"{k} {num(v, 1)}" for k, v in ks.items())
                      for flow, ks in sv.get("billed_ms_by_kind", {}).items() if ks)
    events = sv["billed_ratio_seed_over_events"]
    return [
        f"\n{number}. Seed flow vs assistflow, profile {sv.get('profile', 'fast')} (median of "
        f"{sv['repeats']} round(s); seed sleeps {sv['seed_sleep_s']:.0f} s; events = "
        "CompletionEvents true, the default; polling = follow-ups alone)\n" + table(
            ("command", "flow", "billed s", "seed/ours", "finish->stored s", "captured",
             "ECS calls", "fn invocations"), rows),
        f"assistflow billed ms per request by invocation kind (median): {kinds}",
        f"billed seed/ours over the three commands: events {num(events, 0, 'x')} "
        f"({met(events, ratio_t)} {ratio_t}), polling "
        f"{num(sv['billed_ratio_seed_over_polling'], 0, 'x')}\n"
        f"finish->stored, events: p50 {num(lat['events']['p50'])} s ({met(lat['events']['p50'], p50_t)} "
        f"{p50_t}), p95 {num(lat['events']['p95'])} s ({met(lat['events']['p95'], p95_t)} "
        f"{p95_t}), n={lat['events']['n']}; polling: p50 {num(lat['polling']['p50'])} s, p95 "
        f"{num(lat['polling']['p95'])} s; seed (captured runs only): p50 {num(lat['seed']['p50'])} s"]


def _fanout_section(fo: dict[str, Any], number: str) -> str:
    rows = []
    for mode, s in fo["summary"].items():
        last = fo["runs"][mode][-1]
        runs = ", ".join(num(x, 1) for x in s.get("seconds_runs") or ())
        rows.append((mode, num(s["seconds"], 1), met(s["seconds"], "<= 30"), runs,
                     f"{num(s['results'], 0)}/{fo['instances']}",
                     num(s["invoke_command_calls"], 0), num(s["collector_invocations"], 0),
                     num(s["collector_billed_s"], 1), num(s["peak_rss_mb"], 1),
                     met(s["peak_rss_mb"], "<= 256"), num(s["oss_objects"], 0),
                     num(last.get("async_events_not_run_yet"), 0), num(s.get("over_timeout"), 0)))
    # where the CPU went, in the last run of each mode (bench/cpu.py)
    cpu = "".join(f"\n   {mode}: {cpu_line(runs[-1]['cpu'])}" for mode, runs in fo["runs"].items()
                  if runs and runs[-1].get("cpu"))
    return (f"\n{number}. Fan-out, profile {fo.get('profile', 'fast')}: one request to "
            f"{fo['instances']} simulated instances ({fo['simulated_duration_s']:g} s each; median "
            f"of {fo['repeats']} run(s))\n"
            + table(("mode", "all summaries s", "<=30", "each run s", "result.json",
                     "InvokeCommand",
                     "collector inv.", "collector s", "peak RSS MB/proc", "<=256", "OSS objects",
                     "events queued", "over Timeout"), rows) + cpu)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    targets = report.get("targets") or TARGETS
    parts = [f"assistflow benchmarks ({report['mode']}) on {m['cpu_model']}, {m['cores']} cores "
             f"({m['usable_cores']} usable), {m['memory_mb']} MB, {m['implementation']} "
             f"{m['python']}, {m['platform']}"]
    speed = m.get("python_speed_ms")
    if speed:
        parts[0] += (f"; a fixed Python workload took {speed.get('start')} ms at the start, "
                     f"{speed.get('end', '-')} ms at the end (bench.measure.python_speed_ms: "
                     "figures move with it)")
    details = report["details"]
    for key, number, suffix in (("seed_vs_ours", "1", ""),
                                ("seed_vs_ours_realistic", "1r", "_realistic")):
        if details.get(key):
            parts += _seed_section(details[key], number, suffix, targets)
    for key, number in (("fanout", "2"), ("fanout_realistic", "2r")):
        if details.get(key):
            parts.append(_fanout_section(details[key], number))
    cold = details.get("cold_start")
    if cold:
        rows: list[tuple[str, ...]] = []
        for variant, value in cold["import_ms"].items():
            target = "" if variant == cold_start.NAIVE else met(value, "<= 120")
            top = ", ".join(f"{t['module']} {t['cumulative_ms']:.0f}"
                            for t in cold["top_imports"][variant][:3])
            rows.append((variant, num(value, 1), num(cold["min_ms"][variant], 1),
                         num(cold["max_ms"][variant], 1), target, top))
        parts.append(f"\n3. Cold start: import time, median of {cold['runs']} fresh processes\n"
                     + table(("module", "median ms", "min", "max", "<=120", "costliest (ms)"),
                             rows))
    tp = details.get("throughput")
    if tp:
        parts.append(
            f"\n4. Throughput: {tp['client_threads']} client threads for {tp['seconds']:g} s\n"
            + table(("submits/s", "per-second median (min-max)", "POST p50/p95 s", "accepted",
                     "invoked", "stored", "balanced"),
                    [(num(tp["submits_per_s"], 1),
                      f"{num(tp['per_second_median'], 0)} ({tp['per_second_min']}-"
                      f"{tp['per_second_max']})",
                      f"{num(tp['latency_p50_s'], 3)}/{num(tp['latency_p95_s'], 3)}",
                      str(tp["accepted"]), str(tp["invoked"]), str(tp["stored"]),
                      num(tp["balanced"]))]))
    stores = [s for s in (details.get("oss_store"), details.get("oss_store_realistic")) if s]
    if stores:
        first = stores[0]
        shapes = [shape for store in stores for shape in (store, store.get("baseline")) if shape]
        parts.append(
            f"\n6. Local OSS store rate: {first['processes']} client processes (the collectors'"
            f" instances), {first['objects']} objects, the OSS emulator in "
            f"{first.get('oss_processes', 1)} process(es); writes: looks of 100 instances "
            f"from one thread, {first.get('at_once')} at once (the collectors' shape); threads:"
            f" Results.put from 16 threads (the baseline)\n"
            + table(("profile", "shape", "objects/s", "OSS ms CPU/object", "OSS cores",
                     "client ms CPU/object", "10k fan-out floor s"),
                    [(shape.get("profile", "fast"), shape.get("shape", "threads"),
                      num(shape["puts_per_s"], 0), num(shape["server_ms_per_put"], 3),
                      num(shape["server_cores"]), num(shape["client_ms_per_put"], 3),
                      num(shape["fanout_floor_s"], 1))
                     for shape in shapes]))
    keys: list[tuple[str, ...]] = [
        (k, num(report.get(k)), targets.get(k, ""), met(report.get(k), targets.get(k, "")))
        for k in HEADLINE if k in report]
    imports = report.get("import_ms") or {}
    keys += [(f"import_ms.{k}", num(v, 1), "" if k == cold_start.NAIVE else "<= 120",
              "" if k == cold_start.NAIVE else met(v, "<= 120")) for k, v in imports.items()]
    parts.append("\nlatest.json\n" + table(("key", "value", "target", ""), keys))
    if report.get("failures"):
        parts.append(f"\nFAILED: {report['failures']}")
    return "\n".join(parts)
