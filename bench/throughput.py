"""Benchmark 4: signed webhook submits per second, sustained.

A local cloud with simulated instances (each reports after ``duration`` s) receives signed
webhook deliveries from a few client threads for ``seconds``; each delivery is a distinct
one-instance command request (distinct bodies, so no two share a signature). Afterwards the
books must balance: accepted (HTTP 202) == invoked (distinct InvokeIds that
DescribeInvocations reports) == stored (``summary.json`` objects in the bucket, once every
accepted request has been collected). The rate is accepted requests over the wall time of
the whole run; the per-second rates (by completion second) give its spread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from bench.common import Cloud, log, simulated_entry, simulated_ids
from bench.measure import median, percentile

INSTANCES = 50


def _described_invoke_ids(cloud: Cloud) -> set[str]:
    client = cloud.acs()
    found: set[str] = set()
    token = ""
    while True:
        req = DescribeInvocationsRequest()
        req.set_MaxResults(50)
        if token:
            req.set_NextToken(token)
        page = cloud.call(req, client)
        found.update(i["InvokeId"] for i in page["Invocations"]["Invocation"])
        token = page.get("NextToken") or ""
        if not token:
            return found


def run(seconds: float, threads: int = 4, duration: float = 0.2) -> dict[str, Any]:
    cloud = Cloud("throughput", extra_instances=[simulated_entry(INSTANCES, duration)])
    cloud.start()
    try:
        ids = simulated_ids(INSTANCES)
        status, warm = cloud.post({"Type": "RunShellScript", "CommandContent": "echo warm",
                                   "InstanceIds": [ids[0]]})  # warm-up, not counted
        if status == 202:
            cloud.ledger.wait_finished([warm["InvokeId"]], timeout=60)
        lock = threading.Lock()
        statuses: Counter[int] = Counter()
        accepted: list[str] = []
        done_at: list[float] = []
        latencies: list[float] = []
        errors: list[str] = []
        started = time.time()
        stop_at = started + seconds

        def client(worker: int) -> None:
            n = 0
            while time.time() < stop_at:
                body = {"Type": "RunShellScript", "CommandContent": f"echo {worker}-{n}",
                        "InstanceIds": [ids[(worker * 7919 + n) % INSTANCES]],
                        "Name": f"assistflow-bench-throughput-{worker}-{n}"}
                n += 1
                sent = time.time()
                try:
                    code, answer = cloud.post(body, timeout=60)
                except Exception as exc:
                    with lock:
                        errors.append(repr(exc))
                    continue
                now = time.time()
                with lock:
                    statuses[code] += 1
                    latencies.append(now - sent)
                    if code == 202:
                        accepted.extend(answer.get("InvokeIds") or [])
                        done_at.append(now)
                    elif len(errors) < 20:
                        errors.append(f"{code}: {str(answer)[:200]}")

        workers = [threading.Thread(target=client, args=(w,), name=f"bench-client-{w}")
                   for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.time() - started
        rate = len(accepted) / elapsed
        per_second = Counter(int(t - started) for t in done_at)
        full_seconds = [per_second.get(s, 0) for s in range(int(seconds))]
        log(f"throughput: {len(accepted)} accepted in {elapsed:.1f} s = {rate:.1f}/s; "
            "waiting for every result")
        collected = cloud.ledger.wait_finished(accepted, timeout=180)
        drained = time.time() - started
        described = _described_invoke_ids(cloud)
        keys = cloud.list_keys("results/")
        summaries = {k.split("/")[1] for k in keys if k.endswith("/summary.json")}
        wanted = set(accepted)
        result = {
            "seconds": seconds,
            "client_threads": threads,
            "simulated_duration_s": duration,
            "elapsed_s": elapsed,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "accepted": len(accepted),
            "distinct_accepted": len(wanted),
            "invoked": len(wanted & described),
            "stored": len(wanted & summaries),
            "all_collected": collected,
            "collected_after_s": drained,
            "submits_per_s": rate,
            "per_second_median": median(full_seconds),
            "per_second_min": min(full_seconds, default=0),
            "per_second_max": max(full_seconds, default=0),
            "per_second": full_seconds,
            "latency_p50_s": percentile(latencies, 50),
            "latency_p95_s": percentile(latencies, 95),
            "errors": errors[:20],
        }
        result["balanced"] = (result["accepted"] == result["distinct_accepted"]
                              == result["invoked"] == result["stored"])
        log(f"throughput: accepted {result['accepted']}, invoked {result['invoked']}, "
            f"stored {result['stored']} (balanced: {result['balanced']})")
        return result
    finally:
        cloud.stop()
