"""``LeanAuthV4`` signs exactly as oss2's V4 signing does (shared/clients/oss_signing.py).

Both sign the same request at the same frozen instant; the headers they set must be equal, byte
for byte. The local OSS verifies the signature of every other call the tests make.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import oss2
import pytest
from oss2.http import Request

from shared.clients.oss_signing import LeanAuthV4

FROZEN = dt.datetime(2026, 11, 29, 23, 59, 58)


class _FrozenDatetime(dt.datetime):
    @classmethod
    def utcnow(cls) -> Any:
        return FROZEN


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oss2.auth, "datetime", _FrozenDatetime)
    monkeypatch.setattr(time, "gmtime", lambda *_: FROZEN.timetuple())


def _request(method: str, params: dict[str, str], headers: dict[str, str],
             region: str = "cn-hangzhou") -> Request:
    return Request(method, "http://127.0.0.1:1/bucket/key", params=dict(params),
                   headers=dict(headers), region=region, product="oss")


KEYS = ["results/t-1/i-1/result.json", "a b/c+d=e&f?g#h", "中文/ключ/ü.txt", "~-_./%2F", "",
        "trailing/", "*'()!$,;:@[]"]
PARAMS = [{}, {"acl": ""}, {"prefix": "results/t-1/", "max-keys": "100", "delimiter": "/"},
          {"uploadId": "0004B9894A22E5B1888A1E29F823****", "partNumber": "1"},
          {"x-oss-process": "image/resize,w_100", "a b": "c/d"}]
HEADERS = [{}, {"Content-Type": "application/json", "Content-MD5": "ZDU3ZGQ0NjQ5NjM="},
           {"x-oss-forbid-overwrite": "true", "Content-Length": "12", "User-Agent": "x",
            "X-Oss-Meta-Owner": "Ops Team"},
           {"Content-Type": "text/plain; charset=utf-8", "x-oss-tagging": "a=b&c=d"}]


@pytest.mark.parametrize("token", ["", "CAIS-token/with+odd=chars"])
@pytest.mark.parametrize("key", KEYS)
def test_the_same_headers_as_oss2_for_every_key_params_and_headers(
        frozen: None, token: str, key: str) -> None:
    theirs_auth: Any = (oss2.StsAuth("STS.id", "secret ", token, auth_version=oss2.AUTH_VERSION_4)
                        if token else oss2.AuthV4(" LTAIid ", " secret "))
    ours = LeanAuthV4("STS.id", "secret ", token) if token else LeanAuthV4(" LTAIid ",
                                                                             " secret ")
    for method in ("PUT", "GET", "DELETE", "HEAD", "POST"):
        for params in PARAMS:
            for headers in HEADERS:
                theirs, mine = (_request(method, params, headers) for _ in range(2))
                theirs_auth._sign_request(theirs, "bucket-1", key)
                ours._sign_request(mine, "bucket-1", key)
                assert dict(mine.headers) == dict(theirs.headers), (method, params, headers)


def test_a_service_call_and_a_cloudbox_sign_as_oss2(frozen: None) -> None:
    for bucket, kwargs in (("", {}), ("b", {"cloudbox_id": "cb-123"})):
        theirs = Request("GET", "http://127.0.0.1:1/", params={}, headers={},
                         region="cn-shanghai", product="oss", **kwargs)
        mine = Request("GET", "http://127.0.0.1:1/", params={}, headers={},
                       region="cn-shanghai", product="oss", **kwargs)
        oss2.AuthV4("id", "secret")._sign_request(theirs, bucket, "")
        LeanAuthV4("id", "secret")._sign_request(mine, bucket, "")
        assert dict(mine.headers) == dict(theirs.headers)


def test_a_new_day_gets_a_new_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = LeanAuthV4("id", "secret")
    signatures = []
    for day in (FROZEN, FROZEN + dt.timedelta(seconds=3)):  # across midnight
        monkeypatch.setattr(oss2.auth, "datetime", type("D", (dt.datetime,), {
            "utcnow": classmethod(lambda cls, d=day: d)}))
        monkeypatch.setattr(time, "gmtime", lambda *_, d=day: d.timetuple())
        theirs, mine = (_request("PUT", {}, {}) for _ in range(2))
        oss2.AuthV4("id", "secret")._sign_request(theirs, "b", "k")
        auth._sign_request(mine, "b", "k")
        assert mine.headers["authorization"] == theirs.headers["authorization"]
        signatures.append(mine.headers["authorization"])
    assert signatures[0] != signatures[1] and "20261130" in signatures[1]


def test_without_a_region_it_refuses_as_oss2_does() -> None:
    with pytest.raises(oss2.exceptions.ClientError, match="region should not be None"):
        LeanAuthV4("id", "secret")._sign_request(_request("GET", {}, {}, region=None), "b", "k")
