"""Function Compute's invoke API, through the official aliyun-fc2 client (laptop only).

``assistflow invoke`` runs one function once through it, like ``sam local invoke``. aliyun-fc2 is
a dependency of the ``local`` extra, never deployed, so this client lives beside the local
cloud, not in ``shared``. Its errors become ``shared.errors.CloudCallError`` as every other
cloud call's do: an API refusal with FC's ``ErrorCode`` (transient for 429 and 5xx), a network
failure as a transient ``NetworkError``. A function that ran and failed is not an API error: the
``Invoked`` answer carries its ``errorType`` and ``errorMessage``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from shared.errors import CloudCallError

API = "InvokeFunction"


@dataclass(frozen=True)
class Invoked:
    """What one invocation answered."""

    request_id: str
    data: bytes = b""
    duration_ms: str = "?"
    error_type: str = ""  # the function ran and failed (FC's x-fc-error-type)
    error_message: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error_type)


class FunctionCompute:
    """The FC invoke API at ``endpoint`` (the local host's, from ``endpoints.json``)."""

    def __init__(self, endpoint: str, access_key_id: str, access_key_secret: str,
                 timeout: float = 120) -> None:
        import fc2

        _quiet_fc2()
        self._client = fc2.Client(endpoint=endpoint, accessKeyID=access_key_id,
                                  accessKeySecret=access_key_secret, Timeout=timeout)

    def invoke(self, service: str, function: str, payload: bytes,
               asynchronous: bool = False) -> Invoked:
        """Run ``function`` once with ``payload``; asynchronously, only its request id."""
        import requests
        from fc2.fc_exceptions import FcError

        headers = {"x-fc-invocation-type": "Async"} if asynchronous else {}
        try:
            response = self._client.invoke_function(service, function, payload=payload,
                                                    headers=headers)
        except FcError as exc:
            return _function_error(exc)
        except requests.RequestException as exc:
            raise CloudCallError(API, "NetworkError", str(exc), transient=True) from exc
        return Invoked(request_id=str(response.headers.get("x-fc-request-id", "")),
                       data=bytes(response.data or b""),
                       duration_ms=str(response.headers.get("x-fc-invocation-duration", "?")))


def _function_error(exc: Any) -> Invoked:
    """A failed function as an answer; any other FC error as ``CloudCallError``."""
    try:
        body = json.loads(exc.message)
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    status = int(exc.status_code or 0)
    if status == 200:  # the API worked; the function failed (x-fc-error-type)
        return Invoked(request_id=str(exc.request_id or ""),
                       error_type=str(body.get("errorType") or "error"),
                       error_message=" ".join(str(body.get("errorMessage", "")).split()))
    code = str(body.get("ErrorCode") or exc.err_code or status)
    message = str(body.get("ErrorMessage") or exc.message)
    raise CloudCallError(API, code, f"{message} (HTTP {status})",
                         transient=status >= 500 or status == 429) from exc


def _not_fc2(record: logging.LogRecord) -> bool:
    return f"{os.sep}fc2{os.sep}" not in record.pathname


def _quiet_fc2() -> None:
    """fc2 logs every failed call on the root logger at ERROR, request headers (the signature)
    included; the caller reports the error itself instead."""
    for handler in logging.getLogger().handlers:
        if _not_fc2 not in handler.filters:
            handler.addFilter(_not_fc2)
