"""Issue 13, item 4 (first half): the follow-up could not be sent after the command was invoked.

Before the fix the caller got 503 although the command ran, and a careful retry (without a
ClientToken: re-signed, so another request) ran it again; and nothing ever stored its result
when only follow-ups collect. Now the answer is 202 — the invocation exists — and the request
record's intent marker, due at once, brings the reconciler (fired here through FC's invoke
API, as its timer would), which hands the invocation to the collector.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, get_object, wait_for
from tests.reliability.cloud_control import (
    add_faults,
    clear_faults,
    reconcile_now,
)

LINUX = "i-local00000000000001"
# Follow-ups alone collect, so nothing but a follow-up (or the reconciler) stores a result.
PARAMS = {"MaintenanceEnabled": False, "CompletionEvents": False}


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    cloud = LocalCloud(tmp_path_factory.mktemp("orphans-followup"), parameters=PARAMS)
    cloud.start()
    yield Endpoints(cloud.endpoints)
    cloud.stop()


def test_a_followup_that_could_not_be_sent_still_gets_its_result_stored_and_runs_once(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    name = f"orphan-send-{time.time_ns()}"
    # every attempt of the submit's one SendMessage fails (the MNS client tries it 3 times)
    add_faults(endpoints, "mns", {"action": "SendMessage", "count": 3, "code": "InternalError",
                                  "status": 500})
    try:
        status, body = endpoints.post({
            "Type": "RunShellScript", "Name": name, "InstanceIds": [LINUX],
            # counts its own runs in its working directory
            "CommandContent": f"echo run >> {name}.runs; wc -l < {name}.runs"})
    finally:
        clear_faults(endpoints, "mns")
    assert status == 202, body  # it runs: not the caller's problem, and no reason to retry
    invoke_id = body["InvokeId"]
    bucket = endpoints.bucket()
    time.sleep(2)  # no follow-up went out: nothing stores it on its own
    assert get_object(bucket, f"results/{invoke_id}/summary.json") is None

    report = reconcile_now(endpoints)
    assert invoke_id in report["FollowedUp"], report
    wait_for(lambda: get_object(bucket, f"results/{invoke_id}/summary.json"), timeout=30,
             interval=0.3)
    output = get_object(bucket, f"results/{invoke_id}/{LINUX}/output.txt")
    assert output is not None and output.strip() == b"1"  # the script ran once
    assert [i["InvokeId"] for i in endpoints.invocations(CommandName=name)] == [invoke_id]
    # its open markers are gone: a later run has nothing left to do for it
    assert body["RequestId"] not in reconcile_now(endpoints)["Requests"]
    tally["orphaned invocations collected (follow-up lost)"] += 1
