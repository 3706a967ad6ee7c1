"""Issue 13, item 6: bad input is a 4xx, never a 5xx, and no answer carries a trace or a path.

Before the signature is checked, a 5000-digit ``X-Assistflow-Timestamp``, a timestamp of ``²``
(``str.isdigit`` is true, ``int`` refuses it) and a non-ASCII signature were answered 502 with
the exception text: each must be 401. After it, JSON nested 1000 deep, a 5000-digit integer and
a lone surrogate were 502 with the delivery's claim left taken: each must be 400 with the
violation, the claim released (the same delivery, corrected or not, is not a replay). Every
delivery goes through the real HTTP trigger of the local function host; the last test makes the
handler itself fail, in process, to show a defect is answered without its trace.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.cloud import LocalCloud
from shared import webhook
from tests.functional.test_submit import created
from tests.localcloud import Endpoints, get_object

REPO = str(Path(__file__).resolve().parents[2])
LINUX = "i-local00000000000001"
VALID = ('{"Type": "RunShellScript", "CommandContent": "echo no-5xx", '
         f'"InstanceIds": ["{LINUX}"]')


def deliver(endpoints: Endpoints, body: bytes, headers: dict[str, str] | None = None,
            signed: bool = True) -> tuple[int, str]:
    """POST through the webhook's real HTTP trigger; (status, answer text)."""
    status, raw = webhook.post(endpoints["webhook_url"], endpoints["webhook_secret"], body,
                               headers=headers, signed=signed, timeout=30, use_env_proxy=False)
    return status, raw.decode("utf-8")


def assert_clean(answer: str) -> dict[str, Any]:
    """The one refusal shape, and nothing of the code behind it."""
    for leak in ("Traceback", "stackTrace", 'File "', ".py", REPO, "site-packages"):
        assert leak not in answer, (leak, answer)
    body: dict[str, Any] = json.loads(answer)
    assert body["Code"] and body["Message"] and body["RequestId"].startswith("r-"), body
    return body


def marker(endpoints: Endpoints, body: bytes, timestamp: int) -> bytes | None:
    """The replay claim of the delivery signed at ``timestamp``, if it is taken."""
    digest = hmac.new(endpoints["webhook_secret"].encode(), f"{timestamp}.".encode() + body,
                      hashlib.sha256).hexdigest()
    return get_object(endpoints.bucket(), f"webhook-deliveries/{digest}")


UNSIGNED = [
    ("5000-digit timestamp", {webhook.TIMESTAMP_HEADER: "1" * 5000}),
    ("timestamp ²", {webhook.TIMESTAMP_HEADER: "²"}),
    ("non-ASCII signature", {webhook.SIGNATURE_HEADER: "sha256=" + "é" * 64}),
    ("non-ASCII signature, short", {webhook.SIGNATURE_HEADER: "sha256=é"}),
]


@pytest.mark.parametrize(("name", "headers"), UNSIGNED, ids=[u[0] for u in UNSIGNED])
def test_malformed_signature_headers_are_401(endpoints: Endpoints, tally: Any, name: str,
                                             headers: dict[str, str]) -> None:
    body = (VALID + "}").encode()
    before = created(endpoints)
    status, answer = deliver(endpoints, body, headers)
    tally["bad headers delivered (401)"] += 1
    assert status == 401, (name, answer)
    assert assert_clean(answer)["Code"] == "Unauthorized"
    assert created(endpoints) == before


