"""Function Compute's invoke API, so ``fc2.Client.invoke_function`` works against the host.

``POST /2016-08-15/services/{service}/functions/{function}/invocations`` — the FC 2.0 API
that aliyun-fc2 (2.5.2) speaks:

* **Authentication** as FC does it (``fc2/auth.py``): ``Authorization: FC <AccessKeyId>:<sig>``
  with ``sig`` = Base64(HMAC-SHA256(secret, METHOD \\n content-md5 \\n content-type \\n date \\n
  <sorted x-fc-* headers as "k:v\\n"><path>)), the path unescaped; an STS pair must send its
  ``x-fc-security-token``. Keys come from the local cloud's ``KeyRing``; a ``Date`` more than
  15 minutes off is refused.
* **RAM**: a key bound to a role (a function's own STS key) must be allowed
  ``fc:InvokeFunction`` on ``acs:fc:{region}:{account}:functions/{name}``, else 403
  ``AccessDenied``; the users' keys may invoke anything.
* **Service**: FC 3.0 has no services, so any service name (and any ``.qualifier``) is
  accepted and the function is looked up by name alone.
* **Sync** (default): the function's result is the body with ``x-fc-request-id``; when the
  function fails the answer is still HTTP 200, with ``x-fc-error-type:
  UnhandledInvocationError`` and ``{"errorMessage", "errorType", "stackTrace"}``: fc2
  (``fc2/client.py``) raises ``FcError`` for any response carrying ``x-fc-error-type``, and FC
  names function errors ``HandledInvocationError`` / ``UnhandledInvocationError``
  (https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/error-handling-1-2).
* **Async** (``x-fc-invocation-type: Async``): 202 at once, the function runs in the
  background with FC's async retries (``AsyncInvoker``); the payload limit is FC's 128 KB.

Not emulated: ``x-fc-log-type: Tail`` (no ``x-fc-log-result``; the logs are in the host's
output), FC 3.0's ``/2023-03-30`` API (its SDK signs with ACS3-HMAC-SHA256), throttling.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from local.emulators.base import KeyRing
from local.host.async_invoke import AsyncInvoker
from local.host.runtime import FunctionRuntime, Invocation
from local.ram import RamRequest
from local.server import LoopbackServer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("assistflow.host.fc_api")

API_VERSION = "2016-08-15"
MAX_SKEW_SECONDS = 15 * 60
MAX_SYNC_PAYLOAD = 32 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 128 * 1024
_INVOKE_PATH = re.compile(rf"^/{API_VERSION}/services/([^/]+)/functions/([^/]+)/invocations/?$")


def fc_string_to_sign(method: str, headers: dict[str, str], path: str,
                      queries: dict[str, list[str]] | None = None) -> str:
    """What fc2's ``Auth.sign_request`` signs; ``headers`` by lower-case name."""
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items())
                        if k.startswith("x-fc-"))
    resource = path
    if queries:
        params = sorted(f"{k}={v}" for k, values in queries.items() for v in values)
        resource = path + "\n" + "\n".join(params)
    return "\n".join([method.upper(), headers.get("content-md5", ""),
                      headers.get("content-type", ""), headers.get("date", ""),
                      canonical + resource])


def fc_signature(secret: str, text: str) -> str:
    """Base64(HMAC-SHA256(secret, text)): the ``<sig>`` of ``Authorization: FC <id>:<sig>``."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _error(status: int, code: str, message: str, request_id: str) -> Response:
    return Response(json.dumps({"ErrorCode": code, "ErrorMessage": message}), status=status,
                    content_type="application/json", headers={"x-fc-request-id": request_id})


def invocation_response(inv: Invocation) -> Response:
    """A finished sync invocation as FC's invoke API answers it."""
    headers = {"x-fc-request-id": inv.request_id,
               "x-fc-invocation-duration": str(max(1, round(inv.duration_ms)))}
    if not inv.ok:
        error = inv.error or {}
        body: dict[str, Any] = {"errorMessage": error.get("errorMessage", ""),
                                "errorType": error.get("errorType", "")}
        if error.get("stackTrace"):
            body["stackTrace"] = error["stackTrace"]
        headers["x-fc-error-type"] = "UnhandledInvocationError"
        return Response(json.dumps(body), status=200, headers=headers,
                        content_type="application/json")
    result = inv.result
    if result is None:
        return Response(b"", headers=headers, content_type="application/octet-stream")
    if isinstance(result, bytes):
        return Response(result, headers=headers, content_type="application/octet-stream")
    if isinstance(result, str):
        return Response(result.encode(), headers=headers, content_type="text/plain")
    return Response(json.dumps(result), headers=headers, content_type="application/json")


