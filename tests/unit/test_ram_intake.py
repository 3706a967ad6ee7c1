"""The intake's refusal of targets the function role cannot write, and why it cannot disagree
with template.yml: the template's own policy, evaluated by local/ram.py, allows exactly what
the intake lets through."""

from __future__ import annotations

from typing import Any

import pytest

from local.cloud import DEFAULT_TEMPLATE
from local.host.template import Template
from local.ram import Identity, RamRequest
from shared.config import Settings
from shared.errors import NotAllowedError, RequestInvalidError
from shared.policy import check_allowed, notify_violations, output_violations
from shared.request import parse_request

ECHO: dict[str, Any] = {"Type": "RunShellScript", "CommandContent": "echo 1",
                        "InstanceIds": ["i-local00000000000001"]}
ACCOUNT, REGION = "1234567890123456", "cn-hangzhou"


def deployment(**parameters: Any) -> tuple[Settings, Identity]:
    """The submit function's settings and its role, from template.yml with ``parameters``."""
    template = Template.load(DEFAULT_TEMPLATE, parameters, REGION, ACCOUNT)
    function = next(f for f in template.functions() if f.name.endswith("-submit-http"))
    env = {**function.environment, "FC_REGION": REGION, "FC_ACCOUNT_ID": ACCOUNT,
           "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.x", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    return Settings.from_env(env), Identity(function.role, template.role_policies(function.role))


DEPLOYMENTS = [{}, {"Prefix": "ops", "ResultsBucketName": "ops-results-1",
                    "ResultsPrefix": "data/out"}]
BUCKETS = ["", "assistflow-results", "ops-results-1", "someone-elses-bucket"]
PREFIXES = ["", "results", "results/team-a", "results/a/b", "resultsx", "results-old",
            "data", "data/out", "data/out/x", "data/outx", "invocations", "invocations/x",
            "webhook-deliveries", "elsewhere"]
NAMES = ["assistflow-notify", "assistflow-notify-ops", "assistflow-notif", "assistflow-followups",
         "assistflow-requests", "ops-notify-x", "ops-followups", "payments"]


@pytest.mark.parametrize("parameters", DEPLOYMENTS, ids=["defaults", "other parameters"])
def test_the_intake_allows_exactly_the_outputs_the_template_role_may_write(
        parameters: dict[str, Any]) -> None:
    settings, role = deployment(**parameters)
    for bucket in BUCKETS:
        for prefix in PREFIXES:
            target = (f"acs:oss:*:{ACCOUNT}:{bucket or settings.results_bucket}/"
                      f"{prefix or settings.results_prefix}/t-1/i-1/output.txt")
            writable = role.evaluate(RamRequest.of("oss:PutObject", [target])).allowed
            violations = output_violations(bucket, prefix, settings)
            records = any(v.rule == "reservedPrefix" for v in violations)
            assert (not violations) == (writable and not records), (bucket, prefix, violations)


@pytest.mark.parametrize("parameters", DEPLOYMENTS, ids=["defaults", "other parameters"])
def test_the_intake_allows_exactly_the_notify_targets_the_template_role_may_send_to(
        parameters: dict[str, Any]) -> None:
    settings, role = deployment(**parameters)
    for name in NAMES:
        for kind, action in (("queues", "mns:SendMessage"), ("topics", "mns:PublishMessage")):
            arn = f"acs:mns:{REGION}:{ACCOUNT}:/{kind}/{name}/messages"
            sendable = role.evaluate(RamRequest.of(action, [arn])).allowed
            refused = notify_violations(*((name, "") if kind == "queues" else ("", name)),
                                        settings)
            own_queue = kind == "queues" and name == settings.followup_queue
            # the follow-up queue is the role's own (the collector re-queues itself there),
            # never a place for notifications: refused though sendable
            assert (not refused) == (sendable and not own_queue), (kind, name, refused)


def test_the_template_gives_the_intake_what_the_policy_is_built_from() -> None:
    settings, _ = deployment(Prefix="ops", ResultsBucketName="b-1", ResultsPrefix="r")
    assert (settings.results_bucket, settings.results_prefix, settings.notify_prefix) == (
        "b-1", "r", "ops-notify")


@pytest.mark.parametrize("prefix", ["../escape", "results/../x", "results/./x", "a//b",
                                    "results/a\u0000b", "results/\u007f", "res\tults",
                                    "results\\..\\x", ".."])
def test_output_prefixes_that_are_not_plain_folders_are_invalid(prefix: str) -> None:
    with pytest.raises(RequestInvalidError) as info:
        parse_request({**ECHO, "Output": {"Prefix": prefix}})
    assert [(v.path, v.rule) for v in info.value.violations] == [("$.Output.Prefix", "keyPath")]
    assert "results/team-a" in info.value.violations[0].message


@pytest.mark.parametrize("prefix", ["results", "results/team-a", "results/a.b/c..d", "x.y"])
def test_ordinary_folders_are_valid(prefix: str) -> None:
    assert parse_request({**ECHO, "Output": {"Prefix": prefix}}).output.prefix == prefix


def test_every_target_the_role_cannot_write_is_listed_in_one_refusal() -> None:
    settings, _ = deployment()
    request = parse_request({**ECHO, "Output": {"Bucket": "someone-elses-bucket",
                                                "Prefix": "invocations"},
                             "Notify": {"Queue": "assistflow-followups"}})
    with pytest.raises(NotAllowedError) as info:
        check_allowed(request, settings)
    assert info.value.status == 403
    assert [(v.path, v.rule) for v in info.value.violations] == [
        ("$.Output.Bucket", "notWritable"), ("$.Output.Prefix", "reservedPrefix"),
        ("$.Notify.Queue", "notWritable")]
    assert "assistflow-results" in info.value.violations[0].message


def test_without_a_notify_prefix_no_queue_or_topic_may_be_notified() -> None:
    settings, _ = deployment()
    bare = Settings(region=REGION, credentials=settings.credentials,
                    followup_queue="f", results_bucket="b")
    [violation] = notify_violations("", "assistflow-notify-ops", bare)
    assert violation.path == "$.Notify.Topic" and "Notify.Url" in violation.message
    assert notify_violations("", "", bare) == []
