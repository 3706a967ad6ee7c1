"""Both signature schemes an ECS endpoint sees, and nonce replay protection.

RPC v1.0 is exercised by every other test through aliyunsdkcore; here are its documented test
vector, a replayed nonce, and ACS3-HMAC-SHA256 as the newer Tea SDKs
(``alibabacloud-ecs20140526``) send it: checked against a vector produced by
``alibabacloud_tea_openapi`` 0.4.6 itself, against a request signed here by hand, and — when
``ECS_TEA_PYTHON`` names a Python that has the Tea SDK installed — against the real SDK.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from local.emulators.ecs.signing import (
    acs3_canonical_request,
    acs3_signature,
    acs3_string_to_sign,
    rpc_signature,
    rpc_string_to_sign,
)
from tests.unit.test_ecs_emulator import AK, SECRET, STS_AK, STS_SECRET, STS_TOKEN, Ecs, start_ecs

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path) as driver:
        yield driver


def _send(url: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{url}/?{urlencode(query, quote_via=quote)}", data=b"",
                                 method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _rpc_query(action: str, nonce: str, **extra: str) -> dict[str, str]:
    query = {"Action": action, "Version": "2014-05-26", "Format": "JSON", "RegionId": "cn-hangzhou",
             "AccessKeyId": AK, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
             "SignatureType": "", "SignatureNonce": nonce, "Timestamp": "2026-11-26T00:00:00Z",
             **extra}
    query["Signature"] = rpc_signature(SECRET, rpc_string_to_sign("POST", query))
    return query


def _acs3_headers(host: str, action: str, query: dict[str, str], ak: str, secret: str,
                  token: str = "") -> dict[str, str]:
    """Signs as the Tea SDK does, written from the ACS3 specification (not from signing.py)."""
    headers = {"host": host, "x-acs-action": action, "x-acs-version": "2014-05-26",
               "x-acs-date": "2026-11-26T00:00:00Z", "x-acs-signature-nonce": uuid.uuid4().hex,
               "x-acs-content-sha256": EMPTY_SHA256, "accept": "application/json"}
    if token:
        headers["x-acs-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join([
        "POST", "/",
        "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query.items())),
        "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names), EMPTY_SHA256])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"ACS3-HMAC-SHA256 Credential={ak},SignedHeaders="
                                f"{';'.join(names)},Signature={signature}")
    return headers


# Strings whose every kind of byte the signature encodes: unreserved ones, the three the
# canonical query is made of ("%", "&", "="), other ASCII, and UTF-8 of 2, 3 and 4 bytes.
AWKWARD = ["", "i-local00000000000001", "a-b_c.d~e", "2026-11-30T12:00:00Z", "100%", "a&b=c",
           "%25&%26=%3D", "x y+z/*", "é", "中文", "😀", "\x00\x1f\x7f", "Bearer a/b+c==",
           "~!'()*", "InstanceId.100"]


def test_rpc_string_to_sign_encodes_as_quote_does() -> None:
    """The string to sign percent-encodes only the bytes that need it; the result is
    urllib.parse.quote's (safe "~"), applied to each name and value and again to the whole."""
    for value in AWKWARD:
        params = {"Action": "InvokeCommand", value or "Empty": value, "K" + value: "v"}
        canonical = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}"
                             for k, v in sorted(params.items()))
        assert rpc_string_to_sign("GET", params) == f"GET&%2F&{quote(canonical, safe='~')}"


def test_rpc_signature_matches_the_documented_test_vector() -> None:
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
              "SignatureMethod": "HMAC-SHA1",
              "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
              "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z",
              "Version": "2014-05-26"}
    assert rpc_signature("testsecret", rpc_string_to_sign("GET", params)) == \
        "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_acs3_signature_matches_the_tea_sdk() -> None:
    # Produced by alibabacloud_tea_openapi 0.4.6 Utils.get_authorization for this request.
    headers = {"host": "127.0.0.1:8080", "x-acs-version": "2014-05-26",
               "x-acs-action": "RunCommand", "x-acs-date": "2026-11-26T00:00:00Z",
               "x-acs-signature-nonce": "abc123", "accept": "application/json",
               "x-acs-content-sha256": EMPTY_SHA256}
    query = [("RegionId", "cn-hangzhou"), ("InstanceId.1", "i-1"),
             ("CommandContent", "echo 1 2"), ("Type", "RunShellScript")]
    canonical = acs3_canonical_request("POST", "/", query, headers, sorted(headers), b"")
    assert acs3_signature("testsecret", acs3_string_to_sign(canonical)) == \
        "503b5b3643ecc089168eb941ca3c41162008515f4ee4c36252a89c80f924f726"


