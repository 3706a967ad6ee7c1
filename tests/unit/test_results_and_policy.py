"""Pure pieces of the core: result documents, summaries, batching, tokens, the allow-list."""

from __future__ import annotations

import base64

import pytest

from shared.config import Credentials, Settings
from shared.dispatch import batches, client_token
from shared.errors import NotAllowedError
from shared.followup import FollowUp
from shared.intake import Intake, request_id_of
from shared.policy import check_allowed, instance_allowed
from shared.request import parse_request
from shared.results import (
    decode_output,
    overall_status,
    result_document,
    summary_document,
)

FOLLOWUP = FollowUp(invoke_id="t-1", command_id="c-1", region="cn-hangzhou",
                    pending=("i-a0000000",), attempt=1, deadline=0.0, bucket="b",
                    prefix="results", request_id="r", adhoc=True, source="http",
                    submitted_at=0.0, skipped=(("i-s0000000", "InstanceNotRunning"),),
                    skipped_count=1)


@pytest.mark.parametrize(("statuses", "overall"), [
    (["Success", "Success"], "Success"),
    (["Success", "Failed"], "PartialFailed"),
    (["Success", "Timeout"], "PartialFailed"),
    (["Failed", "Invalid"], "Failed"),
    (["Cancelled", "Terminated"], "Stopped"),
    (["Success", "Terminated"], "Success"),
    (["Success", "CollectorTimeout"], "PartialFailed"),
])
def test_overall_status_aggregates_like_cloud_assistant(statuses: list[str], overall: str) -> None:
    assert overall_status(statuses) == overall


def test_output_is_decoded_with_undecodable_bytes_replaced() -> None:
    raw = "ok ✓\n".encode() + b"\xff"
    text, size = decode_output(base64.b64encode(raw).decode())
    assert text == "ok ✓\n\ufffd" and size == len(raw)


def test_result_document_flags_truncation() -> None:
    doc = result_document({"InstanceId": "i-a0000000", "InvocationStatus": "Success",
                           "ExitCode": 0, "Dropped": 6000}, FOLLOWUP, 24576)
    assert doc["Truncated"] is True and doc["Dropped"] == 6000 and doc["OutputBytes"] == 24576


def test_summary_counts_skipped_apart_from_the_overall_status() -> None:
    docs = {
        "i-a0000000": result_document({"InstanceId": "i-a0000000", "InvocationStatus": "Success",
                                       "ExitCode": 0, "Dropped": 1}, FOLLOWUP, 3),
        "i-s0000000": {"Status": "Skipped", "ExitCode": None, "Truncated": False},
    }
    summary = summary_document(FOLLOWUP, docs)
    assert summary["Status"] == "Success"
    assert summary["Counts"] == {"Skipped": 1, "Success": 1}
    assert summary["Truncated"] == ["i-a0000000"]
    assert summary["Instances"]["i-a0000000"]["Output"] == "results/t-1/i-a0000000/output.txt"


def test_batches_of_at_most_100_and_stable_tokens() -> None:
    ids = tuple(f"i-{n:010d}" for n in range(250))
    assert [len(b) for b in batches(ids)] == [100, 100, 50]
    assert client_token("k", "invoke-0") == client_token("k", "invoke-0")
    assert client_token("k", "invoke-0") != client_token("k", "invoke-1")
    assert len(client_token("k" * 500, "create")) == 64


def settings(**allow: tuple[str, ...]) -> Settings:
    return Settings(region="cn-hangzhou", credentials=Credentials("ak", "sk"),
                    followup_queue="q", results_bucket="b", **allow)  # type: ignore[arg-type]


