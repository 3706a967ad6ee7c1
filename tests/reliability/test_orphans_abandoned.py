"""Issue 13, items 3 and 4: nothing is left behind when the caller never comes back.

A request of two batches whose every InvokeCommand fails is answered 503 (nothing runs); the
command created for it stays, for the retry that would resume it. No retry comes. A day later
(the reconciler's clock moved, the reconciler itself run in this process with the reconciler
function's own settings and STS key, so its RAM role applies) the reconciler gives the batches
up and deletes the command; a late delivery of the request is refused, not run on a deleted
command. And a one-off script whose call failed in a way that may have reached Cloud Assistant
(an internal error) is looked up, not found, and forgotten: its late delivery simply runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from local.cloud import LocalCloud
from shared.clients import Clients
from shared.config import Settings
from shared.reconcile import RESUME_WINDOW, reconcile
from tests.conftest import write_fleet
from tests.localcloud import Endpoints, get_object, request_summary, wait_for
from tests.reliability.cloud_control import add_faults, clear_faults, command_exists, keys

FLEET = [f"i-abn{n:012d}" for n in range(1, 151)]
LINUX = "i-local00000000000001"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("abandoned")
    write_fleet(state, FLEET, duration=0.2)
    local = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    local.start()
    yield local
    local.stop()


def reconciler(cloud: LocalCloud) -> Clients:
    assert cloud.host is not None
    return Clients(Settings.from_env(cloud.host.runtimes["assistflow-reconcile"].environment))


def a_day_later() -> float:
    return time.time() + RESUME_WINDOW + 60


def test_batches_never_dispatched_are_given_up_and_their_command_deleted(
        cloud: LocalCloud, tally: Counter[str]) -> None:
    """Every InvokeCommand of the dispatchers fails (503): the jobs stay with the dispatch
    trigger's retries, the reconciler queues them again a bounded number of times, then gives
    the batches up — their instances NotStarted in the request summary, the command deleted."""
    endpoints = Endpoints(cloud.endpoints)
    request = {"Type": "RunShellScript", "CommandContent": "echo never",
               "InstanceIds": FLEET, "ClientToken": f"abandoned-{time.time_ns()}"}
    add_faults(endpoints, "ecs", {"action": "InvokeCommand", "count": 100000,
                                  "code": "ServiceUnavailable", "status": 503})
    try:
        status, body = endpoints.post(request)
        assert status == 202 and body["Plan"]["Batches"] == 2, body
        request_id = body["RequestId"]
        command_id = body["CommandId"]
        assert command_exists(endpoints, command_id)
        # Not yet due: nothing happens to batches their dispatchers still own.
        assert request_id not in reconcile(reconciler(cloud)).requests
        given_up: list[str] = []
        for run in range(1, 8):  # each run a day later: the re-queued jobs fail too
            report = reconcile(reconciler(cloud),
                               now=lambda r=run: time.time() + r * RESUME_WINDOW)
            given_up += report.given_up
            if len(given_up) == 2:
                break
        assert sorted(given_up) == [f"{request_id}/0", f"{request_id}/1"], given_up
    finally:
        clear_faults(endpoints, "ecs")
    summary = request_summary(endpoints, body, timeout=10)
    assert summary["Counts"] == {"NotStarted": 150} and summary["InvokeIds"] == []
    reasons = {e["Reason"] for e in summary["Instances"].values()}
    assert reasons == {"NotDispatched"}
    assert not command_exists(endpoints, command_id)
    # Dispatch jobs the reconciler queued again may still be running: each ends a batch it
    # finds Failed once more (batch_done, idempotent), holding an advance marker meanwhile.
    # Once they are done nothing may be left.
    wait_for(lambda: True if keys(endpoints, f"invocations/open/{request_id}/") == [] else None,
             timeout=15)
    assert endpoints.invocations(CommandId=command_id) == []
    status, late = endpoints.post(request)  # the same request again: the record answers
    assert status == 202 and late["InvokeIds"] == [], late
    tally["requests given up, their command deleted"] += 1


def test_an_unknown_outcome_is_looked_up_and_forgotten_when_nothing_ran(
        cloud: LocalCloud) -> None:
    endpoints = Endpoints(cloud.endpoints)
    request = {"Type": "RunShellScript", "CommandContent": "echo maybe",
               "InstanceIds": [LINUX], "ClientToken": f"unknown-{time.time_ns()}"}
    add_faults(endpoints, "ecs", {"action": "RunCommand", "count": 3, "code": "InternalError",
                                  "status": 500})
    try:
        status, body = endpoints.post(request)
    finally:
        clear_faults(endpoints, "ecs")
    assert status == 503, body
    record_key = f"invocations/requests/{body['RequestId']}.json"
    assert get_object(endpoints.bucket(), record_key) is not None  # it may have run: kept

    report = reconcile(reconciler(cloud), now=a_day_later)
    assert body["RequestId"] in report.requests and not report.adopted
    assert get_object(endpoints.bucket(), record_key) is None
    assert keys(endpoints, f"invocations/open/{body['RequestId']}/") == []
    status, late = endpoints.post(request)  # nothing of it ran: now it runs, once
    assert status == 202 and len(late["InvokeIds"]) == 1, late
