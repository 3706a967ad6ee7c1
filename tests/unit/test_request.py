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
