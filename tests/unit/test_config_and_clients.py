"""Endpoints the functions use, and credentials taken per invocation.

The MNS and OSS endpoints follow Alibaba's documented ones (public HTTPS by default; the MNS
VPC endpoint over HTTP and the OSS internal one for functions in a VPC); credentials come from
FC's ``context.credentials`` when it has them, else from the environment, and the clients are
rebuilt only when they change.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from shared import clients as clients_module
from shared.clients import default_clients
from shared.config import Credentials, Settings
from shared.errors import ConfigError

ENV = {"FC_REGION": "cn-hangzhou", "FC_ACCOUNT_ID": "1234567890123456",
       "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret",
       "ALIBABA_CLOUD_SECURITY_TOKEN": "env-token", "ASSISTFLOW_FOLLOWUP_QUEUE": "f",
       "ASSISTFLOW_RESULTS_BUCKET": "b"}


def context(key_id: str = "STS.ctx", secret: str = "ctx-secret", token: str = "ctx-token",
            camel: bool = False) -> Any:
    creds = (SimpleNamespace(accessKeyId=key_id, accessKeySecret=secret, securityToken=token)
             if camel else
             SimpleNamespace(access_key_id=key_id, access_key_secret=secret,
                             security_token=token))
    return SimpleNamespace(request_id="req-1", credentials=creds)


# --- endpoints -----------------------------------------------------------------------------

def test_by_default_mns_and_oss_are_reached_over_their_public_https_endpoints() -> None:
    s = Settings.from_env(ENV)
    assert s.network == "public"
    assert s.mns_url == "https://1234567890123456.mns.cn-hangzhou.aliyuncs.com"
    assert s.oss_url == "https://oss-cn-hangzhou.aliyuncs.com"


def test_in_a_vpc_mns_uses_its_vpc_endpoint_over_http_and_oss_its_internal_one() -> None:
    s = Settings.from_env({**ENV, "ASSISTFLOW_NETWORK": "vpc"})
    assert s.mns_url == "http://1234567890123456.mns.cn-hangzhou-internal-vpc.aliyuncs.com"
    assert s.oss_url == "https://oss-cn-hangzhou-internal.aliyuncs.com"


def test_the_internal_mns_endpoint_the_docs_give_only_as_http_is_never_built() -> None:
    for network in ("public", "vpc"):
        url = Settings.from_env({**ENV, "ASSISTFLOW_NETWORK": network}).mns_url
        assert not url.startswith("https://") or "-internal" not in url, url


def test_explicit_endpoints_win_and_a_bad_network_is_a_configuration_error() -> None:
    s = Settings.from_env({**ENV, "ASSISTFLOW_NETWORK": "vpc",
                           "ASSISTFLOW_MNS_ENDPOINT": "http://127.0.0.1:1",
                           "ASSISTFLOW_OSS_ENDPOINT": "http://127.0.0.1:2"})
    assert (s.mns_url, s.oss_url) == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    with pytest.raises(ConfigError, match="ASSISTFLOW_NETWORK"):
        Settings.from_env({**ENV, "ASSISTFLOW_NETWORK": "internal"})
    with pytest.raises(ConfigError, match="FC_ACCOUNT_ID"):
        _ = Settings.from_env({k: v for k, v in ENV.items() if k != "FC_ACCOUNT_ID"}).mns_url


def test_the_template_passes_the_network_to_every_function() -> None:
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "template.yml").read_text())
    assert doc["Parameters"]["Network"]["Default"] == "public"
    assert doc["Parameters"]["Network"]["AllowedValues"] == ["public", "vpc"]
    functions = [r for r in doc["Resources"].values() if r["Type"] == "ALIYUN::FC3::Function"]
    assert functions
    for function in functions:
        env = function["Properties"]["EnvironmentVariables"]
        assert env["ASSISTFLOW_NETWORK"] == {"Ref": "Network"}, function["Properties"]


# --- credentials ---------------------------------------------------------------------------

@pytest.mark.parametrize("camel", [False, True])
def test_the_contexts_credentials_come_before_the_environments(camel: bool) -> None:
    s = Settings.from_env(ENV, context=context(camel=camel))
    assert s.credentials == Credentials("STS.ctx", "ctx-secret", "ctx-token")


def test_without_context_credentials_the_environment_is_used_and_what_is_missing_is_named(
        ) -> None:
    bare = SimpleNamespace(request_id="req-1")  # the python3.12 context has no credentials
    assert Settings.from_env(ENV, context=bare).credentials == Credentials(
        "STS.env", "env-secret", "env-token")
    assert Settings.from_env(ENV, context=context(key_id="")).credentials.access_key_id == \
        "STS.env"
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        Settings.from_env({k: v for k, v in ENV.items()
                           if k != "ALIBABA_CLOUD_ACCESS_KEY_SECRET"})
    assert "ctx-secret" not in repr(Settings.from_env(ENV, context=context()))


def test_clients_are_rebuilt_only_when_an_invocations_credentials_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(clients_module, "_cached", None)
    first = default_clients(context("STS.one"))
    assert default_clients(context("STS.one")) is first  # warm, same keys: reused
    rotated = default_clients(context("STS.two", token="token-two"))
    assert rotated is not first
    assert rotated.settings.credentials == Credentials("STS.two", "ctx-secret", "token-two")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "env-token-refreshed")
    from_env = default_clients(None)
    assert from_env.settings.credentials.security_token == "env-token-refreshed"
    assert default_clients(None) is from_env


def test_oss2_checks_crc64_with_one_table_per_process() -> None:
    """Building the bucket makes oss2 reuse one CRC-64 table; every checksum stays the same
    as a freshly built table's, and a start value other than 0 still gets its own."""
    import crcmod
    import oss2.utils

    from shared.clients.results import Results

    assert Results(Settings.from_env(env={**ENV, "ASSISTFLOW_RESULTS_BUCKET": "results"})).bucket
    reference = crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)
    reference.update(b"123456789")
    first, second = oss2.utils.Crc64(), oss2.utils.Crc64()
    assert first.crc64.table is second.crc64.table  # built once
    for crc in (first, second):
        crc.update(b"123456789")
        assert crc.crc == reference.crcValue == 0x995DC9BBDF1939FA  # CRC-64/XZ check value
    later = oss2.utils.Crc64(first.crc)  # continuing an append
    later.update(b"abc")
    whole = oss2.utils.Crc64()
    whole.update(b"123456789abc")
    assert later.crc == whole.crc
    assert first.combine(first.crc, oss2.utils.Crc64().crc, 0) == first.crc
