"""The OSS emulator's WSGI app: authentication, bucket ACLs for anonymous calls, faults, errors."""

from __future__ import annotations

import base64
import contextlib
import time
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from ..base import Clock, EmulatorApp, KeyRing, json_response, new_request_id
from .errors import OssError
from .model import ObjectStore
from .operations import Call, Route, route
from .signing import Authenticator, RequestParts
from .wire import XML_TYPE, error_xml, iso8601, parse_request

_ANONYMOUS_ACLS = {"read": ("public-read", "public-read-write"), "write": ("public-read-write",)}


class OssApp(EmulatorApp):
    """Alibaba Cloud OSS for the unchanged ``oss2`` SDK, path-style on ``127.0.0.1:PORT``.

    State persists in ``state_dir`` (``oss.sqlite3`` plus ``oss/blobs``), so a new app on the
    same directory serves every bucket and object the previous one stored. ``region`` only
    shapes what bucket info reports; V4 requests signed for any region are accepted.

    Control API extras (no signature needed):

    * ``GET /_emulator/buckets`` — buckets with object counts and bytes
    * ``GET /_emulator/buckets/<bucket>/objects?prefix=`` — keys with size, ETag, CRC-64
    * ``GET /_emulator/buckets/<bucket>/object?key=`` — the object's bytes
    """

    service = "oss"

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None,
                 region: str = "cn-hangzhou") -> None:
        super().__init__(keyring, clock)
        self.region = region
        self.store = ObjectStore(Path(state_dir), self.clock.now)
        self._auth = Authenticator(keyring.secret_for, keyring.token_ok, self.clock.now)

    # --- API --------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        request_id = new_request_id()
        try:
            try:
                parts = parse_request(request)
                access_key = self._auth.authenticate(parts)
                operation = route(parts)
                if access_key is None:
                    self._check_anonymous(parts, operation)
                self._inject_fault(operation.action)
                response = operation.handler(Call(self.store, self.region, request, parts))
            finally:
                # werkzeug closes the connection after each response; unread body bytes would
                # make the client see a reset instead of the error, so read them first.
                _drain(request)
        except OssError as exc:
            response = self._error(exc, request, request_id)
        except HTTPException as exc:  # werkzeug gave up on the request, e.g. a truncated body
            error = OssError("InvalidRequest", exc.description, status=exc.code or 400)
            response = self._error(error, request, request_id)
        response.headers["x-oss-request-id"] = request_id
        return response

    def _check_anonymous(self, parts: RequestParts, operation: Route) -> None:
        allowed = _ANONYMOUS_ACLS.get(operation.access)
        if not parts.bucket or allowed is None:
            raise OssError("AccessDenied", "Anonymous access is forbidden for this operation.")
        if self.store.get_bucket(parts.bucket).acl not in allowed:
            raise OssError("AccessDenied")

    def _inject_fault(self, action: str) -> None:
        rule = self.faults.take(action)
        if rule is None:
            return
        if rule.delay:
            time.sleep(rule.delay)  # a real stall: the client's timeout is what is under test
        if rule.code:
            raise OssError(rule.code, rule.message or None, status=rule.status)

    @staticmethod
    def _error(exc: OssError, request: Request, request_id: str) -> Response:
        if exc.status == 304:
            return Response(status=304)
        body = error_xml(exc, request_id, request.host)
        if request.method == "HEAD":
            # a HEAD answer has no body: OSS puts the error XML, base64, in a header
            response = Response(status=exc.status, content_type=XML_TYPE)
            response.headers["x-oss-err"] = base64.b64encode(body).decode("ascii")
            return response
        return Response(body, status=exc.status, content_type=XML_TYPE)

    # --- emulator plumbing ------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        return {"service": self.service, "region": self.region, **self.store.dump()}

    def reset_state(self) -> None:
        self.store.reset()

    def close(self) -> None:
        self.store.close()

    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        path = name.split("/")
        if request.method != "GET" or path[0] != "buckets" or len(path) not in (1, 3):
            return super().control_extra(name, request, body)
        if len(path) == 1:
            return json_response(self.store.dump())
        bucket, what = path[1], path[2]
        try:
            if what == "objects":
                return json_response(self._peek(bucket, request.args.get("prefix", "")))
            if what == "object":
                _, stream = self.store.open_object(bucket, request.args.get("key", ""))
                with stream:
                    return Response(stream.read(), content_type="application/octet-stream")
        except OssError as exc:
            return json_response({"error": exc.code, "message": exc.message}, status=exc.status)
        return super().control_extra(name, request, body)

    def _peek(self, bucket: str, prefix: str) -> dict[str, Any]:
        objects: list[dict[str, Any]] = []
        marker = ""
        while True:
            page = self.store.list_objects(bucket, prefix, "", marker, 1000)
            objects += [{
                "key": o.key, "size": o.size, "etag": o.etag, "crc64": str(o.crc64),
                "content_type": o.content_type, "meta": o.meta, "storage_class": o.storage_class,
                "last_modified": iso8601(o.last_modified),
            } for o in page.objects]
            if not page.truncated:
                return {"bucket": bucket, "prefix": prefix, "objects": objects}
            marker = page.next_marker


def _drain(request: Request) -> None:
    with contextlib.suppress(Exception):  # a broken client stream is the client's problem
        stream = request.stream
        while stream.read(1 << 20):
            pass
