"""The command request: its schema, its validation and its typed form.

``schemas/command-request.v1.json`` is the only definition of a valid request; it is compiled
once, at import. ``parse_request`` returns a ``CommandRequest`` or raises
``RequestInvalidError`` carrying *every* violation, each with its JSON path and a message that
says what to do.

>>> req = parse_request(b'{"Type": "RunShellScript", "CommandContent": "echo 123",'
...                     b' "InstanceIds": ["i-local00000000000001"]}')
>>> req.content_b64
'ZWNobyAxMjM='
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from jsonschema.exceptions import ValidationError

from shared import strict_json
from shared.errors import RequestInvalidError, Violation
from shared.ratecontrol import RateControl

SCHEMA_VERSION = 1
SCHEMA: dict[str, Any] = json.loads(
    resources.files("shared").joinpath("schemas/command-request.v1.json").read_text("utf-8"))
# The file is checked against its metaschema by the tests (tests/unit/test_request.py), not
# here: check_schema cost 35-42 ms of every cold start of a submit function (measured).
# JSON Schema's own semantics: ECMA-262 patterns, integers written as integers (strict_json)
_VALIDATOR = strict_json.Validator(SCHEMA)

MAX_CONTENT_B64 = 24 * 1024  # Cloud Assistant's limit on the Base64-encoded script
DEFAULT_TIMEOUT = 60


@dataclass(frozen=True)
class OutputLocation:
    bucket: str = ""  # empty: the deployment's results bucket
    prefix: str = ""  # empty: the deployment's results prefix


@dataclass(frozen=True)
class NotifyTarget:
    url: str = ""
    queue: str = ""
    topic: str = ""


@dataclass(frozen=True)
class CommandRequest:
    """A validated command request (field meanings: the schema's descriptions)."""

    instance_ids: tuple[str, ...]  # listed, or (once the intake resolved them) selected
    type: str = ""  # empty only with command_id (the saved command knows its type)
    content_b64: str = ""  # empty when command_id names a saved command
    command_id: str = ""
    name: str = "assistflow"
    description: str = ""
    working_dir: str = ""
    timeout: int | None = None  # None: the saved command's, or DEFAULT_TIMEOUT
    username: str = ""
    parameters: tuple[tuple[str, str], ...] = ()
    # Parameters was sent (even {}): Cloud Assistant's EnableParameter, so {{name}} and the
    # {{ACS::…}} built-ins are replaced; without it the script runs exactly as written
    enable_parameter: bool = False
    repeat_mode: str = "Once"
    frequency: str = ""
    region: str = ""
    client_token: str = ""
    skip_ineligible: bool = False
    output: OutputLocation = field(default_factory=OutputLocation)
    notify: NotifyTarget | None = None
    # The selector (instead of InstanceIds): every tag must match, and the resource group
    tags: tuple[tuple[str, str], ...] = ()
    resource_group_id: str = ""

    @property
    def selector(self) -> bool:
        """The instances are named by Tags / ResourceGroupId (``shared.targets`` resolves
        them into ``instance_ids``)."""
        return bool(self.tags or self.resource_group_id)

    @property
    def selector_path(self) -> str:
        """Where a selected instance came from, for the ``path`` of an error naming it (it has
        no path of its own in the request)."""
        return "$.Tags" if self.tags else "$.ResourceGroupId"
    dry_run: bool = False  # DryRun: the plan and each target's verdict, nothing created
    rate_control: RateControl | None = None  # RateControl: waves and an error budget

    @property
    def content(self) -> str:
        return base64.b64decode(self.content_b64).decode("utf-8", errors="replace")

    @property
    def adhoc(self) -> bool:
        """Content sent with the request: the command exists only for this run."""
        return not self.command_id

    @property
    def periodic(self) -> bool:
        return self.repeat_mode != "Once"


def parse_request(body: bytes | str | dict[str, Any]) -> CommandRequest:
    """Validate ``body`` (JSON text or an already parsed object) into a ``CommandRequest``."""
    document = _load(body)
    unreadable = strict_json.text_violations(document)
    if unreadable:  # nothing else is looked at: no check may trip over these values
        raise RequestInvalidError(unreadable)
    if not isinstance(document, dict):
        raise RequestInvalidError([Violation("$", "type", "the request must be a JSON object "
                                             f"(got {type(document).__name__})")])
    violations = [v for error in _VALIDATOR.iter_errors(document) for v in _violation(error)]
    if not violations:
        violations = _semantic_checks(document)
    if violations:
        unique = {(v.path, v.rule, v.message): v for v in violations}
        raise RequestInvalidError(sorted(unique.values(), key=lambda v: (v.path, v.rule)))
    content = document.get("CommandContent", "")
    if content and document.get("ContentEncoding", "PlainText") == "PlainText":
        content = base64.b64encode(content.encode("utf-8")).decode("ascii")
    output = document.get("Output") or {}
    notify = document.get("Notify")
    return CommandRequest(
        instance_ids=tuple(document.get("InstanceIds", ())),
        type=document.get("Type", ""),
        content_b64=content,
        command_id=document.get("CommandId", ""),
        name=document.get("Name") or "assistflow",
        description=document.get("Description", ""),
        working_dir=document.get("WorkingDir", ""),
        timeout=document.get("Timeout"),
        username=document.get("Username", ""),
        parameters=tuple(sorted((document.get("Parameters") or {}).items())),
        enable_parameter="Parameters" in document,
        repeat_mode=document.get("RepeatMode", "Once"),
        frequency=document.get("Frequency", ""),
        region=document.get("RegionId", ""),
        client_token=document.get("ClientToken", ""),
        skip_ineligible=document.get("OnIneligible", "Refuse") == "Skip",
        output=OutputLocation(output.get("Bucket", ""), output.get("Prefix", "")),
        notify=NotifyTarget(notify.get("Url", ""), notify.get("Queue", ""),
                            notify.get("Topic", "")) if notify else None,
        tags=tuple((tag["Key"], tag["Value"]) for tag in document.get("Tags", ())),
        resource_group_id=document.get("ResourceGroupId", ""),
        dry_run=document.get("DryRun") is True,
        rate_control=_rate_control(document.get("RateControl")),
    )


def _rate_control(value: dict[str, Any] | None) -> RateControl | None:
    if not value:
        return None
    return RateControl(value.get("MaxConcurrency"), value.get("MaxErrors"))


def _load(body: bytes | str | dict[str, Any]) -> Any:
    """The body as JSON data, or ``RequestInvalidError`` for anything that is not JSON (or
    that Python's json would read beyond JSON: ``shared.strict_json``)."""
    if isinstance(body, dict):
        return body
    try:
        return strict_json.loads(body)
    except (ValueError, RecursionError) as exc:
        violation = strict_json.load_violation(exc)
        if violation is None:
            raise
        raise RequestInvalidError([violation]) from None


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


CROSS_FIELD = {
    "Frequency": "a Period invocation needs a Frequency, e.g. rate(5m) or a cron expression",
    "RepeatMode": "a Frequency is only used with RepeatMode Period; add RepeatMode: Period",
}


def _violation(error: ValidationError) -> list[Violation]:
    """Turn one schema error into violations whose messages say what to do."""
    path = _path(error.absolute_path)
    rule = str(error.validator)
    value = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if rule == "required":
        missing = str(error.message).split("'")[1]
        field_path = f"{path}.{missing}"
        hint = CROSS_FIELD.get(missing) if "allOf" in error.schema_path else None
        return [Violation(field_path, rule, f"{missing} is required" + (f": {hint}" if hint else ""))]
    if rule == "dependentRequired":
        missing, _, given = str(error.message).partition(" is a dependency of ")
        missing, given = missing.strip("'"), given.strip("'")
        extra = f" ({', '.join(SCHEMA['properties'][missing]['enum'])})" \
            if "enum" in SCHEMA["properties"].get(missing, {}) else ""
        return [Violation(f"{path}.{missing}", "required",
                          f"{missing} is required when {given} is given{extra}")]
    if rule == "anyOf" and path == "$":  # no targets at all: reported as before selectors
        return [Violation("$.InstanceIds", "required",
                          "InstanceIds is required: name the instances, or select them with "
                          "Tags and/or ResourceGroupId")]
    if rule == "not" and path == "$":  # both ways of naming the targets
        return [Violation(path, "targets", "name the instances with InstanceIds, or select "
                          "them with Tags and/or ResourceGroupId, not both")]
    if rule == "oneOf":
        both = not error.context
        return [Violation(path, rule, "give either CommandContent (with Type) to run a script, or "
                          "CommandId to run a saved command" + (", not both" if both else ""))]
    if rule == "additionalProperties":
        known = set(schema.get("properties", {}))
        return [Violation(_path([*error.absolute_path, name]), rule,
                          f"unknown field {name!r}: remove it or fix its spelling (field names "
                          f"are case-sensitive; known fields: {', '.join(sorted(known))})", None)
                for name in sorted(set(value) - known)]
    field_name = path.rsplit(".", 1)[-1] if path != "$" else "the request"
    if rule == "enum":
        message = f"must be one of {', '.join(map(str, error.validator_value))}; got {value!r}"
    elif rule == "const":
        message = (f"must be {error.validator_value} here; got {value!r}"
                   + (f" ({CROSS_FIELD[field_name]})" if field_name in CROSS_FIELD else ""))
    elif rule == "type" and error.validator_value == "integer" and isinstance(value, float):
        message = (f"must be an integer written without a fraction or exponent (Cloud "
                   f"Assistant takes integers only); got {value!r}")
    elif rule == "type":
        message = f"must be of type {error.validator_value}; got {type(value).__name__}"
    elif rule == "pattern" and path == "$.Parameters":
        message = (f"has a parameter name {value!r} that is not 1-64 letters, digits, '_' or '-'")
    elif rule == "pattern" and isinstance(value, str) and _control(value):
        message = (f"must not contain control characters (newline, tab, escape …); "
                   f"{value!r} has {_control(value)!r}")
    elif rule == "pattern" and path.startswith("$.InstanceIds"):
        message = f"{value!r} is not an ECS instance id (they look like i-bp1a2b3c4d5e6f7g8h9i)"
    elif rule == "pattern" and path.startswith("$.Tags"):
        message = (f"{value!r} is not a tag {field_name.lower()} ECS takes: it must not start "
                   "with " + ("aliyun or acs:" if field_name == "Key" else "acs:")
                   + " nor contain http:// or https://")
    elif rule == "pattern" and path == "$.ResourceGroupId":
        message = f"{value!r} is not a resource group id (they look like rg-acfmxazb4ph6aiy)"
    elif rule == "pattern":
        message = f"{value!r} does not have the expected form ({error.validator_value})"
    elif rule in ("maxLength", "minLength"):
        message = f"must be {'at most' if rule == 'maxLength' else 'at least'} " \
                  f"{error.validator_value} characters long; got {len(value)}"
    elif rule in ("maximum", "minimum"):
        message = f"must be {'at most' if rule == 'maximum' else 'at least'} " \
                  f"{error.validator_value}; got {value}"
    elif rule in ("maxItems", "minItems"):
        message = f"must have {'at most' if rule == 'maxItems' else 'at least'} " \
                  f"{error.validator_value} items; got {len(value)}"
    elif rule in ("maxProperties", "minProperties") and path == "$.Notify":
        message = "takes exactly one of Url, Queue or Topic"
    elif rule in ("maxProperties", "minProperties"):
        message = f"must have {'at most' if rule == 'maxProperties' else 'at least'} " \
                  f"{error.validator_value} entries; got {len(value)}"
    elif rule == "uniqueItems":
        message = "must not list the same item twice"
    else:
        message = error.message
    value_out = value if isinstance(value, (str, int, float, bool)) or value is None else None
    return [Violation(path, rule, f"{field_name} {message}", value_out)]


def _control(text: str) -> str:
    """The first control character (C0, DEL or C1) in ``text``, '' if none."""
    return next((c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F), "")


def _semantic_checks(document: dict[str, Any]) -> list[Violation]:
    """Rules the schema cannot express: the encoded size and Base64 validity of the script,
    and an ``Output.Prefix`` that is a plain key path."""
    return _content_checks(document) + _prefix_checks((document.get("Output") or {})
                                                      .get("Prefix", "")) \
        + _tag_checks(document.get("Tags", ())) + _rate_control_checks(document)


def _tag_checks(tags: list[dict[str, str]]) -> list[Violation]:
    """Each tag key once: an instance carries one value per key, so two values for one key
    would select nothing."""
    seen: dict[str, int] = {}
    problems = []
    for index, tag in enumerate(tags):
        if tag["Key"] in seen:
            problems.append(Violation(f"$.Tags[{index}].Key", "uniqueKeys",
                                      f"Tags names the key {tag['Key']!r} twice (also at "
                                      f"$.Tags[{seen[tag['Key']]}]); an instance has one value "
                                      "per key", tag["Key"]))
        seen.setdefault(tag["Key"], index)
    return problems


def _rate_control_checks(document: dict[str, Any]) -> list[Violation]:
    """Waves need a run that ends: a periodic or reboot-bound invocation never finishes, so
    the next wave would never start."""
    if "RateControl" in document and document.get("RepeatMode", "Once") != "Once":
        return [Violation("$.RateControl", "repeatMode",
                          "RateControl rolls out a command that ends (RepeatMode Once); "
                          f"remove it or the RepeatMode {document['RepeatMode']!r}")]
    return []


def _prefix_checks(prefix: str) -> list[Violation]:
    """``Output.Prefix`` names a folder of keys: segments separated by ``/``, none of them
    empty, ``.`` or ``..``, and no control characters or backslashes — nothing another tool
    could read as a way out of the folder, or that would hide in a log line."""
    if not prefix:
        return []
    problems = []
    if _control(prefix):
        problems.append("has control characters")
    if "\\" in prefix:
        problems.append("has a backslash (separate folders with /)")
    segments = prefix.split("/")
    if "" in segments:
        problems.append("has an empty segment (//)")
    if any(segment in (".", "..") for segment in segments):
        problems.append("has a '.' or '..' segment")
    if not problems:
        return []
    return [Violation("$.Output.Prefix", "keyPath",
                      f"Output.Prefix {' and '.join(problems)}; give a folder like "
                      "results/team-a", prefix)]


def _content_checks(document: dict[str, Any]) -> list[Violation]:
    content = document.get("CommandContent")
    if content is None:
        return []
    if document.get("ContentEncoding") == "Base64":
        try:
            base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            return [Violation("$.CommandContent", "base64",
                              "CommandContent is not valid Base64; send plain text, or fix the "
                              "encoding (ContentEncoding is Base64)")]
        encoded_len = len(content)
    else:
        encoded_len = len(base64.b64encode(content.encode("utf-8")))
    if encoded_len > MAX_CONTENT_B64:
        return [Violation("$.CommandContent", "maxEncodedLength",
                          f"CommandContent is {encoded_len} bytes once Base64-encoded; Cloud "
                          f"Assistant accepts at most {MAX_CONTENT_B64}. Ship a shorter script "
                          "(e.g. one that downloads the rest)")]
    return []
