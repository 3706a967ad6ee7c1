"""Issue 14: RateControl waves, MaxErrors, DryRun and the request summary, end to end.

Simulated instances beside the default fleet: six tagged ``rollout=canary`` and ``team=ops``
that succeed after a second, three that carry only one of those two tags, six that fail
(exit 1). Through the signed webhook, the dispatch queue, the collector that starts each wave,
and the request summary in OSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from local.cloud import LocalCloud
from local.emulators.ecs.inventory import Instance, SimulatedRun, default_fleet
from tests.localcloud import Endpoints, request_summary

GOOD = [f"i-rcgood{n:010d}" for n in range(1, 7)]
BAD = [f"i-rcbad0{n:010d}" for n in range(1, 7)]
CANARY = {"rollout": "canary", "team": "ops"}  # the six GOOD ones carry both tags
PARTLY = {f"i-rcpart{n:010d}": tags for n, tags in enumerate(
    ({"rollout": "canary"}, {"team": "ops"}, {"rollout": "canary", "team": "dev"}), 1)}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("ratecontrol")
    fleet = default_fleet() + [
        Instance(i, f"good-{n}", Mode="simulated", Tags=dict(CANARY),
                 Simulated=SimulatedRun(Output=f"ok {i}\n", ExitCode=0, Duration=1.0))
        for n, i in enumerate(GOOD)] + [
        Instance(i, f"part-{n}", Mode="simulated", Tags=tags,
                 Simulated=SimulatedRun(Output=f"ok {i}\n", ExitCode=0, Duration=0.2))
        for n, (i, tags) in enumerate(PARTLY.items())] + [
        Instance(i, f"bad-{n}", Mode="simulated",
                 Simulated=SimulatedRun(Output="broken\n", ExitCode=1, Duration=0.3))
        for n, i in enumerate(BAD)]
    (state / "instances.json").write_text(json.dumps({"instances": [asdict(i) for i in fleet]}))
    local = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def endpoints(cloud: LocalCloud) -> Endpoints:
    return Endpoints(cloud.endpoints)


def results(endpoints: Endpoints, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    bucket = endpoints.bucket()
    return {i: json.loads(bucket.get_object(entry["Result"]).read())
            for i, entry in summary["Instances"].items()}


def most_running_at_once(docs: dict[str, dict[str, Any]]) -> int:
    """The most instances running at one moment, from their result.json ``StartTime`` /
    ``FinishedTime`` (Cloud Assistant's whole seconds: a run ending as another starts is not
    counted with it)."""
    spans = sorted((d["StartTime"], d["FinishedTime"]) for d in docs.values())
    assert all(start and end for start, end in spans), spans
    # at each start, how many ran (started, not yet finished)?
    return max(sum(s <= start < e for s, e in spans) for start, _ in spans)


def test_six_instances_selected_by_two_tags_two_at_a_time_all_succeed_never_more_than_two(
        endpoints: Endpoints) -> None:
    """Issue 14's "Must show": ``Tags`` with two pairs select exactly the six instances that
    carry both (not the three carrying one of them), in three waves of two."""
    status, body = endpoints.post({
        "Type": "RunShellScript", "CommandContent": "echo ok",
        "Tags": [{"Key": k, "Value": v} for k, v in CANARY.items()],
        "RateControl": {"MaxConcurrency": 2}, "ClientToken": f"rc-two-{time.time_ns()}"})
    assert status == 202, body
    assert "InvokeId" not in body and body["Plan"]["Waves"] == 3, body
    summary = request_summary(endpoints, body)
    assert sorted(summary["Instances"]) == GOOD, summary
    assert summary["Counts"] == {"Success": 6}, summary
    assert summary["Status"] == "Success" and len(summary["InvokeIds"]) == 3
    ran = {r["InstanceId"] for invoke_id in summary["InvokeIds"]  # as Cloud Assistant saw it
           for r in endpoints.invocations(InvokeId=invoke_id)[0]["InvokeInstances"][
               "InvokeInstance"]}
    assert ran == set(GOOD)
    docs = results(endpoints, summary)
    assert {d["Status"] for d in docs.values()} == {"Success"}, docs
    assert most_running_at_once(docs) == 2, docs


def test_six_failing_one_at_a_time_max_errors_two_stops_after_the_third_failure(
        endpoints: Endpoints) -> None:
    status, body = endpoints.post({
        "Type": "RunShellScript", "CommandContent": "exit 1", "InstanceIds": BAD,
        "RateControl": {"MaxConcurrency": 1, "MaxErrors": 2},
        "ClientToken": f"rc-errors-{time.time_ns()}"})
    assert status == 202, body
    summary = request_summary(endpoints, body)
    assert summary["Counts"] == {"Failed": 3, "NotStarted": 3}, summary
    assert summary["Status"] == "Failed" and len(summary["InvokeIds"]) == 3
    docs = results(endpoints, summary)
    never = sorted(i for i, d in docs.items() if d["Status"] == "NotStarted")
    assert never == BAD[3:]
    assert {docs[i]["ErrorCode"] for i in never} == {"MaxErrorsExceeded"}


def test_the_end_of_a_request_is_written_by_the_closer_that_claims_it(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    """Two last batches that finish together each find the request over; only the closer
    that claims ``finish`` writes its end. Another closer's call (a redelivered last
    follow-up, the other of the two) answers ``claimed`` and writes nothing; the reconciler,
    which calls without a claim (a closer died holding it), writes the very same bytes."""
    from shared.clients import Clients
    from shared.config import Settings
    from shared.ledger import finish_claim_key
    from shared.rollout import advance

    status, body = endpoints.post({
        "Type": "RunShellScript", "CommandContent": "echo ok", "InstanceIds": GOOD[:2],
        "RateControl": {"MaxConcurrency": 1}, "ClientToken": f"rc-end-{time.time_ns()}"})
    assert status == 202 and body["Plan"]["Waves"] == 2, body
    request_summary(endpoints, body)
    request_id = body["RequestId"]
    assert cloud.host is not None
    clients = Clients(Settings.from_env(cloud.host.runtimes["assistflow-collect"].environment))
    ecs = clients.ecs_in(cloud.endpoints["region"])
    assert clients.results.exists(finish_claim_key(request_id))
    key = str(body["Summary"]).split("/", 3)[3]
    bucket = endpoints.bucket()
    written = bucket.get_object(key)
    before, stamp = written.read(), written.headers["Last-Modified"]

    assert advance(clients, ecs, request_id, claim=True) == "claimed"
    time.sleep(1.1)  # Last-Modified has whole seconds: a rewrite would show
    assert bucket.head_object(key).headers["Last-Modified"] == stamp
    assert advance(clients, ecs, request_id) == "finished"  # the reconciler's way
    after = bucket.get_object(key)
    assert after.headers["Last-Modified"] != stamp and after.read() == before


def test_dry_run_lists_every_target_with_its_verdict_and_creates_nothing(
        endpoints: Endpoints) -> None:
    targets = [*GOOD[:2], "i-local0000000000000s", "i-local0000000000000n"]
    before = len(endpoints.invocations())
    status, body = endpoints.post({
        "Type": "RunShellScript", "CommandContent": "echo dry", "InstanceIds": targets,
        "DryRun": True, "OnIneligible": "Skip", "RateControl": {"MaxConcurrency": "50%"}})
    assert status == 200, body
    verdicts = {t["InstanceId"]: t["Verdict"] for t in body["Targets"]}
    assert verdicts == {GOOD[0]: "Eligible", GOOD[1]: "Eligible",
                        "i-local0000000000000s": "InstanceNotRunning",
                        "i-local0000000000000n": "AgentNotOnline"}, body
    assert body["Plan"]["Instances"] == 2 and body["Plan"]["Waves"] == [1, 1], body
    assert len(endpoints.invocations()) == before


def test_a_dry_run_is_not_a_delivery_and_from_the_queue_it_is_only_logged(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    body = json.dumps({"Type": "RunShellScript", "CommandContent": "echo dry",
                       "InstanceIds": GOOD[:1], "DryRun": True}).encode()
    stamp = int(time.time())
    first = endpoints.post(body, timestamp=stamp)
    again = endpoints.post(body, timestamp=stamp)  # the same signed delivery: no replay claim
    assert first[0] == again[0] == 200 and first[1] == again[1], (first, again)
    before = len(endpoints.invocations())
    event = json.dumps({"id": "dry", "specversion": "1.0", "type": "mns:Queue:SendMessage",
                        "source": "MNS-test", "data": {"requestId": "r", "messageId": "dry-1",
                                                       "messageBody": body.decode()}}).encode()
    outcome = cloud.host.runtimes["assistflow-submit-queue"].invoke(event)  # type: ignore[union-attr]
    assert outcome.ok, outcome.error
    assert outcome.result["accepted"][0]["DryRun"] is True  # acknowledged, nothing created
    assert len(endpoints.invocations()) == before


def test_the_cli_rolls_out_in_waves_and_reads_the_request_back(
        cloud: LocalCloud, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"Type": "RunShellScript", "CommandContent": "exit 1",
                                   "InstanceIds": BAD[:4]}))
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(cloud.state_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "local", *args], env=env, text=True,
                              capture_output=True, timeout=120)

    dry = cli("submit", str(request), "--dry-run", "--max-concurrency", "50%", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["Plan"]["Waves"] == [2, 2]
    done = cli("submit", str(request), "--max-concurrency", "1", "--max-errors", "0", "--wait",
               "--json")
    assert done.returncode == 1, done.stderr  # failed, and never started
    report = json.loads(done.stdout)
    assert report["Summary"]["Counts"] == {"Failed": 1, "NotStarted": 3}
    request_id = report["Summary"]["RequestId"]
    shown = cli("results", request_id)
    assert shown.returncode == 1 and "3 instance(s) never started (MaxErrorsExceeded)" in \
        shown.stdout, shown.stdout + shown.stderr
    one = cli("results", request_id, "--instance", BAD[3], "--json")
    assert json.loads(one.stdout)["Result"]["Status"] == "NotStarted"
