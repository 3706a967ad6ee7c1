"""FC 3.0 HTTP trigger: a request becomes the JSON event, the handler's return the response.

Each HTTP trigger gets its own port on 127.0.0.1 — the local stand-in for its
``https://<trigger-id>.<region>.fcapp.run`` domain — so ``rawPath`` is exactly the request path,
as on FC. The event and the response mapping follow "Invoke a function by using an HTTP
trigger" (FC 3.0 user guide,
https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/http-trigger-invoking-function).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from local.host.async_invoke import AsyncInvoker
from local.host.runtime import Invocation
from local.host.trigger import Trigger, TriggerContext
from local.server import LoopbackServer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from local.host.template import TriggerDecl


def build_http_event(request: Request, request_id: str, trigger_id: str, region: str,
                     account_id: str) -> dict[str, Any]:
    """The FC 3.0 HTTP trigger event for ``request``: ``rawPath`` still URL-encoded, the decoded
    path in ``requestContext.http.path``, a body that is not UTF-8 in Base64
    (``isBase64Encoded``), repeated headers and query parameters joined with commas."""
    body = request.get_data()
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    now = time.time()
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for key, value in request.args.items(multi=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    raw_path = request.environ.get("RAW_URI", request.path).split("?", 1)[0]
    return {
        "version": "v1",
        "rawPath": raw_path,
        "body": text,
        "isBase64Encoded": is_b64,
        "headers": headers,
        "queryParameters": query,
        "requestContext": {
            "accountId": account_id,
            "domainName": f"{trigger_id}.{region}.fcapp.run",
            "domainPrefix": trigger_id,
            "http": {"method": request.method, "path": request.path,
                     "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                     "sourceIp": request.remote_addr or "",
                     "userAgent": request.headers.get("User-Agent", "")},
            "requestId": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "timeEpoch": str(int(now * 1000)),
            "triggerId": trigger_id,
        },
    }


def map_response(inv: Invocation) -> Response:
    """The handler's return value as an HTTP response, the way FC 3.0 maps it."""
    headers = {"x-fc-request-id": inv.request_id}
    if not inv.ok:
        error = inv.error or {}
        headers["x-fc-error-type"] = ("FunctionTimeoutError"
                                      if error.get("errorType") == "FunctionTimeout"
                                      else "UnhandledInvocationError")
        body = {"errorMessage": error.get("errorMessage", ""),
                "errorType": error.get("errorType", "")}
        if error.get("stackTrace"):  # as FC's "Error handling" (Python) shows: no kinder here
            body["stackTrace"] = error["stackTrace"]
        return Response(json.dumps(body), status=502, headers=headers,
                        content_type="application/json")
    result = inv.result
    if isinstance(result, dict) and "statusCode" in result:
        raw = result.get("body", "")
        if result.get("isBase64Encoded"):
            data = base64.b64decode(raw or "")
        elif isinstance(raw, (dict, list)):
            data = json.dumps(raw).encode()
        else:
            data = ("" if raw is None else str(raw)).encode()
        headers.update({str(k): str(v) for k, v in (result.get("headers") or {}).items()})
        return Response(data, status=int(result["statusCode"]), headers=headers)
    # Anything else is the body of a 200, as FC does for a plain return value.
    if isinstance(result, bytes):
        return Response(result, headers=headers)
    if isinstance(result, str):
        return Response(result, headers=headers)
    return Response(json.dumps(result), headers=headers, content_type="application/json")


class HttpTrigger(Trigger):
    """Serves one HTTP trigger of one function.

    ``methods`` are the only methods answered (others get 405, as FC does); ``authType``
    ``anonymous`` lets anyone in, ``function`` requires an ``Authorization`` header — the local
    host does not check its signature (the FC 3.0 trigger signature is not emulated).
    ``X-Fc-Invocation-Type: Async`` answers 202 and runs the function in the background.
    The port is bound when the trigger is built, so its URL is known before the functions are:
    ``UrlInternet`` / ``UrlIntranet`` / ``TriggerId`` are the attributes ROS documents for
    ``ALIYUN::FC3::Trigger``
    (https://www.alibabacloud.com/help/en/ros/developer-reference/aliyun-fc3-trigger).
    """

    def __init__(self, name: str, function: str, config: dict[str, Any], region: str,
                 account_id: str, port: int = 0, invoker: AsyncInvoker | None = None,
                 label: str = "") -> None:
        super().__init__(name, function)
        self.methods = {str(m).upper() for m in config.get("methods") or ["GET", "POST"]}
        self.auth_type = str(config.get("authType", "function")).lower()
        if self.auth_type not in ("anonymous", "function"):
            raise ValueError(f"trigger {name}: authType {self.auth_type!r} is not anonymous or "
                             "function")
        self.region = region
        self.account_id = account_id
        self.invoker = invoker
        self.trigger_id = f"local-{function}-{name}"
        self._server = LoopbackServer(self, port, f"{label}http-trigger-{name}")
        self.url = self._server.url + "/"

    @classmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> HttpTrigger:
        return cls(decl.name, decl.function, decl.config, context.region, context.account_id,
                   context.http_ports.get(decl.name, 0), invoker=context.invoker,
                   label=context.label)

    def attributes(self) -> dict[str, str]:
        return {"UrlInternet": self.url, "UrlIntranet": self.url, "TriggerId": self.trigger_id}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request_id = f"1-{uuid.uuid4()}"
        response = self._handle(request, request_id)
        return response(environ, start_response)

    def _handle(self, request: Request, request_id: str) -> Response:
        if request.method not in self.methods:
            return Response(json.dumps({"ErrorCode": "MethodNotAllowed", "ErrorMessage":
                                        f"method {request.method} is not allowed by "
                                        f"trigger {self.name}; allowed: "
                                        f"{', '.join(sorted(self.methods))}"}),
                            status=405, content_type="application/json",
                            headers={"Allow": ", ".join(sorted(self.methods)),
                                     "x-fc-request-id": request_id})
        if self.auth_type != "anonymous" and not request.headers.get("Authorization"):
            # authType "function" needs an FC signature; the local host accepts any
            # Authorization header but, like FC, refuses a request without one.
            return Response(json.dumps({"ErrorCode": "MissingRequiredHeader",
                                        "ErrorMessage": "authType is function: the "
                                        "Authorization header is required"}),
                            status=401, content_type="application/json",
                            headers={"x-fc-request-id": request_id})
        event = json.dumps(build_http_event(request, request_id, self.trigger_id, self.region,
                                            self.account_id)).encode()
        mode = request.headers.get("X-Fc-Invocation-Type", "Sync").strip().lower()
        if mode == "async" and self.invoker is not None:
            try:
                self.invoker.submit(self.runtime, event, request_id)
            except RuntimeError as exc:  # the host is stopping
                return Response(str(exc), status=503)
            return Response(b"", status=202, headers={"x-fc-request-id": request_id})
        return map_response(self.runtime.invoke(event, request_id))

    def start(self) -> None:
        self._server.start()

    def begin_stop(self) -> None:
        """Stop serving: the port is closed (requests in flight finish on their own threads)."""
        self._server.stop()

    def stop(self) -> None:
        self._server.stop()