BAD_BODIES = [
    ("JSON nested 1000 deep", "[" * 1000 + "]" * 1000, "$", "maxDepth"),
    ("a field nested 1000 deep", VALID + ', "Parameters": {"a": ' + "[" * 1000 + "]" * 1000
     + "}}", "$", "maxDepth"),
    ("a field nested 500 deep", VALID + ', "Parameters": {"a": ' + "[" * 500 + "]" * 500
     + "}}", "$.Parameters.a" + "[0]" * 14, "maxDepth"),
    ("a 5000-digit integer", VALID + ', "Timeout": ' + "9" * 5000 + "}", "$", "json"),
    ("a 5000-digit negative integer", VALID + ', "Timeout": -' + "9" * 5000 + "}", "$", "json"),
    ("a number beyond a double", VALID + ', "Timeout": 1e400}', "$", "json"),
    ("NaN", VALID + ', "Timeout": NaN}', "$", "json"),
    ("a lone surrogate in Name", VALID + ', "Name": "x\\ud800"}', "$.Name", "unicode"),
    ("a lone surrogate in the script",
     '{"Type": "RunShellScript", "CommandContent": "echo \\udfff", '
     f'"InstanceIds": ["{LINUX}"]}}', "$.CommandContent", "unicode"),
    ("a lone surrogate in a key", VALID + ', "\\ud83d": 1}', "$.\\ud83d", "unicode"),
    ("a lone surrogate in a parameter", VALID + ', "Parameters": {"a": "\\udc00"}}',
     "$.Parameters.a", "unicode"),
]


@pytest.mark.parametrize(("name", "text", "path", "rule"), BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
def test_unreadable_bodies_are_400_with_the_violation_and_the_claim_released(
        endpoints: Endpoints, tally: Any, name: str, text: str, path: str, rule: str) -> None:
    body = text.encode("ascii")
    before = created(endpoints)
    timestamp = int(time.time())
    headers = webhook.sign(endpoints["webhook_secret"], body, timestamp)
    status, answer = deliver(endpoints, body, headers)
    tally["unreadable bodies delivered (400)"] += 1
    assert status == 400, (name, answer)
    refusal = assert_clean(answer)
    assert [(e["path"], e["rule"]) for e in refusal["Errors"]] == [(path, rule)], refusal
    assert marker(endpoints, body, timestamp) is None, "the delivery's claim is still taken"
    again, answer = deliver(endpoints, body, headers)  # the same signed delivery once more
    assert again == 400, answer  # not 401: it was never accepted, so it is no replay
    assert created(endpoints) == before


@pytest.fixture
def failing_dispatch(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The webhook handler in this process, its dispatch failing like a defect would — with a
    message that names an internal path."""
    from tests.reliability.test_fuzz import FuzzContext

    runtime = cloud.host.runtimes["assistflow-submit-http"]  # type: ignore[union-attr]
    for name, value in runtime.environment.items():
        monkeypatch.setenv(name, value)

    def defect(*args: Any, **kwargs: Any) -> Any:
        raise KeyError(f"{REPO}/shared/dispatch.py: no such batch")

    monkeypatch.setattr("shared.intake.Intake.dispatch", defect)
    import functions.submit_http.index as handler_module

    yield lambda event: handler_module.handler(event, FuzzContext())


def test_a_defect_is_answered_500_without_its_trace_and_releases_the_claim(
        failing_dispatch: Any, endpoints: Endpoints) -> None:
    from tests.reliability.test_fuzz import http_event

    body = (VALID + "}").encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json",
               **webhook.sign(endpoints["webhook_secret"], body, timestamp)}
    response = failing_dispatch(http_event(body, headers))
    assert response["statusCode"] == 500
    refusal = assert_clean(response["body"])
    assert refusal["Code"] == "InternalError" and "no such batch" not in response["body"]
    assert marker(endpoints, body, timestamp) is None, "the claim is still taken"


def test_the_local_trigger_answers_an_uncaught_exception_as_fc_does_with_its_trace() -> None:
    """Why the handler must never let one escape: FC 3.0 answers 502 UnhandledInvocationError
    with the message and the stack trace (FC's "Error handling" for Python), and the local
    trigger is no kinder."""
    from local.host.http_trigger import map_response
    from local.host.runtime import Invocation

    trace = ['  File "/code/shared/request.py", line 1, in parse_request\n']
    response = map_response(Invocation("1-x", "submit", ok=False, duration_ms=1.0, error={
        "errorType": "ValueError", "errorMessage": "boom", "stackTrace": trace}))
    assert response.status_code == 502
    assert response.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert json.loads(response.get_data())["stackTrace"] == trace
