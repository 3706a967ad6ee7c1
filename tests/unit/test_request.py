"""The command request schema: what is accepted, and every violation of what is not."""

from __future__ import annotations

import base64

import pytest

from shared.errors import RequestInvalidError
from shared.request import MAX_CONTENT_B64, parse_request

GOOD = {"Type": "RunShellScript", "CommandContent": "echo 123",
        "InstanceIds": ["i-local00000000000001"]}


def violations(body: object) -> list[tuple[str, str]]:
    with pytest.raises(RequestInvalidError) as info:
        parse_request(body)  # type: ignore[arg-type]
    return [(v.path, v.rule) for v in info.value.violations]


def test_the_shipped_schema_is_a_valid_draft_2020_12_schema() -> None:
    """Checked here, not when a function starts (``shared.request``): a schema that its
    metaschema refuses would validate nothing as meant."""
    import jsonschema

    from shared.request import SCHEMA
    from shared.strict_json import Validator

    Validator.check_schema(SCHEMA)
    with pytest.raises(jsonschema.SchemaError):  # the check does refuse a broken schema
        Validator.check_schema({**SCHEMA, "properties": {"Type": {"type": "no-such-type"}}})


def test_plain_text_content_is_base64_encoded_for_cloud_assistant() -> None:
    req = parse_request(GOOD)
    assert req.content_b64 == base64.b64encode(b"echo 123").decode()
    assert req.instance_ids == ("i-local00000000000001",)
    assert req.timeout is None and req.name == "assistflow"  # None: the API's default (60 s)


def test_the_seeds_base64_form_is_accepted_as_is() -> None:
    req = parse_request({**GOOD, "CommandContent": "ZWNobyAxMjM=", "ContentEncoding": "Base64"})
    assert req.content_b64 == "ZWNobyAxMjM=" and req.content == "echo 123"


def test_bytes_and_text_bodies_parse_the_same() -> None:
    import json

    assert parse_request(json.dumps(GOOD).encode()) == parse_request(json.dumps(GOOD))


@pytest.mark.parametrize(("change", "expected"), [
    ({"Type": "RunPython"}, [("$.Type", "enum")]),
    ({"InstanceIds": []}, [("$.InstanceIds", "minItems")]),
    ({"InstanceIds": ["web-1"]}, [("$.InstanceIds[0]", "pattern")]),
    ({"InstanceIds": ["i-local00000000000001"] * 2}, [("$.InstanceIds", "uniqueItems")]),
    ({"Timeout": 5}, [("$.Timeout", "minimum")]),
    ({"Timeout": "60"}, [("$.Timeout", "type")]),
    ({"Name": "x" * 129}, [("$.Name", "maxLength")]),
    ({"Description": "x" * 513}, [("$.Description", "maxLength")]),
    ({"WorkingDir": "/" * 201}, [("$.WorkingDir", "maxLength")]),
    ({"instanceIds": ["i-local00000000000001"]}, [("$.instanceIds", "additionalProperties")]),
    ({"ContentEncoding": "Base64"}, [("$.CommandContent", "base64")]),
])
def test_each_violation_names_its_path_and_rule(change: dict[str, object],
                                                expected: list[tuple[str, str]]) -> None:
    assert violations({**GOOD, **change}) == expected


def test_missing_fields_are_reported_each_with_its_own_path() -> None:
    assert violations({}) == [("$", "oneOf"), ("$.InstanceIds", "required")]
    assert violations({"CommandContent": "x"}) == [("$.InstanceIds", "required"),
                                                   ("$.Type", "required")]


def test_all_violations_come_together() -> None:
    found = violations({"Type": "RunPython", "CommandContent": "", "InstanceIds": ["x"],
                        "Extra": 1})
    assert found == [("$.CommandContent", "minLength"), ("$.Extra", "additionalProperties"),
                     ("$.InstanceIds[0]", "pattern"), ("$.Type", "enum")]


