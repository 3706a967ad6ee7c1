"""Issue 13, item 4 (second half): the invoking call outlived the submit function.

Cloud Assistant is slowed down (``/_emulator/faults`` with a delay and no error) past the
webhook function's Timeout, so FC kills the submit in the middle of InvokeCommand (a saved
command) and of RunCommand (a one-off script): the caller gets 502, the call still completes
and the script runs. Before the fix no record was written and no result ever stored. Now the
intent recorded before the call is due once the killed submit's Timeout has passed; the
reconciler finds the invocation in Cloud Assistant (DescribeInvocations by the command's id,
or by its name) and hands it to the collector. The submit's Timeout is lowered here (a copy of
template.yml) so that "past its Timeout" takes seconds, not half a minute.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest

from local.cloud import LocalCloud
from tests.localcloud import Endpoints, get_object, wait_for
from tests.reliability.cloud_control import (
    add_faults,
    clear_faults,
    keys,
    reconcile_now,
    template_with_timeouts,
)

LINUX, OTHER = "i-local00000000000001", "i-local00000000000002"
SUBMIT_TIMEOUT = 4  # seconds; the calls below take SLOW
SLOW = 7.0


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    base = tmp_path_factory.mktemp("orphans-timeout")
    template = template_with_timeouts(base / "template.yml", SubmitHttpFunction=SUBMIT_TIMEOUT)
    state = base / "state"
    state.mkdir()
    cloud = LocalCloud(state, template=template, parameters={"MaintenanceEnabled": False})
    cloud.start()
    yield Endpoints(cloud.endpoints)
    cloud.stop()


def saved_command(endpoints: Endpoints, name: str) -> str:
    req = CreateCommandRequest()
    req.set_Name(name)
    req.set_Type("RunShellScript")
    req.set_CommandContent("echo saved-ran")
    req.set_ContentEncoding("PlainText")
    command_id: str = endpoints.call(req)["CommandId"]
    return command_id


def test_calls_that_outlive_the_submit_are_found_and_their_results_stored(
        endpoints: Endpoints, tally: Counter[str]) -> None:
    tag = time.time_ns()
    saved = saved_command(endpoints, f"orphan-saved-{tag}")
    script = f"orphan-script-{tag}"
    add_faults(endpoints, "ecs", {"action": "InvokeCommand", "count": 1, "delay": SLOW},
               {"action": "RunCommand", "count": 1, "delay": SLOW})
    requests: list[dict[str, Any]] = [
        {"CommandId": saved, "InstanceIds": [LINUX]},
        {"Type": "RunShellScript", "Name": script, "CommandContent": "echo script-ran",
         "InstanceIds": [OTHER]}]
    answers: list[tuple[int, dict[str, Any]]] = [(0, {})] * 2

    def post(n: int) -> None:
        answers[n] = endpoints.post(requests[n])

    posting = [threading.Thread(target=post, args=(n,)) for n in range(2)]
    started = time.monotonic()
    try:
        for thread in posting:
            thread.start()
        for thread in posting:
            thread.join()
    finally:
        clear_faults(endpoints, "ecs")
    assert [status for status, _ in answers] == [502, 502], answers  # FC killed both

    # Both calls complete after their submits died: one invocation each, unrecorded.
    ran = wait_for(lambda: _both(endpoints, saved, script), timeout=30, interval=0.5)
    for invoke_id in ran:
        assert get_object(endpoints.bucket(), f"invocations/{invoke_id}.json") is None

    # The reconciler, as its timer would, once the submits' intents are due.
    adopted: set[str] = set()
    reports: list[dict[str, Any]] = []  # each run's report, for the message if one is missed
    while time.monotonic() - started < 60 and adopted != set(ran):
        reports.append(reconcile_now(endpoints))
        adopted |= set(reports[-1]["Adopted"])
        time.sleep(1)
    assert adopted == set(ran), (
        f"adopted {sorted(adopted)} of {ran} in {len(reports)} reconciler run(s); open markers "
        f"{keys(endpoints, 'invocations/open/')}; the last runs' reports: {reports[-3:]}")
    bucket = endpoints.bucket()
    for invoke_id, (instance, output) in zip(ran, ((LINUX, b"saved-ran\n"),
                                                    (OTHER, b"script-ran\n")), strict=True):
        wait_for(lambda i=invoke_id: get_object(bucket, f"results/{i}/summary.json"),
                 timeout=30, interval=0.3)
        assert get_object(bucket, f"results/{invoke_id}/{instance}/output.txt") == output
    assert time.monotonic() - started < 90  # within minutes: here, well under two
    assert len(endpoints.invocations(CommandId=saved)) == 1  # found, never run again
    assert len(endpoints.invocations(CommandName=script)) == 1
    tally["orphaned invocations collected (submit timed out)"] += 2


def _both(endpoints: Endpoints, saved: str, script: str) -> list[str] | None:
    found = [endpoints.invocations(CommandId=saved), endpoints.invocations(CommandName=script)]
    if all(len(f) == 1 for f in found):
        return [f[0]["InvokeId"] for f in found]
    return None
