"""``python -m bench``: run the benchmarks, print a table, write ``bench/results/latest.json``.

``--quick`` runs fewer repeats and shorter windows (a few minutes); ``--only`` picks
benchmarks (``seed``, ``fanout``, ``cold``, ``throughput``). Absolute times depend on the
machine; the ratios are against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cold_start, fanout, seed_vs_ours, throughput
from bench.common import RESULTS_DIR, log, quiet_logs
from bench.measure import machine

BENCHMARKS = ("cold", "throughput", "seed", "fanout")

TARGETS = {
    "billed_ratio_seed_over_ours": ">= 300",
    "latency_after_finish_p50_s": "<= 0.5",
    "latency_after_finish_p95_s": "<= 1.5",
    "fanout_10k_seconds": "<= 60",
    "fanout_10k_peak_rss_mb": "<= 256",
    "import_ms": "<= 120 each",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, shorter windows (about 4 minutes)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, help="seed-vs-assistflow rounds (3; quick 1)")
    parser.add_argument("--fanout-instances", type=int, default=10_000)
    parser.add_argument("--fanout-duration", type=float, default=1.0,
                        help="simulated run time of each instance, seconds")
    parser.add_argument("--fanout-modes",
                        help="events,polling (default both; quick: events, the template default)")
    parser.add_argument("--fanout-repeats", type=int, default=1)
    parser.add_argument("--cold-runs", type=int, help="fresh processes per module (15; quick 5)")
    parser.add_argument("--throughput-seconds", type=float, help="submit window (30; quick 10)")
    parser.add_argument("--threads", type=int, default=4, help="webhook client threads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--verbose", action="store_true", help="show the local cloud's logs")
    args = parser.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.cold_runs = args.cold_runs or (5 if args.quick else 15)
    args.throughput_seconds = args.throughput_seconds or (10.0 if args.quick else 30.0)
    modes = args.fanout_modes or ("events" if args.quick else "events,polling")
    args.fanout_modes = tuple(m.strip() for m in modes.split(",") if m.strip())
    if set(args.fanout_modes) - {"events", "polling"}:
        parser.error("--fanout-modes: events and/or polling")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_logs(args.verbose)
    started = time.time()
    report: dict[str, Any] = {
        "billed_ratio_seed_over_ours": None,
        "latency_after_finish_p50_s": None,
        "latency_after_finish_p95_s": None,
        "seed_captured_20s": None,
        "ours_captured_20s": None,
        "fanout_10k_seconds": None,
        "fanout_10k_results": None,
        "fanout_10k_peak_rss_mb": None,
        "import_ms": None,
        "webhook_submits_per_s": None,
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "config": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                   for k, v in vars(args).items()},
        "targets": TARGETS,
        "details": {},
    }
    m = report["machine"]
    log(f"{m['cpu_model']}, {m['cores']} cores, Python {m['python']}; running "
        f"{', '.join(args.only)} ({report['mode']})")
    details = report["details"]
    failures: dict[str, str] = {}

    def attempt(name: str, fn: Any, *fn_args: Any) -> Any:
        log(f"--- {name}")
        try:
            return fn(*fn_args)
        except Exception as exc:  # report the others anyway
            failures[name] = repr(exc)
            log(f"{name} FAILED: {exc!r}")
            return None

    if "cold" in args.only:
        cold = details["cold_start"] = attempt("cold start", cold_start.run, args.cold_runs)
        if cold:
            report["import_ms"] = {k: round(v, 1) for k, v in cold["import_ms"].items()}
    if "throughput" in args.only:
        tp = details["throughput"] = attempt("throughput", throughput.run,
                                             args.throughput_seconds, args.threads)
        if tp:
            report["webhook_submits_per_s"] = round(tp["submits_per_s"], 1)
    if "seed" in args.only:
        sv = details["seed_vs_ours"] = attempt("seed flow vs assistflow", seed_vs_ours.run,
                                               args.repeats)
        if sv:
            lat = sv["latency_after_finish_s"]["events"]
            report.update({
                "billed_ratio_seed_over_ours": sv["billed_ratio_seed_over_events"],
                "billed_ratio_seed_over_ours_polling": sv["billed_ratio_seed_over_polling"],
                "latency_after_finish_p50_s": lat["p50"],
                "latency_after_finish_p95_s": lat["p95"],
                "latency_after_finish_polling_p50_s":
                    sv["latency_after_finish_s"]["polling"]["p50"],
                "latency_after_finish_polling_p95_s":
                    sv["latency_after_finish_s"]["polling"]["p95"],
                "seed_captured_20s": sv["seed_captured_longest"],
                "ours_captured_20s": sv["events_captured_longest"],
                "ours_polling_captured_20s": sv["polling_captured_longest"],
            })
    if "fanout" in args.only:
        fo = details["fanout"] = attempt("fan-out", fanout.run, args.fanout_instances,
                                         args.fanout_duration, args.fanout_modes,
                                         args.fanout_repeats)
        if fo:
            head = fo["summary"].get("events") or next(iter(fo["summary"].values()))
            report.update({
                "fanout_10k_instances": fo["instances"],
                "fanout_10k_mode": "events" if "events" in fo["summary"] else "polling",
                "fanout_10k_seconds": head["seconds"],
                "fanout_10k_results": head["results"],
                "fanout_10k_peak_rss_mb": head["peak_rss_mb"],
            })
            if "polling" in fo["summary"]:
                poll = fo["summary"]["polling"]
                report.update({"fanout_10k_polling_seconds": poll["seconds"],
                               "fanout_10k_polling_results": poll["results"],
                               "fanout_10k_polling_peak_rss_mb": poll["peak_rss_mb"]})
    report["failures"] = failures
    report["elapsed_s"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(render(report))
    print(f"\nwritten to {args.out} in {report['elapsed_s']:.0f} s")
    return 1 if failures else 0


# --- the table ------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _met(value: Any, target: str) -> str:
    if value is None:
        return ""
    op, _, limit = target.partition(" ")
    bound = float(limit)
    ok = value >= bound if op == ">=" else value <= bound
    return "met" if ok else "MISSED"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    parts = [f"assistflow benchmarks ({report['mode']}) on {m['cpu_model']}, {m['cores']} cores "
             f"({m['usable_cores']} usable), {m['memory_mb']} MB, {m['implementation']} "
             f"{m['python']}, {m['platform']}"]
    details = report["details"]
    sv = details.get("seed_vs_ours")
    if sv:
        rows: list[tuple[str, ...]] = []
        for seconds, row in sv["per_command"].items():
            for flow in ("seed", "events", "polling"):
                cell = row[flow]
                ratio = "" if flow == "seed" else _num(row[f"billed_seed_over_{flow}"], 0, "x")
                rows.append((f"{seconds} s", flow, _num(cell["billed_s"], 3),
                             ratio, _num(cell["latency_after_finish_s"]),
                             f"{cell['captured']}/{cell['runs']}", _num(cell["ecs_calls"], 0),
                             _num(cell["function_invocations"], 0)))
        parts.append(f"\n1. Seed flow vs assistflow (median of {sv['repeats']} round(s); seed "
                     f"sleeps {sv['seed_sleep_s']:.0f} s; events = CompletionEvents true, the "
                     "default; polling = follow-ups alone)\n" + _table(
                         ("command", "flow", "billed s", "seed/ours", "finish->stored s",
                          "captured", "ECS calls", "fn invocations"), rows))
        lat = sv["latency_after_finish_s"]
        kinds = "; ".join(f"{flow}: " + ", ".join(f"{k} {_num(v, 1)}" for k, v in ks.items())
                          for flow, ks in sv.get("billed_ms_by_kind", {}).items())
        parts.append(f"assistflow billed ms per request by invocation kind (median): {kinds}")
        parts.append(
            f"billed seed/ours over the three commands: events "
            f"{_num(sv['billed_ratio_seed_over_events'], 0, 'x')} "
            f"({_met(sv['billed_ratio_seed_over_events'], '>= 300')} >=300x), polling "
            f"{_num(sv['billed_ratio_seed_over_polling'], 0, 'x')}\n"
            f"finish->stored, events: p50 {_num(lat['events']['p50'])} s "
            f"({_met(lat['events']['p50'], '<= 0.5')} <=0.5), p95 {_num(lat['events']['p95'])} s "
            f"({_met(lat['events']['p95'], '<= 1.5')} <=1.5), n={lat['events']['n']}; polling: "
            f"p50 {_num(lat['polling']['p50'])} s, p95 {_num(lat['polling']['p95'])} s; seed "
            f"(captured runs only): p50 {_num(lat['seed']['p50'])} s")
    fo = details.get("fanout")
    if fo:
        rows = []
        for mode, s in fo["summary"].items():
            runs = fo["runs"][mode]
            last = runs[-1]
            rows.append((mode, _num(s["seconds"], 1), _met(s["seconds"], "<= 60"),
                         f"{_num(s['results'], 0)}/{fo['instances']}",
                         _num(s["invoke_command_calls"], 0), _num(s["collector_invocations"], 0),
                         _num(s["collector_billed_s"], 1), _num(s["peak_rss_mb"], 1),
                         _met(s["peak_rss_mb"], "<= 256"), _num(s["oss_objects"], 0),
                         _num(last.get("async_events_not_run_yet"), 0)))
        parts.append(f"\n2. Fan-out: one request to {fo['instances']} simulated instances "
                     f"({fo['simulated_duration_s']:g} s each; median of {fo['repeats']} run(s))\n"
                     + _table(("mode", "all summaries s", "<=60", "result.json",
                               "InvokeCommand", "collector inv.", "collector s",
                               "peak RSS MB/proc", "<=256", "OSS objects", "events queued"),
                              rows))
    cold = details.get("cold_start")
    if cold:
        rows = []
        for variant, value in cold["import_ms"].items():
            target = "" if variant == cold_start.NAIVE else _met(value, "<= 120")
            top = ", ".join(f"{t['module']} {t['cumulative_ms']:.0f}"
                            for t in cold["top_imports"][variant][:3])
            rows.append((variant, _num(value, 1), _num(cold["min_ms"][variant], 1),
                         _num(cold["max_ms"][variant], 1), target, top))
        parts.append(f"\n3. Cold start: import time, median of {cold['runs']} fresh processes\n"
                     + _table(("module", "median ms", "min", "max", "<=120", "costliest (ms)"),
                              rows))
    tp = details.get("throughput")
    if tp:
        parts.append(
            f"\n4. Throughput: {tp['client_threads']} client threads for {tp['seconds']:g} s\n"
            + _table(("submits/s", "per-second median (min-max)", "POST p50/p95 s", "accepted",
                      "invoked", "stored", "balanced"),
                     [(_num(tp["submits_per_s"], 1),
                       f"{_num(tp['per_second_median'], 0)} ({tp['per_second_min']}-"
                       f"{tp['per_second_max']})",
                       f"{_num(tp['latency_p50_s'], 3)}/{_num(tp['latency_p95_s'], 3)}",
                       str(tp["accepted"]), str(tp["invoked"]), str(tp["stored"]),
                       _num(tp["balanced"]))]))
    keys = ("billed_ratio_seed_over_ours", "latency_after_finish_p50_s",
            "latency_after_finish_p95_s", "seed_captured_20s", "ours_captured_20s",
            "fanout_10k_seconds", "fanout_10k_results", "fanout_10k_peak_rss_mb",
            "webhook_submits_per_s")
    rows = [(k, _num(report.get(k)), TARGETS.get(k, ""),
             _met(report.get(k), TARGETS[k]) if k in TARGETS else "") for k in keys]
    imports = report.get("import_ms") or {}
    rows += [(f"import_ms.{k}", _num(v, 1), "" if k == cold_start.NAIVE else "<= 120",
              "" if k == cold_start.NAIVE else _met(v, "<= 120")) for k, v in imports.items()]
    parts.append("\nlatest.json\n" + _table(("key", "value", "target", ""), rows))
    if report.get("failures"):
        parts.append(f"\nFAILED: {report['failures']}")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
