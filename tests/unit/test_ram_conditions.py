"""local/ram.py: the Condition operators and key the template uses (StringEquals / StringLike
on acs:ResourceTag/<key>), judged on the tags of each resource; anything else refused at load."""

from __future__ import annotations

from typing import Any

import pytest

from local.ram import Identity, Policy, PolicyError, RamRequest

ROLE = "acs:ram::1234567890123456:role/test"
I1 = "acs:ecs:cn-hangzhou:1:instance/i-1"
I2 = "acs:ecs:cn-hangzhou:1:instance/i-2"


def identity(*statements: dict[str, Any]) -> Identity:
    return Identity(ROLE, (Policy.parse({"Version": "1", "Statement": list(statements)}, "p"),))


def tagged(effect: str, condition: dict[str, Any], action: str = "ecs:RunCommand") -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": "acs:ecs:*:*:instance/*",
            "Condition": condition}


def run(who: Identity, tags: dict[str, dict[str, str]], *resources: str) -> bool:
    return who.evaluate(RamRequest.of("ecs:RunCommand", resources or (I1,), tags)).allowed


def test_string_equals_on_a_resource_tag_allows_only_the_tagged_resource() -> None:
    who = identity(tagged("Allow", {"StringEquals": {"acs:ResourceTag/team": "ops"}}))
    assert run(who, {I1: {"team": "ops"}})
    assert not run(who, {I1: {"team": "Ops"}})  # case-sensitive
    assert not run(who, {I1: {"owner": "ops"}})  # another key
    assert not run(who, {I1: {}})  # untagged
    assert not run(who, {I1: {"team": "ops"}, I2: {}}, I1, I2)  # every resource must pass
    decision = who.evaluate(RamRequest.of("ecs:RunCommand", [I2], {I2: {}}))
    assert (decision.resource, decision.unmet) == (I2, True)
    assert "Condition did not hold" in decision.describe()


def test_values_are_alternatives_and_keys_and_operators_must_all_hold() -> None:
    who = identity(tagged("Allow", {
        "StringEquals": {"acs:ResourceTag/team": ["ops", "dev"],
                         "acs:ResourceTag/env": "prod"},
        "StringLike": {"acs:ResourceTag/owner": "a?ice*"}}))
    assert run(who, {I1: {"team": "dev", "env": "prod", "owner": "alice-1"}})
    assert not run(who, {I1: {"team": "dev", "env": "test", "owner": "alice"}})
    assert not run(who, {I1: {"team": "dev", "env": "prod", "owner": "bob"}})
    assert not run(who, {I1: {"team": "qa", "env": "prod", "owner": "alice"}})


def test_a_conditioned_deny_applies_only_where_its_condition_holds() -> None:
    who = identity({"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
                   tagged("Deny", {"StringEquals": {"acs:ResourceTag/env": "prod"}}))
    assert not run(who, {I1: {"env": "prod"}})
    assert run(who, {I1: {"env": "test"}})
    assert run(who, {I1: {}})


def test_tags_the_local_cloud_does_not_know_are_judged_the_strict_way() -> None:
    allow = identity(tagged("Allow", {"StringEquals": {"acs:ResourceTag/team": "ops"}}))
    assert not run(allow, {}, "acs:ecs:cn-hangzhou:1:instance/*")
    deny = identity({"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
                    tagged("Deny", {"StringEquals": {"acs:ResourceTag/env": "prod"}}))
    assert not run(deny, {}, I1)  # it might be tagged env=prod: the Deny applies


def test_a_statement_without_condition_ignores_tags() -> None:
    who = identity({"Effect": "Allow", "Action": "ecs:RunCommand", "Resource": "*"})
    assert run(who, {}) and run(who, {I1: {}})


@pytest.mark.parametrize(("condition", "complaint"), [
    ({"StringNotEquals": {"acs:ResourceTag/team": "ops"}}, "Condition operator"),
    ({"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}, "Condition operator"),
    ({"StringEqualsIgnoreCase": {"acs:ResourceTag/team": "ops"}}, "Condition operator"),
    ({"StringEquals": {"ecs:tag/team": "ops"}}, "Condition key"),
    ({"StringEquals": {"acs:RequestTag/team": "ops"}}, "Condition key"),
    ({"StringEquals": {"acs:ResourceTag/": "ops"}}, "Condition key"),
    ({"StringEquals": {"acs:ResourceTag/team": []}}, "non-empty list"),
    ({"StringEquals": {"acs:ResourceTag/team": 1}}, "string"),
    ({"StringEquals": {}}, "non-empty object of keys"),
    ({}, "non-empty object of operators"),
    ("StringEquals", "non-empty object of operators"),
])
def test_other_conditions_are_refused_at_load_rather_than_ignored(condition: Any,
                                                                   complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        Policy.parse({"Version": "1", "Statement": [tagged("Allow", condition)]}, "p")


# --- the template's tag scoping, as the local host reads it -----------------------------------

def _role_statements(**parameters: str) -> list[Any]:
    from pathlib import Path

    from local.cloud import ACCOUNT_ID, DEFAULT_TEMPLATE
    from local.host.template import Template

    template = Template.load(Path(DEFAULT_TEMPLATE), parameters, "cn-hangzhou", ACCOUNT_ID)
    role_arn = f"acs:ram::{ACCOUNT_ID}:role/assistflow-functions"
    return [s for p in template.role_policies(role_arn) for s in p.statements
            if "ecs:RunCommand" in s.actions and any("instance/" in r for r in s.resources)]


def test_the_template_scopes_running_to_tagged_instances_only_when_a_key_is_set() -> None:
    [plain] = _role_statements()
    assert plain.conditions == ()
    assert plain.resources == ("acs:ecs:cn-hangzhou:1234567890123456:instance/*",)
    [scoped] = _role_statements(InstanceTagKey="team", InstanceTagValue="ops")
    assert [(c.operator, c.tag_key, c.values) for c in scoped.conditions] == \
        [("StringEquals", "team", ("ops",))]
    [anywhere] = _role_statements(AllowedRegions="cn-hangzhou,cn-shanghai")
    assert anywhere.resources == ("acs:ecs:*:1234567890123456:instance/*",)


@pytest.mark.parametrize(("members", "expected"), [
    ([".member.0.Key=acs:ResourceTag/team", ".member.0.Value=a=b"],
     {"acs:ResourceTag/team": "a=b"}),
    ([".member.3.Value=2", ".member.1.Key=x", ".member.3.Key=y", ".member.1.Value=1"],
     {"x": "1", "y": "2"}),
])
def test_member_list_to_map(members: list[str], expected: dict[str, str]) -> None:
    from local.host.template import member_list_to_map

    assert member_list_to_map("Key", "Value", members) == expected


@pytest.mark.parametrize("members", [[".member.0.Key=x"], ["member.0.Key=x", ".member.0.Value=1"],
                                     [".member.0.Name=x", ".member.0.Value=1"]])
def test_member_list_to_map_refuses_what_it_cannot_pair(members: list[str]) -> None:
    from local.host.template import TemplateError, member_list_to_map

    with pytest.raises(TemplateError, match="MemberListToMap"):
        member_list_to_map("Key", "Value", members)


# --- the ECS emulator judges acs:ResourceTag on its instances' Tags ---------------------------

def test_ecs_runs_only_on_instances_with_the_tag_the_role_requires(tmp_path: Any) -> None:
    from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
    from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

    from local.state import issue_sts
    from tests.unit.test_ecs_emulator import b64, make, start_ecs

    fleet = [{"InstanceId": "i-ops", "Mode": "simulated", "Tags": {"team": "ops"}},
             {"InstanceId": "i-dev", "Mode": "simulated", "Tags": {"team": "dev"}},
             {"InstanceId": "i-none", "Mode": "simulated"}]
    who = identity(  # commands anywhere, reads anywhere, running only on team=ops instances
        {"Effect": "Allow", "Action": ["ecs:CreateCommand", "ecs:InvokeCommand"],
         "Resource": "acs:ecs:*:*:command/*"},
        {"Effect": "Allow", "Action": "ecs:DescribeInstances", "Resource": "*"},
        {**tagged("Allow", {"StringEquals": {"acs:ResourceTag/team": "ops"}}),
         "Action": ["ecs:RunCommand", "ecs:InvokeCommand"]})
    with start_ecs(tmp_path, fleet) as ecs:
        creds = issue_sts(ecs.app.keyring, who)
        client = ecs.client(creds.access_key_id, creds.access_key_secret, creds.security_token)
        assert ecs.call(make(DescribeInstancesRequest), client)["TotalCount"] == 3
        assert ecs.call(make_run(["i-ops"]), client)["InvokeId"].startswith("t-")
        for targets in (["i-dev"], ["i-none"], ["i-ops", "i-none"], ["i-missing"]):
            err = ecs.fails(make_run(targets), client)
            assert (err.get_error_code(), err.get_http_status()) == ("Forbidden.RAM", 403)
        command_id = ecs.create(b64("echo hi"))
        ecs.call(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-ops"]), client)
        err = ecs.fails(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-dev"]),
                        client)
        assert err.get_error_code() == "Forbidden.RAM"


def make_run(instance_ids: list[str]) -> Any:
    from aliyunsdkecs.request.v20140526.RunCommandRequest import RunCommandRequest

    from tests.unit.test_ecs_emulator import make

    return make(RunCommandRequest, Type="RunShellScript", CommandContent="echo hi",
                InstanceIds=instance_ids)