def test_request_id_is_the_logical_requests_at_every_step() -> None:
    """ClientToken of a valid body, else the trigger's key, else the FC request id: always r-…"""
    intake = Intake("http", fc_request_id="1-abc")
    unsigned = intake.request_id
    assert unsigned == request_id_of("fc:1-abc") and len(unsigned) == 26
    intake.key = "signature"
    assert intake.request_id == request_id_of("signature") != unsigned
    intake.validate(b'{"Type": "RunShellScript", "CommandContent": "x", '
                    b'"InstanceIds": ["i-local00000000000001"]}')
    assert intake.request_id == request_id_of("signature")  # no ClientToken: the trigger's key
    intake.validate(b'{"Type": "RunShellScript", "CommandContent": "x", "ClientToken": "t-1", '
                    b'"InstanceIds": ["i-local00000000000001"]}')
    assert intake.request_id == request_id_of("t-1")
    assert Intake("queue", key="mns:other").idempotency_key == "mns:other"


def test_allow_list_matches_ids_and_prefixes() -> None:
    assert instance_allowed("i-web001", ("i-web*",))
    assert instance_allowed("i-db0001", ("i-web*", "i-db0001"))
    assert not instance_allowed("i-db0002", ("i-web*", "i-db0001"))
    assert instance_allowed("anything", ())


def test_allow_list_refusal_lists_every_instance_and_the_type() -> None:
    request = parse_request({"Type": "RunBatScript", "CommandContent": "x",
                             "InstanceIds": ["i-web00001", "i-db000001", "i-db000002"]})
    with pytest.raises(NotAllowedError) as info:
        check_allowed(request, settings(allowed_instances=("i-web*",),
                                        allowed_types=("RunShellScript",)))
    assert [v.path for v in info.value.violations] == ["$.InstanceIds[1]", "$.InstanceIds[2]",
                                                       "$.Type"]


@pytest.mark.parametrize(("region", "allowed", "refused"), [
    ("", (), False),  # no RegionId: the function's own region
    ("cn-hangzhou", (), False),
    ("cn-shanghai", (), True),  # by default only the function's own region
    ("cn-shanghai", ("cn-hangzhou", "cn-shanghai"), False),
    ("cn-beijing", ("cn-hangzhou", "cn-shanghai"), True),
    ("", ("cn-shanghai",), True),  # the list is complete: the own region is not implied
])
def test_the_region_a_request_acts_in_must_be_allowed(region: str, allowed: tuple[str, ...],
                                                      refused: bool) -> None:
    body = {"Type": "RunShellScript", "CommandContent": "x", "InstanceIds": ["i-web00001"]}
    request = parse_request({**body, "RegionId": region} if region else body)
    if not refused:
        check_allowed(request, settings(allowed_regions=allowed))
        return
    with pytest.raises(NotAllowedError) as info:
        check_allowed(request, settings(allowed_regions=allowed))
    [violation] = info.value.violations
    assert (violation.path, violation.rule, violation.value) == ("$.RegionId", "allowList", region)
    assert "ASSISTFLOW_ALLOWED_REGIONS" in violation.message


def test_settings_come_from_the_fc_environment_and_say_what_is_missing() -> None:
    from shared.errors import ConfigError

    env = {"FC_REGION": "cn-shanghai", "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.x",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret-value",
           "ALIBABA_CLOUD_SECURITY_TOKEN": "token-value",
           "ASSISTFLOW_FOLLOWUP_QUEUE": "f", "ASSISTFLOW_RESULTS_BUCKET": "b",
           "ASSISTFLOW_ALLOWED_INSTANCES": "i-a*, i-b", "FC_ACCOUNT_ID": "123",
           "ASSISTFLOW_ALLOWED_REGIONS": "cn-shanghai,cn-beijing"}
    s = Settings.from_env(env)
    assert s.region == "cn-shanghai" and s.credentials.security_token == "token-value"
    assert s.allowed_instances == ("i-a*", "i-b")
    assert s.allowed_regions == ("cn-shanghai", "cn-beijing")
    assert s.mns_url == "https://123.mns.cn-shanghai.aliyuncs.com"  # public HTTPS by default
    assert s.oss_url == "https://oss-cn-shanghai.aliyuncs.com"
    assert "secret-value" not in repr(s) and "token-value" not in repr(s)  # never in logs
    with pytest.raises(ConfigError, match="ASSISTFLOW_RESULTS_BUCKET"):
        Settings.from_env({k: v for k, v in env.items() if k != "ASSISTFLOW_RESULTS_BUCKET"})