def test_content_over_24kb_once_encoded_is_refused_with_the_limit() -> None:
    fits = "x" * (MAX_CONTENT_B64 // 4 * 3)
    assert parse_request({**GOOD, "CommandContent": fits})
    with pytest.raises(RequestInvalidError) as info:
        parse_request({**GOOD, "CommandContent": fits + "xxx"})
    assert info.value.violations[0].rule == "maxEncodedLength"
    assert str(MAX_CONTENT_B64) in info.value.violations[0].message


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[]", b"null", b'"text"'])
def test_non_object_bodies_get_one_clear_violation(body: bytes) -> None:
    found = violations(body)
    assert len(found) == 1 and found[0][0] == "$"


def test_messages_say_what_to_do() -> None:
    with pytest.raises(RequestInvalidError) as info:
        parse_request({**GOOD, "Type": "RunPython"})
    message = info.value.violations[0].message
    assert "RunShellScript" in message and "RunPython" in message
    assert info.value.to_dict()["Errors"][0]["value"] == "RunPython"


# --- JSON as its specification reads it (shared.strict_json) --------------------------------

BODY = ('{"Type": "RunShellScript", "CommandContent": "echo 123", '
        '"InstanceIds": ["i-local00000000000001"]')


@pytest.mark.parametrize(("raw", "path", "rule"), [
    ("[" * 1000 + "]" * 1000, "$", "maxDepth"),  # json.loads: RecursionError
    (BODY + ', "Parameters": {"a": ' + "[" * 500 + "]" * 500 + "}}", "$.Parameters.a" +
     "[0]" * 14, "maxDepth"),  # read by json.loads, refused before the validator recurses
    (BODY + ', "Timeout": ' + "9" * 5000 + "}", "$", "json"),  # Python's int max str digits
    (BODY + ', "Timeout": 1e999}', "$", "json"),  # inf, which json.dumps writes as Infinity
    (BODY + ', "Timeout": NaN}', "$", "json"),  # not JSON at all
    (BODY + ', "Name": "\\ud800"}', "$.Name", "unicode"),  # a lone surrogate: no UTF-8
    (BODY + ', "\\udfff": 1}', "$.\\udfff", "unicode"),
])
def test_what_python_reads_beyond_json_is_a_violation(raw: str, path: str, rule: str) -> None:
    assert violations(raw) == [(path, rule)]


def test_a_fractional_or_exponent_timeout_is_refused_cloud_assistant_takes_integers() -> None:
    for value in ("60.0", "6e1", "60.5"):
        assert violations(BODY + f', "Timeout": {value}}}') == [("$.Timeout", "type")]
    assert parse_request(BODY + ', "Timeout": 60}').timeout == 60


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("^[a-z]+$", "abc", True),
    ("^[a-z]+$", "abc\n", False),  # Python's $ would match before the newline
    ("^a.c$", "a\rc", False),  # ECMA's . matches no line terminator
    ("^a.c$", "a\u2028c", False),
    ("^a.c$", "abc", True),
    ("^[$.]+$", "$.", True),  # inside a class, $ and . are themselves
    ("^a\\$$", "a$", True),  # an escaped $ is a dollar
    ("^a\\.$", "ab", False),
])
def test_patterns_have_their_ecma_262_meaning(pattern: str, text: str, matches: bool) -> None:
    from shared.strict_json import ecma_regex

    assert bool(ecma_regex(pattern).search(text)) is matches


def test_parameters_switch_cloud_assistants_parameters_on_only_when_sent() -> None:
    docker = {**GOOD, "CommandContent": "docker ps --format '{{.Names}}'"}
    assert parse_request(docker).enable_parameter is False
    assert parse_request({**docker, "Parameters": {}}).enable_parameter is True


# --- targets: InstanceIds, or a selector (Tags and/or ResourceGroupId) ----------------------

SCRIPT = {"Type": "RunShellScript", "CommandContent": "echo 123"}


