"""Submitting from all three triggers: validation, idempotency, batching, pre-flight.

Every request goes through a real trigger path of the local function host (webhook over HTTP,
a message in the request queue, the timer function's event) and every check of "nothing was
created" asks Cloud Assistant itself through DescribeCommands / DescribeInvocations.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest
from mns.queue import Message

from local.cloud import LocalCloud
from tests.conftest import SIMULATED
from tests.localcloud import Endpoints, get_object, invoke_ids, request_summary, wait_for

LINUX = "i-local00000000000001"
STOPPED, NO_AGENT, WINDOWS = "i-local0000000000000s", "i-local0000000000000n", "i-local0000000000000w"
ECHO: dict[str, Any] = {"Type": "RunShellScript", "CommandContent": "echo 123",
                        "InstanceIds": [LINUX]}


def created(endpoints: Endpoints) -> tuple[set[str], set[str]]:
    """Every command id and invoke id Cloud Assistant knows (all pages)."""
    commands: set[str] = set()
    invocations: set[str] = set()
    for request, into, path in ((DescribeCommandsRequest, commands, ("Commands", "Command",
                                                                     "CommandId")),
                                (DescribeInvocationsRequest, invocations,
                                 ("Invocations", "Invocation", "InvokeId"))):
        page = 1
        while True:
            req = request()
            req.set_PageSize(50)
            req.set_PageNumber(page)
            body = endpoints.call(req)
            items = body[path[0]][path[1]]
            into.update(item[path[2]] for item in items)
            if page * 50 >= body["TotalCount"]:
                break
            page += 1
    return commands, invocations


def invocations_of(endpoints: Endpoints, command_id: str) -> list[str]:
    req = DescribeInvocationsRequest()
    req.set_CommandId(command_id)
    req.set_PageSize(50)
    return [i["InvokeId"] for i in endpoints.call(req)["Invocations"]["Invocation"]]


def output_of(endpoints: Endpoints, invoke_id: str, instance: str, timeout: float = 10) -> bytes:
    key = f"results/{invoke_id}/{instance}/output.txt"
    return wait_for(lambda: get_object(endpoints.bucket(), key), timeout=timeout)


# --- 30+ invalid requests: every violation, with its path; nothing created ----------------

INVALID: list[tuple[str, Any, list[str]]] = [
    ("empty object", {}, ["$", "$.InstanceIds"]),
    ("array body", [ECHO], ["$"]),
    ("string body", "echo 123", ["$"]),
    ("unknown Type", {**ECHO, "Type": "RunPython"}, ["$.Type"]),
    ("Type wrong case", {**ECHO, "Type": "runshellscript"}, ["$.Type"]),
    ("content without Type", {"CommandContent": "x", "InstanceIds": [LINUX]}, ["$.Type"]),
    ("content and CommandId", {**ECHO, "CommandId": "c-abcdef123456"}, ["$"]),
    ("neither content nor CommandId", {"Type": "RunShellScript", "InstanceIds": [LINUX]}, ["$"]),
    ("empty content", {**ECHO, "CommandContent": ""}, ["$.CommandContent"]),
    ("content not a string", {**ECHO, "CommandContent": ["echo"]}, ["$.CommandContent"]),
    ("bad Base64", {**ECHO, "ContentEncoding": "Base64", "CommandContent": "%%%"},
     ["$.CommandContent"]),
    ("unknown encoding", {**ECHO, "ContentEncoding": "gzip"}, ["$.ContentEncoding"]),
    ("encoding without content", {"CommandId": "c-abcdef123456", "InstanceIds": [LINUX],
                                  "ContentEncoding": "Base64"}, ["$.CommandContent"]),
    ("content over 24 KB", {**ECHO, "CommandContent": "x" * 19000}, ["$.CommandContent"]),
    ("bad CommandId", {"CommandId": "cmd-1", "InstanceIds": [LINUX]}, ["$.CommandId"]),
    ("no InstanceIds", {"Type": "RunShellScript", "CommandContent": "x"}, ["$.InstanceIds"]),
    ("empty InstanceIds", {**ECHO, "InstanceIds": []}, ["$.InstanceIds"]),
    ("InstanceIds a string", {**ECHO, "InstanceIds": LINUX}, ["$.InstanceIds"]),
    ("bad instance id", {**ECHO, "InstanceIds": [LINUX, "web-01", "i-UPPER00000000"]},
     ["$.InstanceIds[1]", "$.InstanceIds[2]"]),
    ("duplicate instance", {**ECHO, "InstanceIds": [LINUX, LINUX]}, ["$.InstanceIds"]),
    ("too many instances", {**ECHO, "InstanceIds": [f"i-x{n:012d}" for n in range(10001)]},
     ["$.InstanceIds"]),
    ("Timeout too small", {**ECHO, "Timeout": 5}, ["$.Timeout"]),
    ("Timeout too large", {**ECHO, "Timeout": 86401}, ["$.Timeout"]),
    ("Timeout a string", {**ECHO, "Timeout": "60"}, ["$.Timeout"]),
    ("Name too long", {**ECHO, "Name": "n" * 129}, ["$.Name"]),
    ("Description too long", {**ECHO, "Description": "d" * 513}, ["$.Description"]),
    ("WorkingDir too long", {**ECHO, "WorkingDir": "/w" * 101}, ["$.WorkingDir"]),
    ("Username empty", {**ECHO, "Username": ""}, ["$.Username"]),
    ("11 parameters", {**ECHO, "Parameters": {f"p{n}": "v" for n in range(11)}},
     ["$.Parameters"]),
    ("bad parameter name", {**ECHO, "Parameters": {"has space": "v"}}, ["$.Parameters"]),
    ("parameter value not a string", {**ECHO, "Parameters": {"n": 1}}, ["$.Parameters.n"]),
    ("Period without Frequency", {**ECHO, "RepeatMode": "Period"}, ["$.Frequency"]),
    ("Frequency without Period", {**ECHO, "Frequency": "rate(5m)"}, ["$.RepeatMode"]),
    ("unknown RepeatMode", {**ECHO, "RepeatMode": "Daily"}, ["$.RepeatMode"]),
    ("bad RegionId", {**ECHO, "RegionId": "Hangzhou"}, ["$.RegionId"]),
    ("ClientToken too long", {**ECHO, "ClientToken": "t" * 65}, ["$.ClientToken"]),
    ("ClientToken not ASCII", {**ECHO, "ClientToken": "令牌"}, ["$.ClientToken"]),
    ("unknown OnIneligible", {**ECHO, "OnIneligible": "Ignore"}, ["$.OnIneligible"]),
    ("Output bad bucket", {**ECHO, "Output": {"Bucket": "Bad_Bucket"}}, ["$.Output.Bucket"]),
    ("Output unknown key", {**ECHO, "Output": {"Path": "x"}}, ["$.Output.Path"]),
    ("Notify two targets", {**ECHO, "Notify": {"Url": "https://x.test", "Queue": "q"}},
     ["$.Notify"]),
    ("Notify bad url", {**ECHO, "Notify": {"Url": "ftp://x"}}, ["$.Notify.Url"]),
    ("misspelled field", {**ECHO, "Instanceids": [LINUX]}, ["$.Instanceids"]),
    ("many problems at once", {"Type": "RunPython", "CommandContent": "", "InstanceIds": ["x"],
                               "Timeout": 1, "Extra": True},
     ["$.CommandContent", "$.Extra", "$.InstanceIds[0]", "$.Timeout", "$.Type"]),
]


def test_invalid_requests_get_all_their_violations_and_create_nothing(endpoints: Endpoints
                                                                      ) -> None:
    assert len(INVALID) >= 30
    before = created(endpoints)
    for name, body, paths in INVALID:
        status, answer = endpoints.post(json.dumps(body).encode())
        assert status == 400, (name, answer)
        assert answer["Code"] == "InvalidRequest", name
        assert sorted({e["path"] for e in answer["Errors"]}) == sorted(paths), (name, answer)
        for error in answer["Errors"]:
            assert error["message"] and error["rule"], (name, error)
    after = created(endpoints)
    assert after[0] - before[0] == set() and after[1] - before[1] == set()


def test_forged_stale_and_replayed_webhooks_are_401_and_create_nothing(endpoints: Endpoints
                                                                       ) -> None:
    from shared import webhook

    body = json.dumps({**ECHO, "CommandContent": "echo replay"}).encode()
    headers = webhook.sign(endpoints["webhook_secret"], body)
    status, first = endpoints.post(body, sign=False, headers=headers)
    assert status == 202, first
    before = created(endpoints)
    replays = [
        endpoints.post(body, sign=False, headers=headers),  # exact replay inside the window
        endpoints.post(body, secret="forged-secret"),
        endpoints.post(body, timestamp=int(time.time()) - 3600),
        endpoints.post(body, sign=False, headers={**headers, "X-Assistflow-Signature":
                                                  "sha256=" + "0" * 64}),
    ]
    for status, answer in replays:
        assert status == 401, answer
    assert "replay" in replays[0][1]["Message"]
    # replay once more, as the original signer: still refused
    status, answer = endpoints.post(body, sign=False, headers=headers)
    assert status == 401
    after = created(endpoints)
    assert after[1] - before[1] == set()
    assert after[0] - before[0] == set()


def test_webhook_retries_with_the_same_client_token_run_once(endpoints: Endpoints) -> None:
    request = {**ECHO, "CommandContent": "echo once", "ClientToken": f"retry-{time.time_ns()}"}
    now = int(time.time())
    # a sender's retries: the same request, re-signed with a fresh timestamp each time
    answers = [endpoints.post(request, timestamp=now + n) for n in range(3)]
    assert [status for status, _ in answers] == [202, 202, 202]
    assert len({a["InvokeId"] for _, a in answers}) == 1
    assert len({a["CommandId"] for _, a in answers}) == 1
    assert invocations_of(endpoints, answers[0][1]["CommandId"]) == [answers[0][1]["InvokeId"]]
    assert output_of(endpoints, answers[0][1]["InvokeId"], LINUX) == b"once\n"


def test_every_answer_carries_the_logical_requests_id(endpoints: Endpoints) -> None:
    from shared.intake import request_id_of

    token = f"rid-{time.time_ns()}"
    refused = {**ECHO, "InstanceIds": [STOPPED], "ClientToken": token}
    status, answer = endpoints.post(refused)
    assert status == 422 and answer["RequestId"] == request_id_of(token), answer
    status, answer = endpoints.post({**ECHO, "CommandContent": "echo rid", "ClientToken": token})
    assert status == 202 and answer["RequestId"] == request_id_of(token), answer
    for status, answer in (endpoints.post(ECHO, sign=False), endpoints.post({"Type": 1})):
        assert status in (400, 401) and answer["RequestId"].startswith("r-"), answer
        assert len(answer["RequestId"]) == 26, answer


def test_a_request_queue_message_runs_and_its_redeliveries_run_once(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    queue = endpoints.mns().get_queue(endpoints["request_queue"])
    queue.set_encoding(True)  # what the SDK does by default: Base64 bodies
    token = f"queue-{time.time_ns()}"
    sent = queue.send_message(Message(json.dumps({**ECHO, "CommandContent": "echo queued",
                                                  "ClientToken": token})))
    # The host's trigger delivers it; find its invocation by the command it created.
    runtime = cloud.host.runtimes["assistflow-submit-queue"]  # type: ignore[union-attr]
    wait_for(lambda: runtime.invocations or None, timeout=10)
    # Redeliver the same message (same MessageId) twice more, as MNS may.
    event = _queue_event(sent.message_id, json.dumps({**ECHO, "CommandContent": "echo queued",
                                                      "ClientToken": token}))
    results = [runtime.invoke(event) for _ in range(2)]
    assert all(r.ok for r in results), [r.error for r in results]
    invoke_ids = {r.result["accepted"][0]["InvokeId"] for r in results}
    assert len(invoke_ids) == 1
    (invoke_id,) = invoke_ids
    command_id = results[0].result["accepted"][0]["CommandId"]
    assert invocations_of(endpoints, command_id) == [invoke_id]
    assert output_of(endpoints, invoke_id, LINUX) == b"queued\n"


def test_a_double_fired_timer_runs_its_payload_once(cloud: LocalCloud,
                                                    endpoints: Endpoints) -> None:
    runtime = cloud.host.runtimes["assistflow-submit-timer"]  # type: ignore[union-attr]
    # Another tick than events/timer.json's: one tick is one idempotency key.
    event = json.dumps({"triggerTime": "2026-11-26T03:00:00Z", "triggerName": "maintenance",
                        "payload": json.dumps({**ECHO, "CommandContent": "echo tick"})}).encode()
    fired = [runtime.invoke(event) for _ in range(3)]
    assert all(f.ok for f in fired), [f.error for f in fired]
    assert len({f.result["InvokeId"] for f in fired}) == 1
    assert invocations_of(endpoints, fired[0].result["CommandId"]) == [fired[0].result["InvokeId"]]
    assert output_of(endpoints, fired[0].result["InvokeId"], LINUX) == b"tick\n"


def test_an_invalid_timer_payload_fails_the_invocation_with_every_violation(
        cloud: LocalCloud) -> None:
    runtime = cloud.host.runtimes["assistflow-submit-timer"]  # type: ignore[union-attr]
    event = json.dumps({"triggerTime": "2026-11-26T04:01:00Z", "triggerName": "maintenance",
                        "payload": json.dumps({"Type": "RunPython"})}).encode()
    outcome = runtime.invoke(event)
    assert not outcome.ok
    assert outcome.error["errorType"] == "RequestInvalidError"


def test_250_instances_make_three_invocations_and_every_result_arrives(endpoints: Endpoints
                                                                       ) -> None:
    targets = SIMULATED[:250]
    status, body = endpoints.post({**ECHO, "InstanceIds": targets})
    assert status == 202, body
    assert body["Plan"] == {"Instances": 250, "Batches": 3, "Waves": 1}, body
    assert "InvokeId" not in body  # fanned out: the batches are invoked by the dispatcher
    ids = invoke_ids(endpoints, body)
    assert len(ids) == 3
    assert invocations_of(endpoints, body["CommandId"]) != []
    bucket = endpoints.bucket()
    counts = []
    for invoke_id in ids:
        summary = json.loads(wait_for(
            lambda i=invoke_id: get_object(bucket, f"results/{i}/summary.json"), timeout=20))
        counts.append(summary["InstanceCount"])
        assert summary["Status"] == "Success"
    assert counts == [100, 100, 50]
    stored = {key.split("/")[2] for invoke_id in ids
              for key in _keys(bucket, f"results/{invoke_id}/") if key.endswith("/output.txt")}
    assert stored == set(targets)
    summary = request_summary(endpoints, body)
    assert summary["Counts"] == {"Success": 250} and summary["Status"] == "Success"


def test_ineligible_instances_are_refused_with_a_reason_each(endpoints: Endpoints) -> None:
    before = created(endpoints)
    status, body = endpoints.post({**ECHO, "InstanceIds": [LINUX, STOPPED, NO_AGENT, WINDOWS,
                                                           "i-nosuchinstance0001"]})
    assert status == 422, body
    reasons = {e["value"]: e["rule"] for e in body["Errors"]}
    assert reasons == {STOPPED: "InstanceNotRunning", NO_AGENT: "AgentNotOnline",
                       WINDOWS: "OSTypeMismatch", "i-nosuchinstance0001": "InstanceNotFound"}
    assert {e["path"] for e in body["Errors"]} == {f"$.InstanceIds[{n}]" for n in (1, 2, 3, 4)}
    after = created(endpoints)
    assert after[0] - before[0] == set() and after[1] - before[1] == set()


def test_ineligible_instances_can_be_skipped_and_are_reported(endpoints: Endpoints) -> None:
    status, body = endpoints.post({**ECHO, "InstanceIds": [LINUX, STOPPED, NO_AGENT, WINDOWS],
                                   "OnIneligible": "Skip"})
    assert status == 202, body
    assert {s["InstanceId"]: s["Reason"] for s in body["Skipped"]} == {
        STOPPED: "InstanceNotRunning", NO_AGENT: "AgentNotOnline", WINDOWS: "OSTypeMismatch"}
    bucket = endpoints.bucket()
    summary = json.loads(wait_for(
        lambda: get_object(bucket, f"results/{body['InvokeId']}/summary.json"), timeout=10))
    assert summary["Counts"] == {"Skipped": 3, "Success": 1}
    assert summary["Status"] == "Success"
    skipped = json.loads(get_object(bucket, f"results/{body['InvokeId']}/{STOPPED}/result.json")
                         or b"{}")
    assert skipped["Status"] == "Skipped" and skipped["ErrorCode"] == "InstanceNotRunning"


def test_a_windows_script_on_the_windows_instance_passes_preflight(endpoints: Endpoints) -> None:
    status, body = endpoints.post({"Type": "RunPowerShellScript", "CommandContent": "Get-Date",
                                   "InstanceIds": [WINDOWS]})
    assert status == 202, body


@pytest.fixture(scope="module")
def allow_listed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cloud = LocalCloud(tmp_path_factory.mktemp("allow"), parameters={
        "AllowedInstances": "i-local00000000000002, i-local000000000000*x",
        "AllowedTypes": "RunShellScript", "MaintenanceEnabled": False})
    yield Endpoints(cloud.start())
    cloud.stop()


def test_the_allow_list_refuses_before_any_api_call(allow_listed: Endpoints) -> None:
    before = created(allow_listed)
    status, body = allow_listed.post({**ECHO, "InstanceIds": [LINUX, "i-local00000000000002"]})
    assert status == 403, body
    assert [e["path"] for e in body["Errors"]] == ["$.InstanceIds[0]"]
    status, body = allow_listed.post({"Type": "RunBatScript", "CommandContent": "echo",
                                      "InstanceIds": ["i-local00000000000002"]})
    assert status == 403 and body["Errors"][0]["path"] == "$.Type"
    assert created(allow_listed) == before
    status, body = allow_listed.post({**ECHO, "InstanceIds": ["i-local00000000000002"]})
    assert status == 202, body


def _queue_event(message_id: str, body: str) -> bytes:
    return json.dumps({"id": message_id, "specversion": "1.0", "type": "mns:Queue:SendMessage",
                       "source": "MNS-test", "data": {"requestId": message_id,
                                                      "messageId": message_id,
                                                      "messageBody": body}}).encode()


def _keys(bucket: Any, prefix: str) -> list[str]:
    import oss2

    return [obj.key for obj in oss2.ObjectIteratorV2(bucket, prefix=prefix)]


# --- every trigger, driven by its canonical event through `assistflow invoke` --------------

def _cli(state: str, *args: str) -> Any:
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "local", *args], cwd=repo, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "ASSISTFLOW_STATE_DIR": state})


@pytest.mark.parametrize(("function", "event", "extra", "expected"), [
    ("submit-http", "http-submit.json", ["--sign"], b"123\n"),
    ("submit-timer", "timer.json", [], b"123\n"),
    ("submit-queue", "mns-request.json", [], b"from the queue\n"),
])
def test_each_canonical_event_runs_its_command_through_assistflow_invoke(
        cloud: LocalCloud, endpoints: Endpoints, function: str, event: str, extra: list[str],
        expected: bytes) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "events" / event
    done = _cli(endpoints["state_dir"], "invoke", function, "--event", str(path), *extra)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if function == "submit-http":
        assert result["statusCode"] == 202, result
        result = json.loads(result["body"])
    elif function == "submit-queue":
        result = result["accepted"][0]
    assert output_of(endpoints, result["InvokeId"], LINUX) == expected


def test_the_maintenance_timer_fires_on_its_own_and_its_output_lands(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    cloud = LocalCloud(tmp_path_factory.mktemp("timer"),
                       parameters={"MaintenanceSchedule": "@every 1s"})
    endpoints = Endpoints(cloud.start())
    try:
        runtime = cloud.host.runtimes["assistflow-submit-timer"]  # type: ignore[union-attr]
        wait_for(lambda: runtime.invocations or None, timeout=10)
        import oss2

        def first_output() -> bytes | None:
            for obj in oss2.ObjectIteratorV2(endpoints.bucket(), prefix="results/"):
                if obj.key.endswith(f"{LINUX}/output.txt"):
                    return get_object(endpoints.bucket(), obj.key)
            return None

        output = wait_for(first_output, timeout=15)
        assert b"load average" in output  # the template's default payload runs uptime
    finally:
        cloud.stop()
