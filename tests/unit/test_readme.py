"""The README's promises match the code: the request reference, the CLI, the exit codes.

The request table in "Contracts" must list every property of the schema (nested ones as
``Output.Bucket``, those of an array's items as ``Tags.Key``) with a rule that states the
schema's limits and allowed values, so the reference cannot fall behind the one definition of
a valid request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from local.cli import build_parser, common
from shared.request import MAX_CONTENT_B64, SCHEMA

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
LIMITS = ("minimum", "maximum", "maxLength", "maxItems", "maxProperties")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def request_table() -> dict[str, str]:
    """``field -> its whole row`` of the request reference in Contracts."""
    rows = {}
    for line in section("Contracts").splitlines():
        found = re.match(r"\|\s*`([A-Za-z.]+)`\s*\|(.*)\|\s*$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def properties(schema: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every property, nested ones as ``Output.Bucket``, and those of an array's objects as
    ``Tags.Key``."""
    out = {}
    for name, sub in schema.get("properties", {}).items():
        out[prefix + name] = sub
        out.update(properties(sub, f"{prefix}{name}."))
        out.update(properties(sub.get("items", {}), f"{prefix}{name}."))
    return out


FIELDS = properties(SCHEMA)


def test_every_schema_property_has_a_row_and_nothing_else_does() -> None:
    rows = request_table()
    assert set(rows) == set(FIELDS), (sorted(set(FIELDS) - set(rows)),
                                      sorted(set(rows) - set(FIELDS)))


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_row_states_the_schemas_rule(field: str) -> None:
    row, schema = request_table()[field], FIELDS[field]
    kind, rule = (cell.strip() for cell in row.split("|", 1))
    expected = schema.get("type") or "string"  # the enums are all strings
    if isinstance(expected, list):  # a number or a percentage: "integer or string"
        expected = " or ".join(expected)
    assert kind == expected, field
    for value in schema.get("enum", []):
        assert f"`{value}`" in row, (field, value)
    for keyword in LIMITS:
        if keyword in schema:
            limit = schema[keyword]
            assert str(limit) in row or (limit == 1 and "one" in row), (field, keyword, limit)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "maxLength" in extra:  # Parameters' values
        assert str(extra["maxLength"]) in row
    assert len(rule) > 10, field  # a rule, not a placeholder


def test_the_encoded_script_limit_is_stated() -> None:
    assert f"{MAX_CONTENT_B64} bytes" in request_table()["CommandContent"]


def test_the_assistflow_command_section_covers_every_subcommand_and_exit_code() -> None:
    text = section("The assistflow command")
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None
    for command in choices:
        assert f"| `{command}" in text, command
    for code, name in ((0, "EXIT_OK"), (1, "EXIT_FAILED"), (2, "EXIT_USAGE"),
                       (3, "EXIT_INVALID"), (4, "EXIT_REFUSED"), (5, "EXIT_CLOUD")):
        assert getattr(common, name) == code
        assert f"\n| {code} | " in text
        assert f"\n  {code}  " in common.EXIT_CODES_HELP


def test_deploying_names_every_parameter_a_user_must_set() -> None:
    text = section("Deploying to Alibaba Cloud")
    for parameter in ("CodeBucket", "ResultsBucketName", "WebhookSecret", "MaintenanceSchedule",
                      "MaintenancePayload", "AllowedInstances"):
        assert f"`{parameter}`" in text and f"ParameterKey {parameter}" in text, parameter
    assert "aliyun ros CreateStack" in text and "assistflow package" in text
    assert "## Checking the template" in README
