"""The lean RPC signer (``shared.clients.rpc_signing``) answers what aliyunsdkcore's own
``get_signed_url`` answers: the same URL and string to sign, byte for byte."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.utils import parameter_helper

from shared.clients import rpc_signing

# Every kind of byte the encoding treats differently: unreserved characters, "~" and "*" (the
# SDK's replacements), "+" and " " (quote_plus's), "%", "&", "=" and "/" (the second
# encoding's), other ASCII, and UTF-8 of 2, 3 and 4 bytes.
AWKWARD = ["", "i-local00000000000001", "a-b_c.d~e", "2026-11-30T12:00:00Z", "100%", "a&b=c",
           "%25&%26=%3D", "x y+z/*", "%7E~", "é", "中文", "😀", "\x00\x1f\x7f",
           "CAIS+/==", '["i-1","i-2"]', "~!'()*", "InstanceId.100"]


@pytest.fixture()
def fixed_stamp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK stamps each signature with the time and a random nonce: fix both."""
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: "2026-11-30T12:00:00Z")
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: "6c1b2f0e-1a2b-4c3d")
    yield


def _both(params: dict[str, Any], body: dict[str, Any], method: str = "GET"
          ) -> tuple[tuple[str, str], tuple[str, str]]:
    sdk = rpc_signing.sdk_own()(dict(params), "STS.key", "secret", "JSON", method, dict(body),
                                sha_hmac1)
    lean = rpc_signing.get_signed_url(dict(params), "STS.key", "secret", "JSON", method,
                                      dict(body), sha_hmac1)
    return sdk, lean


def test_awkward_names_and_values_sign_as_the_sdk_signs_them(fixed_stamp: None) -> None:
    for text in AWKWARD:
        params = {"Action": "InvokeCommand", "Version": "2014-05-26", "K" + text: text,
                  "Number": 50, "Flag": True, "Raw": text.encode()}
        sdk, lean = _both(params, {"Body" + text: text})
        assert lean == sdk, text


def test_random_requests_sign_as_the_sdk_signs_them(fixed_stamp: None) -> None:
    rng = random.Random(14)
    alphabet = [chr(c) for c in range(0x20, 0x180)] + list("é中😀%&=+/ ~*")
    for _ in range(300):
        params = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))):
                  "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
                  for _ in range(rng.randint(1, 6))}
        method = rng.choice(["GET", "POST"])
        sdk, lean = _both(params, {}, method)
        assert lean == sdk, params


def test_a_hundred_instances_sign_as_the_sdk_signs_them(fixed_stamp: None) -> None:
    params = {f"InstanceId.{n}": f"i-local{n:014d}" for n in range(1, 101)}
    params.update({"Action": "DescribeCloudAssistantStatus", "SecurityToken": "CAIS" + "x/+=" * 100,
                   "RegionId": "cn-hangzhou"})
    sdk, lean = _both(params, {})
    assert lean == sdk


def test_installed_the_sdk_signs_every_request_with_it(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    from aliyunsdkcore.auth.composer import rpc_signature_composer

    # whatever signed before this test signs again after it
    monkeypatch.setattr(rpc_signature_composer, "get_signed_url", rpc_signing.sdk_own())
    rpc_signing.install()
    rpc_signing.install()  # idempotent: the SDK's own is still the one kept
    assert rpc_signature_composer.get_signed_url is rpc_signing.get_signed_url
    assert rpc_signing.sdk_own() is not rpc_signing.get_signed_url


def test_an_sdk_without_the_step_it_relies_on_keeps_its_own_signing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aliyunsdkcore.auth.composer import rpc_signature_composer

    own = rpc_signing.sdk_own()
    monkeypatch.setattr(rpc_signature_composer, "get_signed_url", own)
    monkeypatch.delattr(rpc_signature_composer, "__refresh_sign_parameters")
    rpc_signing.install()
    assert rpc_signature_composer.get_signed_url is own