def test_a_reused_signature_nonce_is_refused(ecs: Ecs) -> None:
    query = _rpc_query("DescribeCommands", "nonce-once")
    assert _send(ecs.server.url, query, {})[0] == 200
    status, body = _send(ecs.server.url, query, {})
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    assert {"RequestId", "HostId", "Code", "Message"} <= set(body)


def test_a_request_with_a_bad_signature_does_not_use_up_its_nonce(ecs: Ecs) -> None:
    forged = {**_rpc_query("DescribeCommands", "nonce-kept"), "Signature": base64.b64encode(
        b"x" * 20).decode()}
    assert _send(ecs.server.url, forged, {})[1]["Code"] == "SignatureDoesNotMatch"
    assert _send(ecs.server.url, _rpc_query("DescribeCommands", "nonce-kept"), {})[0] == 200


def test_an_acs3_signed_request_is_accepted(ecs: Ecs) -> None:
    query = {"RegionId": "cn-hangzhou", "Type": "RunShellScript", "CommandContent": "echo acs3",
             "InstanceId.1": "i-sim00001"}
    status, body = _send(ecs.server.url, query,
                         _acs3_headers(ecs.host, "RunCommand", query, AK, SECRET))
    assert status == 200, body
    assert body["InvokeId"].startswith("t-")


def test_an_acs3_request_with_sts_carries_the_token_as_a_header(ecs: Ecs) -> None:
    query = {"RegionId": "cn-hangzhou"}
    headers = _acs3_headers(ecs.host, "DescribeCommands", query, STS_AK, STS_SECRET, STS_TOKEN)
    assert _send(ecs.server.url, query, headers)[0] == 200
    headers = _acs3_headers(ecs.host, "DescribeCommands", query, STS_AK, STS_SECRET)
    assert _send(ecs.server.url, query, headers)[1]["Code"] == "InvalidSecurityToken.Mismatch"


def test_an_acs3_signature_over_other_parameters_does_not_match(ecs: Ecs) -> None:
    signed = {"RegionId": "cn-hangzhou", "CommandId": "c-1"}
    headers = _acs3_headers(ecs.host, "DescribeCommands", signed, AK, SECRET)
    status, body = _send(ecs.server.url, {**signed, "CommandId": "c-2"}, headers)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:ACS3-HMAC-SHA256\n" in body["Message"]


TEA_CLIENT = textwrap.dedent("""
    import json, sys
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_ecs20140526 import models
    from alibabacloud_tea_openapi.models import Config
    endpoint, ak, secret, token = sys.argv[1:5]
    client = Client(Config(access_key_id=ak, access_key_secret=secret,
                           security_token=token or None, region_id="cn-hangzhou",
                           endpoint=endpoint, protocol="http"))
    run = client.run_command(models.RunCommandRequest(
        region_id="cn-hangzhou", type="RunShellScript", command_content="echo {{who}}",
        enable_parameter=True, parameters={"who": "tea"}, instance_id=["i-sim00001"]))
    status = client.describe_cloud_assistant_status(models.DescribeCloudAssistantStatusRequest(
        region_id="cn-hangzhou", instance_id=["i-sim00001"]))
    print(json.dumps({"InvokeId": run.body.invoke_id, "Status": status.body.to_map()}))
""")


@pytest.mark.parametrize("sts", [False, True])
def test_the_tea_sdk_works_unchanged(ecs: Ecs, sts: bool) -> None:
    creds = [STS_AK, STS_SECRET, STS_TOKEN] if sts else [AK, SECRET, ""]
    done = subprocess.run([sys.executable, "-c", TEA_CLIENT,
                           ecs.host, *creds], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["InvokeId"].startswith("t-")
    [status] = answer["Status"]["InstanceCloudAssistantStatusSet"]["InstanceCloudAssistantStatus"]
    assert status["CloudAssistantStatus"] == "true"
