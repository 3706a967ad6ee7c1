"""Collectors SIGKILLed at random moments and the whole local cloud restarted mid-flight.

Many invocations run while a killer thread SIGKILLs collector instances at random points (in
the middle of DescribeInvocationResults, between two OSS writes, anywhere), and half-way the
whole local cloud — emulators, host, functions — is stopped and started again on the same
state. At the end every instance of every request has exactly one complete result set, and no
command ran twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import oss2
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from local.cloud import LocalCloud
from tests.conftest import write_fleet
from tests.localcloud import Endpoints, get_object

FLEET = [f"i-crs{n:012d}" for n in range(1, 121)]
PARAMS = {"CompletionEvents": False, "MaintenanceEnabled": False}
REQUESTS = 12


class Chaos:
    """Kills random collector instances and moves the MNS clock, until stopped."""

    def __init__(self, cloud: LocalCloud, tally: Counter[str], offset: float = 0.0) -> None:
        self.cloud = cloud
        self.tally = tally
        self.offset = offset  # total MNS clock advance, re-applied after a restart
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = random.Random(20261126)

    def start(self) -> Chaos:
        self.cloud.servers["mns"].app.clock.advance(self.offset)
        self._thread.start()
        return self

    def _run(self) -> None:
        runtime = self.cloud.host.runtimes["assistflow-collect"]  # type: ignore[union-attr]
        clock = self.cloud.servers["mns"].app.clock
        while not self._stop.wait(self._rng.uniform(0.1, 0.5)):
            pids = runtime.pids()
            if pids and self._rng.random() < 0.7:
                try:
                    os.kill(self._rng.choice(pids), signal.SIGKILL)
                    self.tally["collector instances killed"] += 1
                except ProcessLookupError:
                    pass
            # A killed delivery's message is invisible for the queue's 60 s: let time pass.
            clock.advance(15)
            self.offset += 15

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.offset


def test_kills_and_a_restart_lose_nothing_and_run_nothing_twice(
        tmp_path: Path, tally: Counter[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write_fleet(state, FLEET, duration=1.5)
    requests = [{"Type": "RunShellScript", "CommandContent": f"echo crash {n}",
                 "InstanceIds": FLEET[n * 10:(n + 1) * 10], "ClientToken": f"crash-{n}"}
                for n in range(REQUESTS)]

    cloud = LocalCloud(state, parameters=PARAMS)
    endpoints = Endpoints(cloud.start())
    chaos = Chaos(cloud, tally).start()
    accepted = []
    try:
        for request in requests:
            status, body = endpoints.post(request)
            assert status == 202, body
            accepted.append(body)
        time.sleep(1.0)  # let collection get under way, then pull the plug
    finally:
        offset = chaos.stop()
        cloud.stop()
    tally["local cloud restarts"] += 1

    again = LocalCloud(state, parameters=PARAMS)
    endpoints = Endpoints(again.start())
    chaos = Chaos(again, tally, offset).start()
    try:
        deadline = time.time() + 120
        pending = {(b["InvokeId"]) for b in accepted}
        while pending and time.time() < deadline:
            pending = {i for i in pending
                       if get_object(endpoints.bucket(), f"results/{i}/summary.json") is None}
            time.sleep(0.3)
        assert not pending, f"never summarised: {sorted(pending)}"
    finally:
        chaos.stop()
    try:
        bucket = endpoints.bucket()
        for request, body in zip(requests, accepted, strict=True):
            req = DescribeInvocationsRequest()
            req.set_CommandId(body["CommandId"])
            assert [i["InvokeId"] for i in endpoints.call(req)["Invocations"]["Invocation"]] \
                == [body["InvokeId"]], "the command ran twice"
            prefix = f"results/{body['InvokeId']}/"
            keys = sorted(o.key for o in oss2.ObjectIteratorV2(bucket, prefix=prefix))
            assert keys == sorted([prefix + "summary.json", prefix + "report.html"] + [
                f"{prefix}{i}/{name}" for i in request["InstanceIds"]
                for name in ("output.txt", "result.json")])
            summary = json.loads(get_object(bucket, prefix + "summary.json") or b"")
            assert sum(summary["Counts"].values()) == 10
            for instance, entry in summary["Instances"].items():
                result = json.loads(get_object(bucket, entry["Result"]) or b"")
                assert result["Status"] == entry["Status"]
                if entry["Status"] == "Success":
                    assert get_object(bucket, entry["Output"]) == \
                        f"simulated on {instance}\n".encode()
                else:  # a run the restart interrupted is reported, not lost
                    assert result["ErrorCode"] == "InstanceRestarted", result
        tally["invocations checked after kills and restart"] += len(accepted)
    finally:
        again.stop()
