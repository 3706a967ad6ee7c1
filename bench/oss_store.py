"""Benchmark 6: how many small objects a second the local OSS stores for the collectors.

A fan-out's collection is mostly PutObject: two objects per instance (``output.txt``, then
``result.json``), 20,400 for 10,000 instances. The local host runs 4 collector instances,
each storing a look's objects — 100 instances, 200 objects — ``shared.parallel.WRITES_AT_ONCE``
(32) at once from one thread (``Results.writes``); this benchmark puts the same shape against
the local OSS alone: ``PROCESSES`` client processes, each writing looks of ``LOOK`` instances
through the collectors' own client (a function's STS key, so signing and RAM are in the path),
result-sized objects. The baseline, measured in the same run, is the shape before
(``shape="threads"``): ``Results.put`` from ``STORE_POOL_SIZE`` (16) threads per process.

The emulator is served as the local cloud serves it: by ``processes_for("oss", …)``
processes (two on a machine of two cores or more), on one socket. It reports objects per
second, the emulator's CPU per object (``process_cpu_s``: all its processes), the clients' CPU
per object (their whole processes: interpreter start and imports included), and
``fanout_floor_s``: how long a 10,000-instance fan-out's 20,400 objects take to store at that
rate on this machine — with nothing else running, so the fan-out itself (which also describes,
dispatches and invokes on the same cores) needs longer. The rate is the local cloud's, not
OSS's: the emulator and its clients share the machine's cores.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import log
from shared.parallel import STORE_POOL_SIZE, WRITES_AT_ONCE

if TYPE_CHECKING:
    from local.profile import Profile

PROCESSES = 4  # the local host's collector instances (LocalCloud max_instances)
THREADS = STORE_POOL_SIZE  # the baseline's stores side by side, per process
LOOK = 100  # instances per collector look (a batch): 200 objects
SHAPES = ("writes", "threads")  # the collectors' shape, and the one before (the baseline)
FANOUT_OBJECTS = 20_400  # what a 10,000-instance fan-out stores (fanout's "OSS objects")
ACCOUNT_ID = "1234567890123456"
BUCKET = "bench-results"
BODY = json.dumps({"InstanceId": "i-sim00001", "InvokeId": "t-bench", "Status": "Success",
                   "ExitCode": 0, "Output": "ok\n", "OutputBytes": 3, "Dropped": 0},
                  indent=2, sort_keys=True).encode()


def _client(env: dict[str, str], first: int, step: int, count: int,
            shape: str = "writes") -> None:
    """One client process storing objects ``first``, ``first+step``…: looks of ``LOOK``
    instances through ``Results.writes`` (``shape="writes"``), or ``THREADS`` threads of
    ``Results.put`` (``"threads"``)."""
    os.environ.update(env)
    from shared.clients.results import Results
    from shared.config import Settings
    from shared.results import Put

    results = Results(Settings.from_env(os.environ))
    results.put("warm", BODY, "application/json")  # connection and signing key ready
    if shape == "writes":
        keys = [f"results/t-bench/i-{n:08d}/result.json" for n in range(first, count, step)]
        for at in range(0, len(keys), 2 * LOOK):
            look = keys[at:at + 2 * LOOK]
            writes = results.writes()
            try:
                writes.extend([Put(key, BODY, "application/json") for key in look[n:n + 2]]
                              for n in range(0, len(look), 2))
            finally:
                failed = [o for o in writes.settle() if o is not None]
            if failed:
                raise failed[0]
        return

    def work(start: int) -> None:
        for n in range(start, count, step * THREADS):
            results.put(f"results/t-bench/i-{n:08d}/result.json", BODY, "application/json")

    threads = [threading.Thread(target=work, args=(first + k * step,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run(count: int = 8000, profile: Profile | None = None, shape: str = "writes"
        ) -> dict[str, Any]:
    """``count`` objects under ``profile`` (default ``fast``: no latency; under ``realistic``
    each call waits ~10 ms in the emulator, as the fan-out's do), in the collectors' ``shape``
    (``SHAPES``)."""
    import oss2

    from local.emulators.process import EmulatorProcess, processes_for
    from local.profile import Profile
    from local.ram import Identity, Policy
    from local.state import issue_sts, load_or_create_keys

    state = Path(tempfile.mkdtemp(prefix="assistflow-bench-oss-"))
    keys = load_or_create_keys(state)
    keyring = keys.keyring()
    profile = profile or Profile.fast()
    served_by = processes_for("oss", profile)
    oss = EmulatorProcess("oss", state, region="cn-hangzhou", account_id=ACCOUNT_ID,
                          profile=profile, processes=served_by).spawn()
    try:
        oss.attach(keyring)
        oss.wait_ready()
        oss2.Bucket(oss2.Auth(keys.access_key_id, keys.access_key_secret), oss.url,
                    BUCKET).create_bucket()
        policy = Policy.parse({"Version": "1", "Statement": [{
            "Effect": "Allow", "Action": ["oss:PutObject"],
            "Resource": f"acs:oss:*:*:{BUCKET}/*"}]}, "bench/store")
        creds = issue_sts(keyring, Identity(f"acs:ram::{ACCOUNT_ID}:role/bench-collect",
                                            (policy,)))
        env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": creds.access_key_id,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": creds.access_key_secret,
               "ALIBABA_CLOUD_SECURITY_TOKEN": creds.security_token,
               "ASSISTFLOW_RESULTS_BUCKET": BUCKET, "ASSISTFLOW_OSS_ENDPOINT": oss.url,
               "FC_REGION": "cn-hangzhou",
               "ASSISTFLOW_FOLLOWUP_QUEUE": "bench-followups"}  # required, never used here

        def server_cpu() -> float:
            with urllib.request.urlopen(f"{oss.url}/_emulator/calls", timeout=10) as answer:
                return float(json.loads(answer.read())["process_cpu_s"])

        context = multiprocessing.get_context("spawn")  # a fresh interpreter, as FC's
        before_server = server_cpu()
        before_clients = resource.getrusage(resource.RUSAGE_CHILDREN)
        begun = time.perf_counter()
        clients = [context.Process(target=_client, args=(env, k, PROCESSES, count, shape))
                   for k in range(PROCESSES)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        wall = time.perf_counter() - begun
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        failed = [c.exitcode for c in clients if c.exitcode != 0]
        if failed:
            raise RuntimeError(f"a client process failed (exit codes {failed})")
        server = server_cpu() - before_server
        client_cpu = (after.ru_utime + after.ru_stime - before_clients.ru_utime
                      - before_clients.ru_stime)
    finally:
        oss.stop()
    # the clients' CPU includes each interpreter's start and imports, once per process
    out = {"objects": count, "processes": PROCESSES, "shape": shape,
           "at_once": WRITES_AT_ONCE if shape == "writes" else THREADS,
           "oss_processes": served_by, "profile": profile.name,
           "seconds": round(wall, 2), "puts_per_s": round(count / wall, 1),
           "server_ms_per_put": round(server / count * 1000, 3),
           "server_cores": round(server / wall, 2),
           "client_ms_per_put": round(client_cpu / count * 1000, 3),
           "fanout_floor_s": round(FANOUT_OBJECTS * wall / count, 1)}
    log(f"oss store ({profile.name}, {shape}): {count} objects in {wall:.1f} s = "
        f"{out['puts_per_s']:.0f}/s; OSS "
        f"({served_by} process(es)) {out['server_ms_per_put']:.2f} ms CPU each "
        f"({out['server_cores']:.2f} cores), clients "
        f"{out['client_ms_per_put']:.2f} ms each; a 10,000-instance fan-out's "
        f"{FANOUT_OBJECTS} objects: >= {out['fanout_floor_s']:.1f} s")
    return out
