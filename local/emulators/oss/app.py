"""The OSS emulator's WSGI app: routing, authentication, bucket ACLs for anonymous calls, rendering.

The route table names the action of a request as the OSS API reference lays them out
(https://www.alibabacloud.com/help/en/oss/developer-reference/list-of-operations-by-function):
the method, whether the path names the service, a bucket or an object, and the one
sub-resource in the query (``?acl``, ``?bucketInfo``, ``?delete``…); ``list-type=2`` makes a
bucket GET ListObjectsV2 and an ``x-oss-copy-source`` header makes an object PUT CopyObject.
Each route also says what an unsigned request needs from the bucket ACL: ``read``
(``public-read`` or ``public-read-write``), ``write`` (``public-read-write``) or ``owner``
(never anonymous), as https://www.alibabacloud.com/help/doc-detail/31843.htm (Bucket ACL) says.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from local.ram import Decision, RamRequest

from ..base import Call, Clock, EmulatorApp, KeyRing, ServiceError, json_response
from .entities import check_anonymous
from .errors import (
    AccessDenied,
    MethodNotAllowed,
    NotImplementedHere,
    OssError,
    RamExplicitDeny,
    RamImplicitDeny,
)
from .model import OssModel
from .operations import OPERATIONS
from .signing import SUBRESOURCES, OssAuthenticator, RequestParts
from .store import OssStore
from .wire import (
    OWNER_ID,
    RESPONSE_OVERRIDES,
    XML_TYPE,
    error_xml,
    iso8601,
    parse_request,
    parse_xml,
    unquote_key,
)

OWNER, READ, WRITE = "owner", "read", "write"


@dataclass(frozen=True)
class Route:
    """An action and what an unsigned request needs from the bucket ACL to call it
    (``read``, ``write``, or ``owner``: never allowed anonymously)."""

    action: str
    access: str


# Sub-resources that qualify a request without selecting another operation.
NEUTRAL_PARAMS = frozenset({"continuation-token", "security-token", "x-oss-request-payer",
                            "x-oss-traffic-limit", "position", *RESPONSE_OVERRIDES})

# (method, sub-resources joined by "&") -> route, for the service, a bucket and an object.
SERVICE_ROUTES = {("GET", ""): Route("ListBuckets", OWNER)}
BUCKET_ROUTES = {
    ("PUT", ""): Route("PutBucket", OWNER),
    ("PUT", "acl"): Route("PutBucketAcl", OWNER),
    ("DELETE", ""): Route("DeleteBucket", OWNER),
    ("GET", ""): Route("ListObjects", READ),
    ("GET", "bucketInfo"): Route("GetBucketInfo", OWNER),
    ("GET", "location"): Route("GetBucketLocation", OWNER),
    ("GET", "acl"): Route("GetBucketAcl", OWNER),
    ("GET", "stat"): Route("GetBucketStat", OWNER),
    ("GET", "uploads"): Route("ListMultipartUploads", READ),
    ("POST", "delete"): Route("DeleteMultipleObjects", WRITE),
}
OBJECT_ROUTES = {
    ("PUT", ""): Route("PutObject", WRITE),
    ("GET", ""): Route("GetObject", READ),
    ("HEAD", ""): Route("HeadObject", READ),
    ("HEAD", "objectMeta"): Route("GetObjectMeta", READ),
    ("GET", "objectMeta"): Route("GetObjectMeta", READ),
    ("DELETE", ""): Route("DeleteObject", WRITE),
    ("POST", "append"): Route("AppendObject", WRITE),
    ("PUT", "acl"): Route("PutObjectAcl", OWNER),
    ("GET", "acl"): Route("GetObjectAcl", OWNER),
    ("PUT", "tagging"): Route("PutObjectTagging", OWNER),
    ("GET", "tagging"): Route("GetObjectTagging", OWNER),
    ("DELETE", "tagging"): Route("DeleteObjectTagging", OWNER),
    ("PUT", "symlink"): Route("PutSymlink", WRITE),
    ("GET", "symlink"): Route("GetSymlink", READ),
    ("POST", "restore"): Route("RestoreObject", WRITE),
    ("POST", "uploads"): Route("InitiateMultipartUpload", WRITE),
    ("PUT", "partNumber&uploadId"): Route("UploadPart", WRITE),
    ("GET", "uploadId"): Route("ListParts", WRITE),
    ("POST", "uploadId"): Route("CompleteMultipartUpload", WRITE),
    ("DELETE", "uploadId"): Route("AbortMultipartUpload", WRITE),
}
# An x-oss-copy-source header turns a write into a copy.
COPIES = {"PutObject": Route("CopyObject", OWNER), "UploadPart": Route("UploadPartCopy", WRITE)}
LIST_V2 = Route("ListObjectsV2", READ)
ACCESS = {r.action: r.access
          for table in (SERVICE_ROUTES, BUCKET_ROUTES, OBJECT_ROUTES, COPIES)
          for r in table.values()} | {LIST_V2.action: LIST_V2.access}


# The RAM action of each API action where the two differ, from the "Permissions" table of each
# action's page in the OSS API reference (HeadObject, GetObjectMeta, GetSymlink: oss:GetObject;
# GetBucket (ListObjects): oss:ListObjects; DeleteMultipleObjects: oss:DeleteObject;
# AppendObject, PutSymlink and every multipart write: oss:PutObject, e.g.
# https://www.alibabacloud.com/help/en/oss/developer-reference/appendobject,
# https://www.alibabacloud.com/help/en/oss/developer-reference/putsymlink); every other action
# is oss:<its name> (https://www.alibabacloud.com/help/en/oss/user-guide/ram-policy-overview).
# Resources: acs:oss:*:{owner}:{bucket} for bucket-level actions,
# acs:oss:*:{owner}:{bucket}/{key} for objects, acs:oss:*:{owner}:* for ListBuckets.
RAM_ACTIONS = {"HeadObject": "GetObject", "GetObjectMeta": "GetObject", "GetSymlink": "GetObject",
               "ListObjectsV2": "ListObjects", "DeleteMultipleObjects": "DeleteObject",
               "CopyObject": "PutObject", "AppendObject": "PutObject", "PutSymlink": "PutObject",
               "InitiateMultipartUpload": "PutObject", "UploadPart": "PutObject",
               "UploadPartCopy": "PutObject", "CompleteMultipartUpload": "PutObject"}
# Copies also read their source (oss:GetObject); a write that tags (x-oss-tagging) also needs
# oss:PutObjectTagging (the same pages).
COPY_ACTIONS = frozenset(COPIES[a].action for a in COPIES)
TAGGING_WRITES = frozenset({"PutObject", "CopyObject", "AppendObject", "PutSymlink",
                            "InitiateMultipartUpload"})


def route(parts: RequestParts) -> Route:
    """The action a request names; 501 for real OSS operations the emulator lacks."""
    sub = "&".join(sorted(k for k in parts.params
                          if k in SUBRESOURCES and k not in NEUTRAL_PARAMS))
    table = SERVICE_ROUTES if not parts.bucket else BUCKET_ROUTES if not parts.key else OBJECT_ROUTES
    found = table.get((parts.method, sub))
    if found is None:
        if sub or parts.method in {m for m, _ in table}:
            raise NotImplementedHere(f"The emulator does not implement {parts.method} "
                                     f"?{sub or '(none)'} on this resource.")
        raise MethodNotAllowed()
    if found.action == "ListObjects" and parts.params.get("list-type") == "2":
        return LIST_V2
    if found.action in COPIES and "x-oss-copy-source" in parts.headers:
        return COPIES[found.action]
    return found


class OssApp(EmulatorApp):
    """Alibaba Cloud OSS for the unchanged ``oss2`` SDK, path-style on ``127.0.0.1:PORT``.

    State persists in ``state_dir`` (``oss.sqlite3`` plus ``oss/blobs``), so a new app on the
    same directory serves every bucket and object the previous one stored. ``region`` only
    shapes what bucket info reports; V4 requests signed for any region are accepted.

    Control API extras (no signature needed):

    * ``GET /_emulator/buckets`` — buckets with object counts and bytes
    * ``GET /_emulator/buckets/<bucket>/objects?prefix=`` — keys with size, ETag, CRC-64,
      and ``stored_at``: when it was stored, in the emulator's clock (float seconds)
    * ``GET /_emulator/buckets/<bucket>/object?key=`` — the object's bytes
    """

    service = "oss"
    # A fan-out stores two objects per instance: one thread serves them all, each call's
    # latency a timer (``local.server``), none of its calls waiting for another's
    one_thread = True
    error = OssError
    operations = OPERATIONS
    model: OssModel

    def __init__(self, keyring: KeyRing, state_dir: Path, clock: Clock | None = None,
                 region: str = "cn-hangzhou", account_id: str = OWNER_ID) -> None:
        super().__init__(keyring, clock)
        self.account_id = account_id  # every bucket's owner, in RAM ARNs
        self.model = OssModel(OssStore(Path(state_dir)), self.clock, region)
        self._auth = OssAuthenticator(keyring.secret_for, keyring.token_ok, self.clock.now)

    def share(self) -> None:
        self.model.store.share()

    # --- the pipeline's steps -----------------------------------------------------------------
    def parse(self, call: Call) -> None:
        """Bucket, key, query and headers from the raw URI, then the action they name.

        The action is known before the signature is checked (the pipeline counts each call
        under its action, refused ones too), so a request the emulator cannot route (405, or
        501 for an OSS feature it lacks) is answered that way even when its signature is
        wrong; every request a client can route is still refused for its signature first.
        """
        parts = parse_request(call.request)
        call.params = parts
        call.action = route(parts).action

    def authenticate(self, call: Call) -> None:
        """V1 / V4 signature, header or presigned URL, with STS tokens (``signing.py``); an
        unsigned request is allowed what the bucket ACL grants everyone."""
        parts: RequestParts = call.params
        call.access_key_id = self._auth.authenticate(parts)
        if call.access_key_id is not None:
            return
        access = ACCESS[call.action]
        if not parts.bucket or access == OWNER:
            raise AccessDenied("Anonymous access is forbidden for this operation.")
        check_anonymous(self.model.acl_for(parts.bucket, parts.key), access)

    def ram_request(self, call: Call) -> RamRequest:
        parts: RequestParts = call.params
        owner = f"acs:oss:*:{self.account_id}:"
        action = "oss:" + RAM_ACTIONS.get(call.action, call.action)
        if not parts.bucket:
            return RamRequest.of(action, [owner + "*"])
        if call.action == "DeleteMultipleObjects":  # every key listed in the body
            root = parse_xml(call.request.get_data(), "Delete")
            keys = [node.findtext("Key") or "" for node in root.findall("Object")]
            return RamRequest.of(action, [f"{owner}{parts.bucket}/{k}" for k in keys]
                                 or [f"{owner}{parts.bucket}/*"])
        if not parts.key:
            return RamRequest.of(action, [owner + parts.bucket])
        target = [f"{owner}{parts.bucket}/{parts.key}"]
        request = RamRequest.of(action, target)
        if call.action in COPY_ACTIONS:
            source = parts.headers["x-oss-copy-source"].split("?", 1)[0].lstrip("/")
            request += RamRequest.of("oss:GetObject", [owner + unquote_key(source, "key")])
        if call.action in TAGGING_WRITES and "x-oss-tagging" in parts.headers:
            request += RamRequest.of("oss:PutObjectTagging", target)
        return request

    def ram_denied(self, call: Call, decision: Decision) -> ServiceError:
        return RamExplicitDeny() if decision.explicit else RamImplicitDeny()

    def render(self, call: Call, result: Response) -> Response:
        result.headers["x-oss-request-id"] = call.request_id
        return result

    def render_error(self, call: Call, error: ServiceError) -> Response:
        if error.status == 304:
            response = Response(status=304)
        else:
            body = error_xml(error, call.request_id, call.request.host)
            if call.request.method == "HEAD":
                # a HEAD answer has no body: OSS puts the error XML, base64, in a header
                response = Response(status=error.status, content_type=XML_TYPE)
                response.headers["x-oss-err"] = base64.b64encode(body).decode("ascii")
            else:
                response = Response(body, status=error.status, content_type=XML_TYPE)
        if isinstance(error, OssError):
            response.headers.update(error.headers)
        return self.render(call, response)

    def finish_call(self, call: Call) -> None:
        # Read what the operation left of the body (an error answered before it was read), so
        # the client sees the answer, not a reset, and a kept-alive connection goes on.
        with contextlib.suppress(Exception):  # a broken client stream is the client's problem
            stream = call.request.stream
            while stream.read(1 << 20):
                pass

    # --- control API --------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        return {"service": self.service, **self.model.dump()}

    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        path = name.split("/")
        if request.method != "GET" or path[0] != "buckets" or len(path) not in (1, 3):
            return super().control_extra(name, request, body)
        if len(path) == 1:
            return json_response(self.model.summary())
        bucket, what = path[1], path[2]
        try:
            if what == "objects":
                return json_response(self._peek(bucket, request.args.get("prefix", "")))
            if what == "object":
                _, stream = self.model.open_object(bucket, request.args.get("key", ""))
                with stream:
                    return Response(stream.read(), content_type="application/octet-stream")
        except OssError as exc:
            return json_response({"error": exc.code, "message": exc.message}, status=exc.status)
        return super().control_extra(name, request, body)

    def _peek(self, bucket: str, prefix: str) -> dict[str, Any]:
        objects: list[dict[str, Any]] = []
        marker = ""
        while True:
            page = self.model.list_objects(bucket, prefix, "", marker, 1000)
            objects += [{
                "key": o.key, "size": o.size, "etag": o.etag, "crc64": str(o.crc64),
                "content_type": o.content_type, "meta": o.meta, "storage_class": o.storage_class,
                "last_modified": iso8601(o.last_modified), "stored_at": o.last_modified,
            } for o in page.objects]
            if not page.truncated:
                return {"bucket": bucket, "prefix": prefix, "objects": objects}
            marker = page.next_marker
