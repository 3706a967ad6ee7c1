"""One function instance: a process that loads a handler and runs invocations, one at a time.

Started by ``local.host.runtime`` the way FC starts an instance: in the function's code
directory, with the function's environment. Invocations arrive as JSON lines on a private pipe
(file descriptor ``ASSISTFLOW_WORKER_IN``) and answers leave on another
(``ASSISTFLOW_WORKER_OUT``), so the function's own prints and logs on stdout/stderr stay logs.
"""

from __future__ import annotations

import base64
import contextvars
import importlib
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def _configure_logging() -> None:
    # FC's format: "$utcdatetime $requestId [$Level] $message".
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(request_id)s [%(levelname)s] "
                                  "%(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("ASSISTFLOW_LOG_LEVEL", "INFO"))


@dataclass
class FcCredentials:
    """``context.credentials``: the function role's STS keys FC injects."""

    access_key_id: str
    access_key_secret: str
    security_token: str


@dataclass
class FunctionMeta:
    name: str
    handler: str
    memory: int
    timeout: int


@dataclass
class FcContext:
    """What FC passes as ``context`` to a python3.10 handler (snake_case attributes
    ``request_id``, ``function``, ``credentials``, ``region``, ``account_id``; "Context",
    https://www.alibabacloud.com/help/doc-detail/422182.htm)."""

    request_id: str
    function: FunctionMeta
    credentials: FcCredentials
    region: str
    account_id: str
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("fc"))


def _encode_result(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        return {"kind": "bytes", "value": base64.b64encode(value).decode()}
    if isinstance(value, str):
        return {"kind": "str", "value": value}
    return {"kind": "json", "value": value}


def main() -> None:
    _configure_logging()
    code_dir = os.getcwd()
    sys.path.insert(0, code_dir)
    module_name, _, func_name = os.environ["FC_FUNCTION_HANDLER"].rpartition(".")
    env = os.environ
    meta = FunctionMeta(env["FC_FUNCTION_NAME"], env["FC_FUNCTION_HANDLER"],
                        int(env.get("FC_FUNCTION_MEMORY_SIZE", "128")),
                        int(env.get("FC_TIMEOUT", "3")))
    creds = FcCredentials(env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
                          env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
                          env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""))
    inbox = os.fdopen(int(env["ASSISTFLOW_WORKER_IN"]), "rb")
    outbox = os.fdopen(int(env["ASSISTFLOW_WORKER_OUT"]), "wb")
    started = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        init_error = None
    except Exception as exc:  # reported on every invocation, as FC does
        handler, init_error = None, exc
    import_ms = (time.perf_counter() - started) * 1000
    outbox.write(json.dumps({"ready": True, "import_ms": import_ms}).encode() + b"\n")
    outbox.flush()
    for line in inbox:
        request = json.loads(line)
        token = _request_id.set(request["request_id"])
        # FC frames every invocation's log lines with these two, so print() output (which
        # carries no request id) can still be attributed to its request.
        print(f"FC Invoke Start RequestId: {request['request_id']}", file=sys.stderr, flush=True)
        begin = time.perf_counter()
        reply: dict[str, Any] = {"id": request["id"]}
        try:
            if handler is None:
                raise init_error or RuntimeError("handler not loaded")
            context = FcContext(request["request_id"], meta, creds, env.get("FC_REGION", ""),
                                env.get("FC_ACCOUNT_ID", ""))
            result = handler(base64.b64decode(request["event"]), context)
            reply.update(ok=True, result=_encode_result(result))
        except Exception as exc:
            logging.getLogger("fc").error("invocation failed: %s: %s", type(exc).__name__, exc)
            reply.update(ok=False, error={
                "errorType": type(exc).__name__, "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__),
            })
        finally:
            _request_id.reset(token)
        reply["duration_ms"] = (time.perf_counter() - begin) * 1000
        print(f"FC Invoke End RequestId: {request['request_id']}", file=sys.stderr, flush=True)
        try:
            data = json.dumps(reply).encode()
        except (TypeError, ValueError) as exc:
            data = json.dumps({"id": request["id"], "ok": False, "duration_ms":
                               reply["duration_ms"], "error": {
                                   "errorType": "ResultNotSerializable",
                                   "errorMessage": f"the handler returned a value that is not "
                                                   f"JSON, str or bytes: {exc}"}}).encode()
        outbox.write(data + b"\n")
        outbox.flush()


if __name__ == "__main__":
    main()
