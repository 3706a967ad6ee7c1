"""Issue 13, item 7: no string field takes a trailing newline (or another control character).

Python's ``$`` also matches before a trailing newline, and the ``jsonschema`` library evaluates
``pattern`` with Python's ``re.search``: ``RegionId: "cn-hangzhou\\n"`` ran,
``Output.Bucket: "assistflow-results\\n"`` was accepted and its results lost, and
``Notify.Queue: "assistflow-notify\\n"`` looped. Every string field of the schema — found by
walking it, so a new field cannot be missed — gets a valid value with a control character
added (hypothesis picks which and where); each must be refused at that field's path. The two
fields whose values are scripts or substituted into scripts take newlines by contract, and are
checked to take them. The three reported values also go through the real webhook: 400,
nothing created.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import RequestInvalidError
from shared.request import SCHEMA, parse_request
from tests.functional.test_submit import created
from tests.localcloud import Endpoints

LINUX = "i-local00000000000001"
CONTENT = {"Type": "RunShellScript", "CommandContent": "echo 1", "InstanceIds": [LINUX]}

# A valid value of every string field, and the request it goes in (path -> (body, setter)).
VALID: dict[str, str] = {
    "Type": "RunShellScript", "CommandContent": "echo 1", "ContentEncoding": "PlainText",
    "CommandId": "c-abcd1234", "InstanceIds[]": LINUX, "Name": "assistflow-nightly",
    "Description": "nightly clean-up", "WorkingDir": "/tmp", "Username": "root",
    "Parameters{}": "param_1", "Parameters{}=": "value", "RepeatMode": "Period",
    "Frequency": "rate(5m)", "RegionId": "cn-hangzhou", "ClientToken": "token-1",
    "OnIneligible": "Skip", "Output.Bucket": "assistflow-results",
    "Output.Prefix": "results/team-a", "Notify.Url": "https://example.com/hook",
    "Notify.Queue": "assistflow-notify", "Notify.Topic": "assistflow-notify-ops",
    "Tags[].Key": "team", "Tags[].Value": "ops", "ResourceGroupId": "rg-aek2ops",
}
# Scripts, and the values substituted into them, are multi-line text by contract.
FREE_TEXT = {"CommandContent", "Parameters{}="}
CONTROL = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]


def string_fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Every place the schema holds a string: properties (``Output.Bucket``), array items
    (``InstanceIds[]``), property names (``Parameters{}``) and values (``Parameters{}=``)."""
    found = set()
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if sub.get("type") == "string" or "enum" in sub:
            found.add(path)
        if sub.get("type") == "array" and sub["items"].get("type") == "string":
            found.add(f"{path}[]")
        if sub.get("type") == "array" and sub["items"].get("type") == "object":
            found |= string_fields(sub["items"], f"{path}[].")
        if "propertyNames" in sub:
            found.add(f"{path}{{}}")
        if isinstance(sub.get("additionalProperties"), dict) \
                and sub["additionalProperties"].get("type") == "string":
            found.add(f"{path}{{}}=")
        found |= string_fields(sub, f"{path}.")
    return found


def body_with(field: str, value: str) -> tuple[dict[str, Any], str]:
    """A valid request whose ``field`` is ``value``; the JSON path a violation of it has."""
    body: dict[str, Any] = dict(CONTENT)
    if field == "CommandId":
        body = {"CommandId": value, "InstanceIds": [LINUX]}
    elif field == "ContentEncoding":
        body["ContentEncoding"] = value
    elif field in ("RepeatMode", "Frequency"):
        body.update({"RepeatMode": "Period", "Frequency": "rate(5m)", field: value})
    elif field == "InstanceIds[]":
        body["InstanceIds"] = [value]
        return body, "$.InstanceIds[0]"
    elif field in ("Tags[].Key", "Tags[].Value", "ResourceGroupId"):  # a selector instead
        del body["InstanceIds"]
        if field == "ResourceGroupId":
            body[field] = value
            return body, "$.ResourceGroupId"
        inner = field.rsplit(".", 1)[1]
        body["Tags"] = [{"Key": "team", "Value": "ops", inner: value}]
        return body, f"$.Tags[0].{inner}"
    elif field == "Parameters{}":
        body["Parameters"] = {value: "v"}
        return body, "$.Parameters"
    elif field == "Parameters{}=":
        body["Parameters"] = {"p": value}
        return body, "$.Parameters.p"
    elif "." in field:
        outer, inner = field.split(".")
        body[outer] = {inner: value}
    else:
        body[field] = value
    return body, f"$.{field}"


def test_every_string_field_of_the_schema_has_a_valid_value_here() -> None:
    assert string_fields(SCHEMA) == set(VALID)
    for field, value in VALID.items():
        parse_request(body_with(field, value)[0])  # valid as it is


@given(field=st.sampled_from(sorted(set(VALID) - FREE_TEXT)),
       control=st.sampled_from(CONTROL) | st.just("\n"),
       where=st.sampled_from(["end", "start", "middle"]))
@settings(max_examples=600, deadline=None)
def test_a_control_character_in_any_string_field_is_refused_at_its_path(
        field: str, control: str, where: str) -> None:
    from tests.reliability.conftest import COUNTS

    COUNTS["string fields given a control character"] += 1
    value = VALID[field]
    value = {"end": value + control, "start": control + value,
             "middle": value[:2] + control + value[2:]}[where]
    body, path = body_with(field, value)
    with pytest.raises(RequestInvalidError) as info:
        parse_request(json.dumps(body))
    assert path in [v.path for v in info.value.violations], info.value.to_dict()


@pytest.mark.parametrize("field", sorted(FREE_TEXT))
def test_scripts_and_parameter_values_are_multi_line_text(field: str) -> None:
    value = VALID[field] + "\nsecond line\n"
    parse_request(body_with(field, value)[0])


@pytest.mark.parametrize(("extra", "path"), [
    ({"RegionId": "cn-hangzhou\n"}, "$.RegionId"),
    ({"Output": {"Bucket": "assistflow-results\n"}}, "$.Output.Bucket"),
    ({"Notify": {"Queue": "assistflow-notify\n"}}, "$.Notify.Queue"),
    ({"ClientToken": "token\n"}, "$.ClientToken"),
])
def test_the_reported_values_are_400_at_the_webhook_and_nothing_is_created(
        endpoints: Endpoints, extra: dict[str, Any], path: str) -> None:
    before = created(endpoints)
    status, body = endpoints.post({**CONTENT, **extra})
    assert status == 400, body
    assert [e["path"] for e in body["Errors"]] == [path]
    assert "control character" in body["Errors"][0]["message"]
    assert created(endpoints) == before
