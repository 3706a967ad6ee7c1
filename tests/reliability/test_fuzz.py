"""Fuzzing the request schema and the webhook adapter: bad input is refused cleanly, always.

Thousands of generated and mutated bodies go through ``parse_request`` and through the real
submit_http handler (in-process, with the environment the function host gives it, against the
session's local cloud). Every answer must be a 4xx with a well-formed error — never a 5xx,
never a crash, never a command created.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.cloud import LocalCloud
from shared import webhook
from shared.errors import RequestInvalidError
from shared.request import SCHEMA, parse_request
from tests.functional.test_submit import created
from tests.localcloud import Endpoints

VALID: dict[str, Any] = {"Type": "RunShellScript", "CommandContent": "echo fuzz",
                         "InstanceIds": ["i-local00000000000001"]}
FIELDS = sorted(SCHEMA["properties"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)


def _wrong_for(field: str, value: Any) -> bool:
    """Is ``value`` of a type the schema refuses for ``field``? (A request's integer is an
    integer literal: 60.0 is refused for Timeout, as Cloud Assistant would.)"""
    if field == "Timeout":
        return not isinstance(value, int) or isinstance(value, bool)
    if field == "InstanceIds":
        return not isinstance(value, list)
    return not isinstance(value, (str, dict))


@st.composite
def broken_requests(draw: st.DrawFn) -> Any:
    """A valid request with at least one change that must make it invalid."""
    body = dict(VALID)
    mutation = draw(st.sampled_from([
        "wrong type", "unknown field", "drop required", "bad instance", "bad enum",
        "out of range", "not an object", "control character"]))
    if mutation == "wrong type":
        field = draw(st.sampled_from(["Type", "CommandContent", "InstanceIds", "Timeout", "Name",
                                      "Parameters", "Output", "Notify"]))
        body[field] = draw(json_values.filter(lambda v: _wrong_for(field, v)))
    elif mutation == "unknown field":
        name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in FIELDS))
        body[name] = draw(json_values)
    elif mutation == "drop required":
        body.pop(draw(st.sampled_from(["InstanceIds", "CommandContent", "Type"])))
    elif mutation == "bad instance":
        body["InstanceIds"] = [draw(st.text(max_size=30).filter(
            lambda t: not (t.startswith("i-") and t[2:].isalnum() and t[2:].islower()
                           and 8 <= len(t) - 2 <= 30)))]
    elif mutation == "bad enum":
        field = draw(st.sampled_from(["Type", "ContentEncoding", "RepeatMode", "OnIneligible"]))
        allowed = SCHEMA["properties"][field]["enum"]
        body[field] = draw(st.text(max_size=20).filter(lambda v: v not in allowed))
    elif mutation == "control character":  # Python's $ took a trailing newline (issue 13)
        field = draw(st.sampled_from(["Name", "WorkingDir", "Username", "RegionId",
                                      "ClientToken", "Description"]))
        body[field] = "value" + draw(st.sampled_from(["\n", "\r", "\x1b", "\x00", "\x85"]))
    elif mutation == "out of range":
        body["Timeout"] = draw(st.integers().filter(lambda n: n < 10 or n > 86400))
    else:
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    return body


@given(body=broken_requests())
@settings(max_examples=1500, deadline=None)
def test_every_broken_request_is_refused_with_well_formed_violations(body: Any) -> None:
    from tests.reliability.conftest import COUNTS

    COUNTS["bodies fuzzed (schema)"] += 1
    with pytest.raises(RequestInvalidError) as info:
        parse_request(json.dumps(body))
    error = info.value.to_dict()
    assert error["Code"] == "InvalidRequest" and error["Errors"]
    for item in error["Errors"]:
        assert item["path"].startswith("$") and item["rule"] and item["message"]


@given(raw=st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    from tests.reliability.conftest import COUNTS

    COUNTS["bodies fuzzed (bytes)"] += 1
    with pytest.raises(RequestInvalidError):
        parse_request(raw)


@pytest.fixture(scope="module")
def submit_http(cloud: LocalCloud) -> Iterator[Any]:
    """The real webhook handler, in this process, with the environment the host gives it."""
    runtime = cloud.host.runtimes["assistflow-submit-http"]  # type: ignore[union-attr]
    saved = dict(os.environ)
    os.environ.update(runtime.environment)
    import functions.submit_http.index as handler_module

    yield handler_module.handler
    os.environ.clear()
    os.environ.update(saved)


def http_event(body: bytes, headers: dict[str, str]) -> bytes:
    return json.dumps({"version": "v1", "rawPath": "/", "body": body.decode("latin-1"),
                       "isBase64Encoded": False, "headers": headers, "queryParameters": {},
                       "requestContext": {"requestId": "fuzz", "http": {"method": "POST",
                                                                        "path": "/"}}}).encode()


class FuzzContext:
    """What the handler reads of the FC context."""

    request_id = "fuzz"


def test_the_webhook_handler_answers_every_fuzzed_delivery_with_a_4xx(
        submit_http: Any, endpoints: Endpoints) -> None:
    from tests.reliability.conftest import COUNTS

    before = created(endpoints)
    statuses: Counter[int] = Counter()
    secret = endpoints["webhook_secret"]

    @given(body=broken_requests() | json_values, sign=st.sampled_from(["good", "bad", "none"]),
           media=st.sampled_from(["application/json", "text/plain", ""]))
    @settings(max_examples=1200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def deliver(body: Any, sign: str, media: str) -> None:
        raw = json.dumps(body).encode()
        headers = {"Content-Type": media} if media else {}
        if sign == "good":
            headers.update(webhook.sign(secret, raw))
        elif sign == "bad":
            headers.update(webhook.sign("not-the-secret", raw))
        response = submit_http(http_event(raw, headers), FuzzContext())
        statuses[response["statusCode"]] += 1
        COUNTS["webhook deliveries fuzzed"] += 1
        assert 400 <= response["statusCode"] < 500, response
        answer = json.loads(response["body"])
        assert answer["Code"] and answer["Message"], answer

    deliver()
    assert created(endpoints) == before, "a fuzzed delivery created something"
    assert statuses[400] and statuses[401]  # the fuzz reached validation and authentication
