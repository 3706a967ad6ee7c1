"""``python -m bench``: run the benchmarks, print a table, write ``bench/results/latest.json``.

``--quick`` runs fewer repeats and shorter windows (a few minutes); ``--only`` picks
benchmarks (``seed``, ``fanout``, ``cold``, ``throughput``, ``report``, ``oss``). The seed comparison and the
fan-out run under the ``fast`` profile (today's keys) and again under ``realistic`` (keys
ending in ``_realistic``; ``--profiles`` picks). Absolute times depend on the machine; the
ratios are against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import cold_start, fanout, oss_store, report_render, seed_vs_ours, throughput
from bench.common import RESULTS_DIR, log, quiet_logs
from bench.measure import machine, python_speed_ms
from bench.report import TARGETS, render
from local.profile import Profile

BENCHMARKS = ("cold", "throughput", "seed", "fanout", "report", "oss")
PROFILES = ("fast", "realistic")


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
    parser.add_argument("--fanout-repeats", type=int,
                        help="runs of the fan-out with completion events, under each profile, "
                             "whose median is the figure (3; quick 1); polling runs once")
    parser.add_argument("--cold-runs", type=int, help="fresh processes per module (15; quick 5)")
    parser.add_argument("--throughput-seconds", type=float, help="submit window (30; quick 10)")
    parser.add_argument("--threads", type=int, default=4, help="webhook client threads")
    parser.add_argument("--profiles", default=",".join(PROFILES),
                        help="profiles the seed comparison and the fan-out run under "
                             "(default fast,realistic)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--verbose", action="store_true", help="show the local cloud's logs")
    args = parser.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    args.profiles = tuple(p.strip() for p in args.profiles.split(",") if p.strip())
    if set(args.profiles) - set(PROFILES):
        parser.error(f"--profiles: {', '.join(PROFILES)}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.cold_runs = args.cold_runs or (5 if args.quick else 15)
    args.throughput_seconds = args.throughput_seconds or (10.0 if args.quick else 30.0)
    args.fanout_repeats = args.fanout_repeats or (1 if args.quick else 3)
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
        "fanout_10k_seconds_runs": None,
        "fanout_10k_results": None,
        "fanout_10k_peak_rss_mb": None,
        "fanout_10k_over_timeout": None,
        "fanout_10k_webhook_answer_s": None,
        "import_ms": None,
        "webhook_submits_per_s": None,
        "billed_ratio_seed_over_ours_realistic": None,
        "latency_after_finish_p50_s_realistic": None,
        "latency_after_finish_p95_s_realistic": None,
        "fanout_10k_seconds_realistic": None,
        "fanout_10k_seconds_runs_realistic": None,
        "fanout_10k_results_realistic": None,
        "fanout_10k_over_timeout_realistic": None,
        "fanout_10k_webhook_answer_s_realistic": None,
        "ecs_calls_per_request": None,
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "config": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                   for k, v in vars(args).items()},
        "targets": {**TARGETS, "fanout_10k_results_realistic": f">= {args.fanout_instances}"},
        "details": {},
    }
    m = report["machine"]
    m["python_speed_ms"] = {"start": python_speed_ms()}
    log(f"{m['cpu_model']}, {m['cores']} cores, Python {m['python']} (fixed workload "
        f"{m['python_speed_ms']['start']} ms); running {', '.join(args.only)} ({report['mode']})")
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
    if "report" in args.only:
        rendered = details["report_render"] = attempt("report.html render",
                                                      report_render.run, args.quick)
        if rendered:
            report.update({f"report_render_ms_{n}": r["render_ms_median"]
                           for n, r in rendered.items()})
            report.update({f"report_bytes_{n}": r["bytes"] for n, r in rendered.items()})
    for name in args.profiles if "oss" in args.only else ():
        suffix = "" if name == "fast" else f"_{name}"
        # the collectors' shape, then the one before as its baseline, in the same run
        store, before = (attempt(f"local OSS store rate ({name}, {shape})", oss_store.run,
                                 4000 if args.quick else 8000, Profile.load(name), shape)
                         for shape in oss_store.SHAPES)
        if store:
            store["baseline"] = before
            details[f"oss_store{suffix}"] = store
            report[f"oss_puts_per_s{suffix}"] = store["puts_per_s"]
            report[f"oss_fanout_floor_s{suffix}"] = store["fanout_floor_s"]
            if before:  # client CPU per object, the threads' ÷ the one writer's
                report[f"oss_client_cpu_ratio_threads_over_writes{suffix}"] = round(
                    before["client_ms_per_put"] / store["client_ms_per_put"], 2)
    if "throughput" in args.only:
        tp = details["throughput"] = attempt("throughput", throughput.run,
                                             args.throughput_seconds, args.threads)
        if tp:
            report["webhook_submits_per_s"] = round(tp["submits_per_s"], 1)
    realistic = Profile.load("realistic")
    if "seed" in args.only and "fast" in args.profiles:
        sv = details["seed_vs_ours"] = attempt("seed flow vs assistflow", seed_vs_ours.run,
                                               args.repeats)
        if sv:
            report.update(_seed_keys(sv, ""))
            report.update({
                "billed_ratio_seed_over_ours_polling": sv["billed_ratio_seed_over_polling"],
                "latency_after_finish_polling_p50_s":
                    sv["latency_after_finish_s"]["polling"]["p50"],
                "latency_after_finish_polling_p95_s":
                    sv["latency_after_finish_s"]["polling"]["p95"],
                "seed_captured_20s": sv["seed_captured_longest"],
                "ours_polling_captured_20s": sv["polling_captured_longest"],
            })
    if "seed" in args.only and "realistic" in args.profiles:
        # The seed flow and the default (events) flow under the same latencies; the round
        # trips per request are counted here, where each costs its ~120 ms.
        sv = details["seed_vs_ours_realistic"] = attempt(
            "seed flow vs assistflow, realistic profile", seed_vs_ours.run, args.repeats,
            seed_vs_ours.DURATIONS, realistic, ("events",))
        if sv:
            report.update(_seed_keys(sv, "_realistic"))
    if "fanout" in args.only and "fast" in args.profiles:
        # the template's default (events) is the target's figure; polling, a comparison, once
        runs = {m: args.fanout_repeats if m == "events" else 1 for m in args.fanout_modes}
        fo = details["fanout"] = attempt("fan-out", fanout.run, args.fanout_instances,
                                         args.fanout_duration, runs)
        if fo:
            head = fo["summary"].get("events") or next(iter(fo["summary"].values()))
            report.update(_fanout_keys(head, ""))
            report.update({"fanout_10k_instances": fo["instances"],
                           "fanout_10k_mode": "events" if "events" in fo["summary"]
                           else "polling"})
            if "polling" in fo["summary"]:
                poll = fo["summary"]["polling"]
                report.update({"fanout_10k_polling_seconds": poll["seconds"],
                               "fanout_10k_polling_results": poll["results"],
                               "fanout_10k_polling_peak_rss_mb": poll["peak_rss_mb"]})
    if "fanout" in args.only and "realistic" in args.profiles:
        fo = details["fanout_realistic"] = attempt(
            "fan-out, realistic profile", fanout.run, args.fanout_instances,
            args.fanout_duration, {"events": args.fanout_repeats}, realistic)
        if fo:
            report.update(_fanout_keys(fo["summary"]["events"], "_realistic"))
    report["failures"] = failures
    m["python_speed_ms"]["end"] = python_speed_ms()
    report["elapsed_s"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(render(report))
    print(f"\nwritten to {args.out} in {report['elapsed_s']:.0f} s")
    return 1 if failures else 0


def _seed_keys(sv: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The headline keys of one pass of the seed comparison (its events flow)."""
    lat = sv["latency_after_finish_s"]["events"]
    return {f"billed_ratio_seed_over_ours{suffix}": sv["billed_ratio_seed_over_events"],
            f"latency_after_finish_p50_s{suffix}": lat["p50"],
            f"latency_after_finish_p95_s{suffix}": lat["p95"],
            f"ours_captured_20s{suffix}": sv["events_captured_longest"],
            "ecs_calls_per_request": sv["ecs_calls_per_request"]["events"]}


def _fanout_keys(head: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The headline keys of one pass of the fan-out."""
    return {f"fanout_10k_seconds{suffix}": head["seconds"],
            f"fanout_10k_seconds_runs{suffix}": head["seconds_runs"],
            f"fanout_10k_results{suffix}": head["results"],
            f"fanout_10k_peak_rss_mb{suffix}": head["peak_rss_mb"],
            f"fanout_10k_over_timeout{suffix}": head["over_timeout"],
            # how long the webhook took to answer the 10k request (issue 14: a few seconds)
            f"fanout_10k_webhook_answer_s{suffix}": head["submit_s"]}


if __name__ == "__main__":
    sys.exit(main())