def test_a_selector_names_instances_by_tags_and_resource_group() -> None:
    req = parse_request({**SCRIPT, "Tags": [{"Key": "team", "Value": "ops"},
                                            {"Key": "env", "Value": "prod"}],
                         "ResourceGroupId": "rg-aek2ops"})
    assert req.selector and req.instance_ids == ()
    assert req.tags == (("team", "ops"), ("env", "prod"))
    assert req.resource_group_id == "rg-aek2ops"
    assert parse_request({**SCRIPT, "ResourceGroupId": "rg-aek2ops"}).tags == ()
    assert not parse_request(GOOD).selector


def test_instance_ids_and_a_selector_together_are_refused() -> None:
    for selector in ({"Tags": [{"Key": "team", "Value": "ops"}]},
                     {"ResourceGroupId": "rg-aek2ops"}):
        with pytest.raises(RequestInvalidError) as info:
            parse_request({**GOOD, **selector})
        [violation] = info.value.violations
        assert (violation.path, violation.rule) == ("$", "targets")
        assert "not both" in violation.message


def test_no_targets_at_all_names_instance_ids_and_the_selector() -> None:
    with pytest.raises(RequestInvalidError) as info:
        parse_request(SCRIPT)
    [violation] = info.value.violations
    assert violation.path == "$.InstanceIds" and "Tags" in violation.message


@pytest.mark.parametrize(("tags", "expected"), [
    ([], [("$.Tags", "minItems")]),
    ([{"Key": f"k{n}", "Value": "v"} for n in range(21)], [("$.Tags", "maxItems")]),
    ([{"Key": "team"}], [("$.Tags[0].Value", "required")]),
    ([{"Key": "team", "Value": "ops", "Op": "eq"}], [("$.Tags[0].Op", "additionalProperties")]),
    ([{"Key": "", "Value": "ops"}], [("$.Tags[0].Key", "minLength")]),
    ([{"Key": "k" * 129, "Value": "ops"}], [("$.Tags[0].Key", "maxLength")]),
    ([{"Key": "team", "Value": "v" * 129}], [("$.Tags[0].Value", "maxLength")]),
    ([{"Key": "team", "Value": ""}], [("$.Tags[0].Value", "minLength")]),
    ([{"Key": "aliyun:x", "Value": "ops"}], [("$.Tags[0].Key", "pattern")]),
    ([{"Key": "acs:ecs", "Value": "ops"}], [("$.Tags[0].Key", "pattern")]),
    ([{"Key": "team", "Value": "acs:x"}], [("$.Tags[0].Value", "pattern")]),
    ([{"Key": "see https://x", "Value": "ops"}], [("$.Tags[0].Key", "pattern")]),
    ([{"Key": "team", "Value": "a\u2028http://x"}], [("$.Tags[0].Value", "pattern")]),
    ([{"Key": "team", "Value": "ops"}, {"Key": "team", "Value": "dev"}],
     [("$.Tags[1].Key", "uniqueKeys")]),
    ("team=ops", [("$.Tags", "type")]),
])
def test_each_tag_violation_names_its_path(tags: object, expected: list[tuple[str, str]]) -> None:
    assert violations({**SCRIPT, "Tags": tags}) == expected


@pytest.mark.parametrize("value", ["rg-", "rg-ABC", "aek2ops", "rg-aek2ops\n", "rg-" + "a" * 65])
def test_a_resource_group_id_is_rg_and_lowercase_letters_or_digits(value: str) -> None:
    assert violations({**SCRIPT, "ResourceGroupId": value}) == [("$.ResourceGroupId", "pattern")]


def test_tag_keys_and_values_may_hold_any_printable_text() -> None:
    req = parse_request({**SCRIPT, "Tags": [{"Key": "所属部门 / team", "Value": "运维: ops=1"}]})
    assert req.tags == (("所属部门 / team", "运维: ops=1"),)
