"""The walking skeleton end to end: signed webhook -> Cloud Assistant -> follow-up -> OSS.

Everything goes through the official SDKs against the local cloud started from template.yml.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
    DescribeInvocationResultsRequest,
)
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from tests.localcloud import Endpoints, get_object, wait_for

ECHO = {"Type": "RunShellScript", "CommandContent": "echo 123"}


def request_for(endpoints: Endpoints, **extra: Any) -> dict[str, Any]:
    return {**ECHO, "InstanceIds": [endpoints["instances"][0]], **extra}


def command_ids(endpoints: Endpoints) -> set[str]:
    req = DescribeCommandsRequest()
    req.set_PageSize(50)
    return {c["CommandId"] for c in endpoints.call(req)["Commands"]["Command"]}


def invoke_ids(endpoints: Endpoints) -> set[str]:
    req = DescribeInvocationsRequest()
    req.set_PageSize(50)
    return {i["InvokeId"] for i in endpoints.call(req)["Invocations"]["Invocation"]}


def test_signed_echo_123_lands_in_oss_within_10_seconds(endpoints: Endpoints) -> None:
    instance = endpoints["instances"][0]
    started = time.monotonic()
    status, body = endpoints.post(request_for(endpoints))
    assert status == 202, body
    invoke_id = body["InvokeId"]
    assert body["Results"] == [f"oss://{endpoints['results_bucket']}/results/{invoke_id}/"]

    bucket = endpoints.bucket()
    # result.json is written after output.txt: once it is there, both are
    result = json.loads(wait_for(
        lambda: get_object(bucket, f"results/{invoke_id}/{instance}/result.json"), timeout=10))
    assert time.monotonic() - started < 10
    assert get_object(bucket, f"results/{invoke_id}/{instance}/output.txt") == b"123\n"
    assert result["Status"] == "Success"
    assert result["ExitCode"] == 0
    assert result["Dropped"] == 0 and result["Truncated"] is False
    assert result["Source"] == "http"


def test_collector_writes_summary_and_deletes_the_adhoc_command(endpoints: Endpoints) -> None:
    instances = endpoints["instances"][:2]
    status, body = endpoints.post({**ECHO, "CommandContent": "echo hi; exit 3",
                                   "InstanceIds": instances})
    assert status == 202, body
    bucket = endpoints.bucket()
    summary = json.loads(wait_for(
        lambda: get_object(bucket, f"results/{body['InvokeId']}/summary.json"), timeout=10))
    assert summary["Status"] == "Failed"
    assert summary["Counts"] == {"Failed": 2}
    assert sorted(summary["Instances"]) == sorted(instances)
    for instance in instances:
        assert summary["Instances"][instance]["ExitCode"] == 3
        assert get_object(bucket, summary["Instances"][instance]["Output"]) == b"hi\n"
    # the ad-hoc command is gone once its invocation is collected; the results stay readable
    wait_for(lambda: True if body["CommandId"] not in command_ids(endpoints) else None, timeout=5)
    req = DescribeInvocationResultsRequest()
    req.set_InvokeId(body["InvokeId"])
    records = endpoints.call(req)["Invocation"]["InvocationResults"]["InvocationResult"]
    assert {r["InstanceId"] for r in records} == set(instances)


def test_wrong_signature_is_401_and_creates_nothing(endpoints: Endpoints) -> None:
    before_commands, before_invocations = command_ids(endpoints), invoke_ids(endpoints)
    status, body = endpoints.post(request_for(endpoints), secret="not-the-secret")
    assert status == 401
    assert body["Code"] == "Unauthorized"
    assert command_ids(endpoints) - before_commands == set()
    assert invoke_ids(endpoints) - before_invocations == set()


def test_unsigned_and_stale_deliveries_are_401(endpoints: Endpoints) -> None:
    status, body = endpoints.post(request_for(endpoints), sign=False)
    assert status == 401 and "missing" in body["Message"]
    status, body = endpoints.post(request_for(endpoints), timestamp=int(time.time()) - 301)
    assert status == 401 and "300 s" in body["Message"]


def test_unknown_type_is_400_naming_the_field_and_creates_nothing(endpoints: Endpoints) -> None:
    before_commands, before_invocations = command_ids(endpoints), invoke_ids(endpoints)
    status, body = endpoints.post(request_for(endpoints, Type="RunPython"))
    assert status == 400
    assert body["Code"] == "InvalidRequest"
    assert [e["path"] for e in body["Errors"]] == ["$.Type"]
    assert "RunShellScript" in body["Errors"][0]["message"]
    assert command_ids(endpoints) - before_commands == set()
    assert invoke_ids(endpoints) - before_invocations == set()


def test_every_violation_is_reported_at_once(endpoints: Endpoints) -> None:
    status, body = endpoints.post({"Type": "RunPython", "InstanceIds": ["web-1"], "Timout": 5})
    assert status == 400
    paths = sorted(e["path"] for e in body["Errors"])
    assert paths == ["$", "$.InstanceIds[0]", "$.Timout", "$.Type"]


def test_not_json_is_400_and_wrong_media_type_is_415(endpoints: Endpoints) -> None:
    status, body = endpoints.post(b"{not json")
    assert status == 400 and body["Errors"][0]["rule"] == "json"
    status, body = endpoints.post(json.dumps(request_for(endpoints)).encode(),
                                  headers={"Content-Type": "text/plain"})
    assert status == 415


def test_webhook_only_accepts_post(endpoints: Endpoints) -> None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoints["webhook_url"], timeout=10)
        raise AssertionError("GET should not be accepted")
    except urllib.error.HTTPError as err:
        assert err.code == 405
