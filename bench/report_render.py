"""How long ``shared.report.render`` takes and how big the page is, at 100 and 10,000 instances.

The collector renders ``report.html`` inside the function invocation that writes
``summary.json``: one render per 100-instance batch in a fan-out, one over every instance for
a request's summary. Synthetic inputs shaped as the collector holds them (a summary, the
per-instance ``result.json`` documents, the output tails of the failures), 2 % failed.

    .venv/bin/python -m bench.report_render          # prints the figures as JSON
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from shared import report

FAILED_EVERY = 50  # 2 % of the instances fail


def synthetic(instances: int, invoke_id: str = "t-bench0000000000000000") -> dict[str, Any]:
    """A summary, result documents and failure tails for ``instances`` instances."""
    prefix = "results"
    docs: dict[str, dict[str, Any]] = {}
    for n in range(instances):
        instance_id = f"i-bp1sim{n:013d}"
        bad = n % FAILED_EVERY == 7
        docs[instance_id] = {
            "InstanceId": instance_id, "Status": "Failed" if bad else "Success",
            "ExitCode": 4 if bad else 0, "ErrorCode": "NonZeroExitCode" if bad else "",
            "ErrorInfo": "the command exited with code 4" if bad else "",
            "StartTime": "2026-11-29T10:00:00Z",
            "FinishedTime": f"2026-11-29T10:00:{1 + n % 40:02d}Z", "Truncated": False}
    summary = {
        "InvokeId": invoke_id, "CommandId": "c-bench", "RegionId": "cn-hangzhou",
        "Status": "PartialFailed", "Counts": {
            "Failed": sum(d["Status"] == "Failed" for d in docs.values()),
            "Success": sum(d["Status"] == "Success" for d in docs.values())},
        "InstanceCount": instances, "StartedAt": "2026-11-29T10:00:00Z",
        "FinishedAt": "2026-11-29T10:00:40Z", "RequestId": "r-" + "0" * 24, "Source": "http",
        "Instances": {i: {"Status": d["Status"], "ExitCode": d["ExitCode"], "Truncated": False,
                          "Output": f"{prefix}/{invoke_id}/{i}/output.txt",
                          "Result": f"{prefix}/{invoke_id}/{i}/result.json"}
                      for i, d in docs.items()},
        "Truncated": []}
    tails = {i: report.tail("step 1\nstep 2\nerror: disk full\n" * 30) for i, d in docs.items()
             if d["Status"] == "Failed"}
    return {"summary": summary, "results": docs, "tails": tails,
            "command": {"Name": "assistflow", "Type": "RunShellScript",
                        "Content": "yum -y update\nsystemctl restart app\n"}}


def measure(instances: int, repeats: int) -> dict[str, Any]:
    data = synthetic(instances)
    key = f"results/{data['summary']['InvokeId']}/report.html"
    times, page = [], b""
    for _ in range(repeats):
        started = time.perf_counter()
        page = report.render(data["summary"], key=key, results=data["results"],
                             tails=data["tails"], command=data["command"])
        times.append((time.perf_counter() - started) * 1000)
    return {"instances": instances, "render_ms_median": round(statistics.median(times), 2),
            "render_ms_max": round(max(times), 2), "bytes": len(page)}


def run(quick: bool = False) -> dict[str, Any]:
    """Median render time and size at 100 (one batch) and 10,000 instances (a request)."""
    return {"100": measure(100, 20 if quick else 100),
            "10000": measure(10_000, 3 if quick else 9)}


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