class FcApi:
    """The invoke API of one host, on its own port (the local ``fc`` endpoint)."""

    def __init__(self, runtimes: Callable[[], dict[str, FunctionRuntime]], keyring: KeyRing,
                 invoker: AsyncInvoker, port: int = 0, label: str = "", *,
                 region: str = "cn-hangzhou", account_id: str = "") -> None:
        self._runtimes = runtimes
        self.keyring = keyring
        self.arn = f"acs:fc:{region}:{account_id}:functions/"  # FC 3.0's function ARNs
        self.invoker = invoker
        self._server = LoopbackServer(self, port, f"{label}fc-api")
        self.url = self._server.url

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request_id = f"1-{uuid.uuid4()}"
        try:
            response = self._handle(request, request_id)
        except Exception:  # a host bug answers a 500 the client can show, never a dropped socket
            log.exception("invoke API: %s %s failed", request.method, request.path)
            response = _error(500, "InternalServerError", "the local host failed; see its log",
                              request_id)
        return response(environ, start_response)

    def _handle(self, request: Request, request_id: str) -> Response:
        raw_path = str(request.environ.get("RAW_URI") or request.path).split("?", 1)[0]
        path = unquote(raw_path)
        match = _INVOKE_PATH.match(path)
        if match is None:
            return _error(404, "PathNotFound", f"{request.method} {path} is not an API the "
                          f"local host serves; it answers POST /{API_VERSION}/services/"
                          "{service}/functions/{function}/invocations", request_id)
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "invocations are POST", request_id)
        denied = self._authenticate(request, path)
        if denied is not None:
            code, message = denied
            return _error(403 if code != "MissingRequiredHeader" else 400, code, message,
                          request_id)
        function = match.group(2)
        # RAM: a key bound to a role (a function's own) needs fc:InvokeFunction on the function;
        # FC refuses with 403 AccessDenied ("Error codes",
        # https://www.alibabacloud.com/help/en/functioncompute/fc-2-0/developer-reference/error-codes)
        identity = self.keyring.identity(request.headers["authorization"].split()[1]
                                         .split(":", 1)[0])
        if identity is not None and not identity.evaluate(RamRequest.of(
                "fc:InvokeFunction", [self.arn + function])).allowed:
            return _error(403, "AccessDenied", f"{identity.arn} is not authorized to perform "
                          f"fc:InvokeFunction on {self.arn + function}", request_id)
        runtime = self._runtimes().get(function)
        if runtime is None:
            return _error(404, "FunctionNotFound", f"function {function!r} does not exist; "
                          f"functions: {', '.join(sorted(self._runtimes()))}", request_id)
        payload = request.get_data()
        mode = request.headers.get("x-fc-invocation-type", "Sync").strip().lower()
        if mode == "async":
            if len(payload) > MAX_ASYNC_PAYLOAD:
                return _error(413, "EntityTooLarge", f"payload size exceeds maximum allowed "
                              f"size ({MAX_ASYNC_PAYLOAD} bytes for async invocations)",
                              request_id)
            try:
                self.invoker.submit(runtime, payload, request_id)
            except RuntimeError as exc:
                return _error(503, "ServiceUnavailable", str(exc), request_id)
            return Response(b"", status=202, headers={"x-fc-request-id": request_id})
        if mode != "sync":
            return _error(400, "InvalidArgument", "x-fc-invocation-type is Sync or Async",
                          request_id)
        if len(payload) > MAX_SYNC_PAYLOAD:
            return _error(413, "EntityTooLarge", "payload size exceeds maximum allowed size "
                          f"({MAX_SYNC_PAYLOAD} bytes)", request_id)
        return invocation_response(runtime.invoke(payload, request_id))

    def _authenticate(self, request: Request, path: str) -> tuple[str, str] | None:
        """None when the request is signed by a local key; else (ErrorCode, ErrorMessage)."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        if not auth:
            return "MissingRequiredHeader", "the Authorization header is required"
        match = re.match(r"^FC ([^:\s]+):(\S+)$", auth.strip())
        if match is None:
            return "InvalidAuthorization", "Authorization is not 'FC <AccessKeyId>:<Signature>'"
        key_id, signature = match.groups()
        secret = self.keyring.secret_for(key_id)
        if secret is None:
            return "InvalidAccessKeyID", f"access key {key_id} is not known to the local cloud"
        if not self.keyring.token_ok(key_id, headers.get("x-fc-security-token")):
            return "InvalidSecurityToken", "the security token does not match this access key"
        try:
            sent = email.utils.parsedate_to_datetime(headers.get("date", "")).timestamp()
        except (TypeError, ValueError):
            return "MissingRequiredHeader", "the Date header is missing or not an HTTP date"
        if abs(time.time() - sent) > MAX_SKEW_SECONDS:
            return "RequestTimeTooSkewed", "the Date header is more than 15 minutes off"
        queries = {k: request.args.getlist(k) for k in request.args} or None
        expected = fc_signature(secret, fc_string_to_sign(request.method, headers, path,
                                                           queries))
        if not hmac.compare_digest(expected, signature):
            return "SignatureNotMatch", "the request signature does not match; check the " \
                                        "access key secret"
        return None

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
