"""FC's invoke API on the host, through the unchanged aliyun-fc2 client; timeouts; environment.

tests/fixtures/host/api.yml.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import fc2
import pytest
from fc2.fc_exceptions import FcError

from local.host.template import Template, TemplateError
from tests.fixtures.host.harness import HERE, HostHarness


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostHarness]:
    os.environ["LEAKED_SECRET"] = "the developer's own environment"
    try:
        harness = HostHarness(tmp_path_factory.mktemp("api"), "api.yml",
                              {"Greeting": "hi there"}, async_retries=2,
                              async_retry_delay=0.05)
        with harness:
            yield harness
    finally:
        os.environ.pop("LEAKED_SECRET", None)
    assert harness.leftover_threads == []  # stop() ended every thread the host started


def _error(exc: FcError) -> dict[str, str]:
    body: dict[str, str] = json.loads(exc.message)
    return body


# --- sync and async through fc2 -----------------------------------------------------------------
def test_sync_invoke_returns_the_result_and_a_request_id(api: HostHarness) -> None:
    response = api.fc().invoke_function("any-service", "text", payload=b"ignored")
    assert response.data == b"plain text result"
    assert response.headers["x-fc-request-id"].startswith("1-")
    assert int(response.headers["x-fc-invocation-duration"]) >= 1
    # a dict result is JSON; the service name (and a qualifier) do not matter
    result = api.fc().invoke_function("apitest", "apitest-echo", payload=b'{"k": 1}',
                                      qualifier="LATEST")
    assert json.loads(result.data)["event"] == '{"k": 1}'


def test_a_function_error_is_reported_as_fc_does(api: HostHarness) -> None:
    with pytest.raises(FcError) as caught:
        api.fc().invoke_function("svc", "fail", payload=b"{}")
    assert caught.value.status_code == 200  # the API call worked; the function did not
    body = _error(caught.value)
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "boom: this function always fails"
    assert any("handlers.py" in line for line in body["stackTrace"])
    assert caught.value.request_id.startswith("1-")


def test_async_invoke_answers_202_and_runs_in_the_background(api: HostHarness) -> None:
    response = api.fc().invoke_function("svc", "record", payload=b'{"async": true}',
                                        headers={"x-fc-invocation-type": "Async"})
    assert response.data == b""
    request_id = response.headers["x-fc-request-id"]
    runs = api.wait_recorded("record", 1)
    assert [r["request_id"] for r in runs] == [request_id]
    assert runs[0]["event"] == '{"async": true}'


def test_a_failing_async_invocation_is_retried_with_the_same_request_id(api: HostHarness) -> None:
    before = len(api.recorded("fail"))
    response = api.fc().invoke_function("svc", "fail", payload=b"{}",
                                        headers={"x-fc-invocation-type": "Async"})
    request_id = response.headers["x-fc-request-id"]
    runs = api.wait_recorded("fail", before + 3)[before:]  # 1 try + async_retries=2
    assert {r["request_id"] for r in runs} == {request_id}
    time.sleep(0.3)
    assert len(api.recorded("fail")) == before + 3


def test_signatures_are_verified_with_the_local_keys(api: HostHarness) -> None:
    with pytest.raises(FcError) as caught:
        api.fc(secret="not-the-secret").invoke_function("svc", "text")
    assert caught.value.status_code == 403 and caught.value.err_code == "SignatureNotMatch"
    with pytest.raises(FcError) as caught:
        api.fc(access_key_id="LTAIunknown").invoke_function("svc", "text")
    assert caught.value.err_code == "InvalidAccessKeyID"
    # the functions' STS pair works with its token, and not without
    keys = api.keys
    sts = api.fc(keys.sts_access_key_id, keys.sts_access_key_secret, keys.security_token)
    assert sts.invoke_function("svc", "text").data == b"plain text result"
    with pytest.raises(FcError) as caught:
        api.fc(keys.sts_access_key_id, keys.sts_access_key_secret).invoke_function("svc", "text")
    assert caught.value.err_code == "InvalidSecurityToken"


def test_an_unknown_function_is_404(api: HostHarness) -> None:
    with pytest.raises(FcError) as caught:
        api.fc().invoke_function("svc", "nope")
    assert caught.value.status_code == 404 and caught.value.err_code == "FunctionNotFound"


# --- timeouts -----------------------------------------------------------------------------------
def test_timeout_is_enforced_recorded_and_the_next_invocation_works(api: HostHarness) -> None:
    started = time.monotonic()
    with pytest.raises(FcError) as caught:
        api.fc().invoke_function("svc", "slow", payload=b'{"seconds": 5}')
    assert time.monotonic() - started < 3  # Timeout is 1 s, not the 5 s the function wanted
    body = _error(caught.value)
    assert body["errorType"] == "FunctionTimeout"
    assert body["errorMessage"] == "Function timed out after 1 seconds"
    record = next(r for r in api.invocations() if r["request_id"] == caught.value.request_id)
    assert record["ok"] is False and record["error"] == "FunctionTimeout"
    assert 1000 <= record["duration_ms"] < 2500  # the billed time stops at the timeout
    # the host and the function survive: the next invocation runs on a fresh instance
    response = api.fc().invoke_function("svc", "slow", payload=b'{"seconds": 0}')
    assert json.loads(response.data) == {"slept": 0.0}
    pids = [r["pid"] for r in api.recorded("slow")]
    assert len(set(pids)) == 2  # the timed-out instance was killed


def test_every_invocation_records_its_duration(api: HostHarness) -> None:
    response = api.fc().invoke_function("svc", "text")
    request_id = response.headers["x-fc-request-id"]
    record = next(r for r in api.invocations() if r["request_id"] == request_id)
    assert record["function"] == "text" and record["ok"] is True
    assert record["duration_ms"] >= 0 and "cold" in record and "at" in record


# --- environment and logs -----------------------------------------------------------------------
def test_environment_is_the_templates_plus_fcs_system_variables(api: HostHarness) -> None:
    result = json.loads(api.fc().invoke_function("svc", "apitest-echo").data)
    env, context = result["env"], result["context"]
    assert env["APP_QUEUE"] == "apitest-queue"  # Fn::GetAtt, Fn::Sub of a parameter
    assert env["APP_QUEUE_ARN"] == "acs:mns:cn-hangzhou:1234567890123456:queues/apitest-queue"
    assert env["APP_GREETING"] == "hi there, cn-hangzhou"  # overridden parameter, pseudo param
    assert env["APP_JOINED"] == "a/apitest/c"
    assert env["FC_FUNCTION_NAME"] == "apitest-echo"
    assert env["FC_FUNCTION_HANDLER"] == "handlers.echo"
    assert env["FC_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["FC_TIMEOUT"] == "7"
    assert env["FC_REGION"] == "cn-hangzhou" and env["FC_ACCOUNT_ID"] == "1234567890123456"
    assert env["FC_INSTANCE_ID"].startswith("local-apitest-echo-")
    assert env["FC_VER_ID"] == "LATEST" and env["FC_RUNTIME"] == "python3.10"
    assert env["ALIBABA_CLOUD_ACCESS_KEY_ID"] == api.keys.sts_access_key_id
    assert env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] == api.keys.sts_access_key_secret
    assert env["ALIBABA_CLOUD_SECURITY_TOKEN"] == api.keys.security_token
    assert "LEAKED_SECRET" not in env  # the developer's environment stays out
    assert context == {"request_id": context["request_id"], "function": "apitest-echo",
                       "memory": 256, "timeout": 7, "region": "cn-hangzhou",
                       "account_id": "1234567890123456"}


def test_function_logs_carry_the_request_id(api: HostHarness,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="assistflow.fn")
    response = api.fc().invoke_function("svc", "apitest-echo")
    request_id = response.headers["x-fc-request-id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
        if len(lines) >= 3:
            break
        time.sleep(0.05)
    assert any(f"{request_id} [INFO] echo for {request_id}" in line for line in lines)
    assert any(f"FC Invoke Start RequestId: {request_id}" in line for line in lines)
    assert any(f"FC Invoke End RequestId: {request_id}" in line for line in lines)


def test_reserved_environment_names_are_refused(tmp_path: Path) -> None:
    template = (HERE / "api.yml").read_text().replace("APP_JOINED:", "FC_MINE:") \
        .replace("CodeDir: functions", f"CodeDir: {HERE / 'functions'}")
    path = tmp_path / "reserved.yml"
    path.write_text(template)
    with pytest.raises(TemplateError, match="FC_ prefix is reserved"):
        Template.load(path).functions()


def test_fc2_is_the_unchanged_client() -> None:
    assert fc2.__version__ == "2.5.2"
