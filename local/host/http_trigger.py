"""FC 3.0 HTTP trigger: a request becomes the JSON event, the handler's return the response.

Each HTTP trigger gets its own port on 127.0.0.1 — the local stand-in for its
``https://<trigger-id>.<region>.fcapp.run`` domain — so ``rawPath`` is exactly the request path,
as on FC.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.host.runtime import FunctionRuntime, Invocation

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("assistflow.host.http")


def build_event(request: Request, request_id: str, trigger_id: str, region: str,
                account_id: str) -> dict[str, Any]:
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


class _Handler(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


class HttpTrigger:
    """Serves one HTTP trigger of one function."""

    def __init__(self, name: str, function: str, config: dict[str, Any], region: str,
                 account_id: str, port: int = 0) -> None:
        self.name = name
        self.runtime: FunctionRuntime | None = None  # set by the host once functions exist
        self.methods = {m.upper() for m in config.get("methods") or ["GET", "POST"]}
        self.auth_type = str(config.get("authType", "function")).lower()
        self.region = region
        self.account_id = account_id
        self.trigger_id = f"local-{function}-{name}"
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, self, threaded=True,
                                                   request_handler=_Handler)
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        self._thread: Any = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request_id = f"1-{uuid.uuid4()}"
        if self.runtime is None:
            response = Response("function not ready", status=503)
        elif request.method not in self.methods:
            response = Response(json.dumps({"ErrorCode": "MethodNotAllowed", "ErrorMessage":
                                            f"method {request.method} is not allowed by "
                                            f"trigger {self.name}; allowed: "
                                            f"{', '.join(sorted(self.methods))}"}),
                                status=405, content_type="application/json",
                                headers={"Allow": ", ".join(sorted(self.methods)),
                                         "x-fc-request-id": request_id})
        elif self.auth_type != "anonymous" and not request.headers.get("Authorization"):
            # authType "function" needs an FC signature; the local host accepts any
            # Authorization header but, like FC, refuses a request without one.
            response = Response(json.dumps({"ErrorCode": "MissingRequiredHeader",
                                            "ErrorMessage": "authType is function: the "
                                            "Authorization header is required"}),
                                status=401, content_type="application/json")
        else:
            event = build_event(request, request_id, self.trigger_id, self.region,
                                self.account_id)
            inv = self.runtime.invoke(json.dumps(event).encode(), request_id)
            response = map_response(inv)
        return response(environ, start_response)

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"http-trigger-{self.name}")
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
