"""Webhook authentication: HMAC-SHA256 over timestamp and raw body, with a replay window.

A sender computes::

    X-Assistflow-Timestamp: <unix seconds>
    X-Assistflow-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

and the receiver accepts it only if the signature matches and the timestamp is within
``WINDOW_SECONDS`` of its clock. The signature doubles as the delivery's idempotency key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from shared.errors import UnauthorizedError

TIMESTAMP_HEADER = "X-Assistflow-Timestamp"
SIGNATURE_HEADER = "X-Assistflow-Signature"
WINDOW_SECONDS = 300
# What the two headers may look like before anything is computed from them: Unix seconds as
# ASCII digits (``str.isdigit`` also takes "²" or "٣", which ``int`` refuses, and an int of
# thousands of digits costs time and trips Python's int max str digits limit), and the scheme
# with 64 hex digits (``hmac.compare_digest`` raises TypeError on non-ASCII text).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=[0-9A-Fa-f]{64}")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two headers that authenticate ``body`` (for senders, tests and the CLI)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={digest}"}


def post(url: str, secret: str, body: bytes, *, timestamp: int | None = None,
         headers: dict[str, str] | None = None, signed: bool = True, timeout: float = 60,
         use_env_proxy: bool = True) -> tuple[int, bytes]:
    """Deliver ``body`` to a webhook, signed now (or at ``timestamp``): (status, raw answer).

    For senders — the CLI, the benchmarks, tests. An HTTP error status is an answer, not an
    exception; a network failure raises ``urllib.error.URLError`` / ``OSError``. Pass
    ``use_env_proxy=False`` for loopback, where a proxy from the environment would break it.
    """
    import urllib.error
    import urllib.request

    all_headers = {"Content-Type": "application/json"}
    if signed:
        all_headers.update(sign(secret, body, timestamp))
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    opener = (urllib.request.build_opener() if use_env_proxy
              else urllib.request.build_opener(urllib.request.ProxyHandler({})))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return ""


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """Check the delivery's signature; return its hex digest (the delivery's identity).

    Raises ``UnauthorizedError`` with a message saying what is wrong. Header names are matched
    case-insensitively, as HTTP requires.
    """
    if not secret:
        raise UnauthorizedError("the webhook secret is not configured; refusing every delivery")
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise UnauthorizedError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header; "
                                "sign the request as the README describes")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise UnauthorizedError(f"{TIMESTAMP_HEADER} must be Unix seconds (ASCII digits)")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        raise UnauthorizedError(f"{TIMESTAMP_HEADER} is more than {WINDOW_SECONDS} s away from "
                                "the receiver's clock; sign the request when you send it")
    expected = sign(secret, body, int(timestamp))[SIGNATURE_HEADER].partition("=")[2]
    if not _SIGNATURE.fullmatch(signature) or not hmac.compare_digest(
            signature.partition("=")[2].lower(), expected):
        raise UnauthorizedError("the signature does not match the body; sign the exact bytes "
                                "you send with the shared webhook secret")
    return expected
