"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", 300 s window."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared import webhook
from shared.errors import UnauthorizedError

SECRET = "s3cret"
BODY = b'{"Type": "RunShellScript"}'
NOW = 1_764_129_600


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    headers = webhook.sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {"X-Assistflow-Timestamp": str(NOW),
                       "X-Assistflow-Signature": f"sha256={expected}"}
    assert webhook.verify(SECRET, headers, BODY, now=NOW) == expected


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in webhook.sign(SECRET, BODY, NOW).items()}
    assert webhook.verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda h, b: (h, b + b" "), "does not match"),
    (lambda h, b: ({**h, "X-Assistflow-Signature": "sha1=00"}, b), "does not match"),
    (lambda h, b: ({"X-Assistflow-Timestamp": h["X-Assistflow-Timestamp"]}, b), "missing"),
    (lambda h, b: ({**h, "X-Assistflow-Timestamp": "soon"}, b), "Unix seconds"),
])
def test_tampered_or_incomplete_deliveries_are_refused(mutate, fragment) -> None:  # type: ignore[no-untyped-def]
    headers, body = mutate(webhook.sign(SECRET, BODY, NOW), BODY)
    with pytest.raises(UnauthorizedError, match=fragment):
        webhook.verify(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize(("skew", "ok"), [(300, True), (-300, True), (301, False), (-301, False)])
def test_timestamps_more_than_300_seconds_away_are_refused(skew: int, ok: bool) -> None:
    headers = webhook.sign(SECRET, BODY, NOW)
    if ok:
        assert webhook.verify(SECRET, headers, BODY, now=NOW + skew)
    else:
        with pytest.raises(UnauthorizedError, match="300 s"):
            webhook.verify(SECRET, headers, BODY, now=NOW + skew)


def test_an_unconfigured_secret_refuses_everything() -> None:
    with pytest.raises(UnauthorizedError, match="not configured"):
        webhook.verify("", webhook.sign("", BODY, NOW), BODY, now=NOW)


@pytest.mark.parametrize(("timestamp", "signature"), [
    ("1" * 5000, None),  # int() of it trips Python's int max str digits limit
    ("²", None),  # str.isdigit() is true, int() refuses it
    ("١٧٦٤١٢٩٦٠٠", None),  # Arabic-Indic digits: isdigit() again, not ASCII
    (" 1764129600", None),
    (None, "sha256=" + "é" * 64),  # hmac.compare_digest raises TypeError on non-ASCII text
    (None, "sha256=" + "0" * 63),
    (None, "sha256=" + "0" * 64 + "\n"),
    (None, "SHA256=" + "0" * 64),
])
def test_malformed_headers_are_401_before_anything_is_computed(
        timestamp: str | None, signature: str | None) -> None:
    headers = webhook.sign(SECRET, BODY, NOW)
    if timestamp is not None:
        headers[webhook.TIMESTAMP_HEADER] = timestamp
    if signature is not None:
        headers[webhook.SIGNATURE_HEADER] = signature
    with pytest.raises(UnauthorizedError):
        webhook.verify(SECRET, headers, BODY, now=NOW)


def test_an_uppercase_hex_signature_still_verifies() -> None:
    headers = webhook.sign(SECRET, BODY, NOW)
    headers[webhook.SIGNATURE_HEADER] = "sha256=" + headers[webhook.SIGNATURE_HEADER][7:].upper()
    assert webhook.verify(SECRET, headers, BODY, now=NOW)
