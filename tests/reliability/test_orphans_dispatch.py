"""Issue 14: nothing of a fanned-out request is lost when its dispatch jobs are.

150 simulated instances are two batches, each a job in the dispatch queue. Every
BatchSendMessage fails (MNS 500, the client's retries included): the webhook still answers 202
(the request is recorded, its command made), and the reconciler — once the submit has surely
ended — queues the jobs itself; the batches run once each and the request summary arrives.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from local.cloud import LocalCloud
from shared.clients import Clients
from shared.config import Settings
from shared.reconcile import reconcile
from tests.conftest import write_fleet
from tests.localcloud import Endpoints, request_summary, wait_for
from tests.reliability.cloud_control import add_faults, clear_faults, keys

FLEET = [f"i-dsp{n:012d}" for n in range(1, 151)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("dispatch-lost")
    write_fleet(state, FLEET, duration=0.2)
    local = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    local.start()
    yield local
    local.stop()


def test_lost_dispatch_jobs_are_queued_again_by_the_reconciler(
        cloud: LocalCloud, tally: Counter[str]) -> None:
    endpoints = Endpoints(cloud.endpoints)
    add_faults(endpoints, "mns", {"action": "BatchSendMessage", "count": 100,
                                  "code": "InternalError", "status": 500})
    try:
        status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo lost",
                                       "InstanceIds": FLEET,
                                       "ClientToken": f"lost-{time.time_ns()}"})
    finally:
        clear_faults(endpoints, "mns")
    assert status == 202 and body["Plan"]["Batches"] == 2, body
    request_id = body["RequestId"]
    time.sleep(2)
    assert endpoints.invocations(CommandId=body["CommandId"]) == []  # nothing was queued
    assert keys(endpoints, f"invocations/open/{request_id}/")  # but it is not forgotten
    assert cloud.host is not None
    clients = Clients(Settings.from_env(cloud.host.runtimes["assistflow-reconcile"].environment))
    report = reconcile(clients, now=lambda: time.time() + 3600)  # past every lease
    assert request_id in report.requests, report.to_dict()
    summary = request_summary(endpoints, body, timeout=60)
    assert summary["Counts"] == {"Success": 150} and len(summary["InvokeIds"]) == 2
    ran = endpoints.invocations(CommandId=body["CommandId"])
    assert sorted(i["InvokeId"] for i in ran) == sorted(summary["InvokeIds"])  # once each
    tally["lost dispatch jobs queued again"] += 2


def test_an_intent_marker_left_behind_does_not_hold_the_request_open(
        cloud: LocalCloud, tally: Counter[str]) -> None:
    """A submit attempt whose record claim failed (answered 503) once left its intent marker
    behind; the retry wrote its own, due at another second, and removed only that one. The
    batches' closers waited for the stray one, and the reconciler later removed it without
    going on: the request summary never came. Closers wait only for batches now."""
    from shared.ledger import SUBMIT, marker_key

    endpoints = Endpoints(cloud.endpoints)
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo stray",
                                   "InstanceIds": FLEET, "ClientToken": f"stray-{time.time_ns()}"})
    assert status == 202 and body["Plan"]["Batches"] == 2, body
    request_id = body["RequestId"]
    stray = marker_key(request_id, SUBMIT, time.time() + 40)  # what the failed attempt left
    endpoints.bucket().put_object(stray, b"")
    summary = request_summary(endpoints, body, timeout=30)
    assert summary["Counts"] == {"Success": 150} and len(summary["InvokeIds"]) == 2
    # every marker goes (the stray one too), right after the summary
    wait_for(lambda: not keys(endpoints, f"invocations/open/{request_id}/") or None, timeout=10)
    tally["stray intent markers outlived"] += 1
