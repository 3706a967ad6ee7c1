"""local/ram.py: RAM policy documents, wildcards and the evaluation order, as pure code."""

from __future__ import annotations

from typing import Any

import pytest

from local.emulators.keyring import KeyRing
from local.ram import Identity, Policy, PolicyError, RamRequest, wildcard_match
from local.state import issue_sts

ROLE = "acs:ram::1234567890123456:role/test"


def identity(*statements: dict[str, Any]) -> Identity:
    return Identity(ROLE, (Policy.parse({"Version": "1", "Statement": list(statements)}, "p"),))


def allow(action: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def allowed(who: Identity, action: str, *resources: str) -> bool:
    return who.evaluate(RamRequest.of(action, resources)).allowed


@pytest.mark.parametrize(("pattern", "value", "hit"), [
    ("ecs:Describe*", "ecs:DescribeInstances", True),
    ("ecs:Describe*", "ecs:InvokeCommand", False),
    ("*", "anything:at/all", True),
    ("acs:oss:*:*:bucket/results/*", "acs:oss:*:123:bucket/results/t-1/i-1/output.txt", True),
    ("acs:oss:*:*:bucket/results/*", "acs:oss:*:123:bucket/resultsX/a", False),
    ("acs:oss:*:*:bucket/results/*", "acs:oss:*:123:bucket/results", False),
    ("acs:mns:*:*:/queues/app-notify*", "acs:mns:r:1:/queues/app-notify-ops/messages", True),
    ("acs:ecs:*:*:instance/i-00?", "acs:ecs:r:1:instance/i-001", True),
    ("acs:ecs:*:*:instance/i-00?", "acs:ecs:r:1:instance/i-0012", False),
    ("acs:ecs:*:*:instance/i-00?", "acs:ecs:r:1:instance/i-00", False),
    ("ecs:invokecommand", "ecs:InvokeCommand", False),  # case-sensitive: never kinder
    ("a.b[c]", "a.b[c]", True),  # regex characters are literal
    ("a.b", "axb", False),
])
def test_wildcards_star_and_question_mark(pattern: str, value: str, hit: bool) -> None:
    assert wildcard_match(pattern, value) is hit


def test_nothing_matches_means_an_implicit_deny() -> None:
    who = identity(allow("ecs:DescribeInstances"))
    decision = who.evaluate(RamRequest.of("ecs:InvokeCommand", ["acs:ecs:r:1:command/c-1"]))
    assert (decision.allowed, decision.explicit) == (False, False)
    assert decision.action == "ecs:InvokeCommand"
    assert "no statement allows it" in decision.describe()


def test_an_explicit_deny_wins_over_any_allow() -> None:
    who = identity(allow("oss:*"), deny("oss:DeleteObject", "acs:oss:*:*:b/keep/*"))
    assert allowed(who, "oss:DeleteObject", "acs:oss:*:1:b/tmp/x")
    decision = who.evaluate(RamRequest.of("oss:DeleteObject", ["acs:oss:*:1:b/keep/x"]))
    assert (decision.allowed, decision.explicit) == (False, True)


def test_every_resource_of_a_request_must_be_allowed() -> None:
    who = identity(allow("ecs:InvokeCommand", ["acs:ecs:*:*:command/*",
                                               "acs:ecs:*:*:instance/i-ok*"]))
    base = "acs:ecs:cn-hangzhou:1:"
    assert allowed(who, "ecs:InvokeCommand", base + "command/c-1", base + "instance/i-ok1")
    decision = who.evaluate(RamRequest.of("ecs:InvokeCommand", [
        base + "command/c-1", base + "instance/i-ok1", base + "instance/i-other"]))
    assert not decision.allowed and decision.resource == base + "instance/i-other"


def test_pairs_of_different_actions_are_all_checked() -> None:
    who = identity(allow("oss:PutObject", "acs:oss:*:*:b/*"))
    request = RamRequest.of("oss:PutObject", ["acs:oss:*:1:b/copy"]) + RamRequest.of(
        "oss:GetObject", ["acs:oss:*:1:b/source"])
    assert who.evaluate(request).action == "oss:GetObject"


def test_not_action_and_not_resource_invert_the_match() -> None:
    who = identity({"Effect": "Allow", "NotAction": "ecs:Delete*", "Resource": "*"},
                   {"Effect": "Deny", "Action": "oss:*", "NotResource": "acs:oss:*:*:b/*"})
    assert allowed(who, "ecs:InvokeCommand", "x")
    assert not allowed(who, "ecs:DeleteCommand", "x")
    assert allowed(who, "oss:GetObject", "acs:oss:*:1:b/k")
    assert who.evaluate(RamRequest.of("oss:GetObject", ["acs:oss:*:1:c/k"])).explicit


def test_several_policies_of_a_role_are_one_set() -> None:
    first = Policy.parse({"Version": "1", "Statement": [allow("mns:SendMessage")]}, "a")
    second = Policy.parse({"Version": "1", "Statement": [deny("mns:SendMessage",
                                                              "acs:mns:*:*:/queues/x/*")]}, "b")
    who = Identity(ROLE, (first, second))
    assert allowed(who, "mns:SendMessage", "acs:mns:r:1:/queues/y/messages")
    assert not allowed(who, "mns:SendMessage", "acs:mns:r:1:/queues/x/messages")


@pytest.mark.parametrize(("document", "complaint"), [
    ({"Version": "1", "Statement": [{**allow("oss:*"), "Condition": {
        "IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}}]}, "Condition"),
    ({"Version": "1", "Statement": [{**allow("oss:*"), "Principal": {"RAM": ["*"]}}]},
     "Principal"),
    ({"Version": "2", "Statement": [allow("oss:*")]}, "Version"),
    ({"Version": 1, "Statement": [allow("oss:*")]}, "Version"),
    ({"Version": "1", "Statement": []}, "Statement"),
    ({"Version": "1", "Statement": allow("oss:*")}, "Statement"),
    ({"Version": "1", "Statement": [allow("oss:*")], "Id": "x"}, "unknown"),
    ({"Version": "1", "Statement": [{**allow("oss:*"), "Effects": "Allow"}]}, "unknown"),
    ({"Version": "1", "Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]},
     "Effect"),
    ({"Version": "1", "Statement": [{"Effect": "Allow", "Resource": "*"}]}, "Action"),
    ({"Version": "1", "Statement": [{**allow("oss:*"), "NotAction": "oss:Get*"}]}, "exactly"),
    ({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*"}]}, "Resource"),
    ({"Version": "1", "Statement": [allow([])]}, "non-empty"),
    ({"Version": "1", "Statement": [allow("InvokeCommand")]}, "not an action"),
    ("not a document", "object"),
])
def test_policies_the_local_cloud_cannot_honour_are_refused_at_load(document: Any,
                                                                     complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint) as info:
        Policy.parse(document, "FunctionRole/p")
    assert "FunctionRole/p" in str(info.value)


def test_a_request_without_pairs_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least one"):
        identity(allow("*")).evaluate(RamRequest(()))


def test_issued_sts_keys_carry_their_role_and_owner_keys_none() -> None:
    ring = KeyRing({"owner": ("secret", None)})
    who = identity(allow("oss:GetObject"))
    creds = issue_sts(ring, who)
    assert creds.access_key_id.startswith("STS.LOCAL")
    assert ring.secret_for(creds.access_key_id) == creds.access_key_secret
    assert ring.token_ok(creds.access_key_id, creds.security_token)
    assert not ring.token_ok(creds.access_key_id, None)
    assert ring.identity(creds.access_key_id) is who
    assert ring.identity("owner") is None and ring.identity(None) is None
    env = creds.environment()
    assert env["ALIBABA_CLOUD_SECURITY_TOKEN"] == creds.security_token
    assert issue_sts(ring, who).access_key_id != creds.access_key_id  # one pair per function
