"""Object operations: PutObject, GetObject, HeadObject, GetObjectMeta, CopyObject, AppendObject,
DeleteObject (https://www.alibabacloud.com/help/en/oss/developer-reference/putobject and the
pages beside it).

Every write answers its CRC-64 in ``x-oss-hash-crc64ecma`` (of the whole object, for an append
too), which oss2 checks against its own; ``Content-MD5`` is checked when sent.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TYPE_CHECKING

from werkzeug.wrappers import Response

from ..entities import MAX_OBJECT_SIZE, valid_bucket_name
from ..errors import EntityTooLarge, InvalidArgument, MissingContentLength
from ..wire import (
    RESPONSE_OVERRIDES,
    FileBody,
    body_chunks,
    conditions,
    content_md5,
    el,
    http_date,
    iso8601,
    object_headers,
    object_spec,
    parse_range,
    tagging_header,
    unquote_key,
    xml_response,
)
from . import OPERATIONS

if TYPE_CHECKING:
    from werkzeug.wrappers import Request

    from ...base import Call
    from ..model import OssModel
    from ..signing import RequestParts


@OPERATIONS.register("PutObject")
def put_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    headers = req.headers
    body = upload_body(call.request, headers)
    spec = object_spec(headers, content_md5(headers))
    obj = model.put_object(req.bucket, req.key, body, spec)
    response = Response(status=200)
    response.headers.update({
        "ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64),
        "Content-MD5": base64.b64encode(bytes.fromhex(obj.etag)).decode("ascii"),
    })
    return response


def upload_body(request: Request, headers: dict[str, str]) -> Iterator[bytes]:
    """A write's body: ``Content-Length`` bytes, or chunked transfer encoding."""
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    raw_length = None if chunked else headers.get("content-length")
    if raw_length is None and not chunked:
        raise MissingContentLength()
    length = None
    if raw_length is not None:
        if not raw_length.isdigit():
            raise InvalidArgument("Content-Length is not a number.")
        length = int(raw_length)
        if length > MAX_OBJECT_SIZE:
            raise EntityTooLarge()
    return body_chunks(request, length)


def copy_source(headers: dict[str, str]) -> tuple[str, str]:
    """(bucket, key) of ``x-oss-copy-source``: ``/bucket/url-encoded-key``."""
    source = headers["x-oss-copy-source"].split("?", 1)[0]
    src_bucket, _, src_key = source.lstrip("/").partition("/")
    src_key = unquote_key(src_key, "key")
    if not valid_bucket_name(src_bucket) or not src_key:
        raise InvalidArgument("Copy Source must mention the source bucket and key.")
    return src_bucket, src_key


def directive(headers: dict[str, str], name: str) -> bool:
    """Whether the ``x-oss-<name>-directive`` header says REPLACE (COPY, the default: False)."""
    value = headers.get(f"x-oss-{name}-directive", "COPY").upper()
    if value not in ("COPY", "REPLACE"):
        raise InvalidArgument(f"x-oss-{name}-directive must be COPY or REPLACE.",
                              ArgumentName=f"x-oss-{name}-directive", ArgumentValue=value)
    return value == "REPLACE"


@OPERATIONS.register("CopyObject")
def copy_object(model: OssModel, call: Call) -> Response:
    """CopyObject: metadata by ``x-oss-metadata-directive``, tags by
    ``x-oss-tagging-directive``, ACL by ``x-oss-object-acl``
    (https://www.alibabacloud.com/help/en/oss/developer-reference/copyobject)."""
    req: RequestParts = call.params
    src_bucket, src_key = copy_source(req.headers)
    spec = object_spec(req.headers, None) if directive(req.headers, "metadata") else None
    tags = tagging_header(req.headers.get("x-oss-tagging", "")) if directive(
        req.headers, "tagging") else None
    obj = model.copy_object(src_bucket, src_key, req.bucket, req.key, spec,
                            req.headers.get("x-oss-object-acl"), tags)
    response = xml_response("CopyObjectResult", el("ETag", obj.quoted_etag)
                            + el("LastModified", iso8601(obj.last_modified)))
    response.headers.update({"ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64)})
    return response


@OPERATIONS.register("GetObject")
def get_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    obj, stream = model.open_object(req.bucket, req.key)
    try:
        obj.check_conditions(conditions(req.headers))
        headers = object_headers(obj)
        for param, header in RESPONSE_OVERRIDES.items():
            if param in req.params:
                headers[header.title()] = req.params[param]
        span = None
        if "range" in req.headers:
            standard = req.headers.get("x-oss-range-behavior", "").lower() == "standard"
            span = parse_range(req.headers["range"], obj.size, standard)
    except BaseException:
        stream.close()
        raise
    start, end, status = (0, obj.size - 1, 200) if span is None else (*span, 206)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{obj.size}"
    headers["Content-Length"] = str(end - start + 1)
    return Response(FileBody(stream, start, end - start + 1), status=status, headers=headers,
                    direct_passthrough=True)


@OPERATIONS.register("HeadObject")
def head_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    obj = model.head_object(req.bucket, req.key)
    obj.check_conditions(conditions(req.headers))
    response = Response(status=200, headers=object_headers(obj))
    response.headers["Content-Length"] = str(obj.size)
    return response


@OPERATIONS.register("GetObjectMeta")
def get_object_meta(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    obj = model.head_object(req.bucket, req.key)
    response = Response(status=200, headers={
        "ETag": obj.quoted_etag, "Last-Modified": http_date(obj.last_modified),
        "x-oss-hash-crc64ecma": str(obj.crc64)})
    response.headers["Content-Length"] = str(obj.size)
    return response


@OPERATIONS.register("AppendObject")
def append_object(model: OssModel, call: Call) -> Response:
    """POST ?append&position=N (https://www.alibabacloud.com/help/en/oss/developer-reference/appendobject);
    a missing or non-numeric position is ``InvalidArgument``
    (https://www.alibabacloud.com/help/en/oss/user-guide/0016-00000501)."""
    req: RequestParts = call.params
    raw = req.params.get("position", "")
    if not raw.isdigit():
        raise InvalidArgument("Position is not a number or is missing.",
                              ArgumentName="position", ArgumentValue=raw)
    body = upload_body(call.request, req.headers)
    spec = object_spec(req.headers, content_md5(req.headers))
    obj = model.append_object(req.bucket, req.key, int(raw), body, spec)
    response = Response(status=200)
    response.headers.update({"ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64),
                             "x-oss-next-append-position": str(obj.size)})
    return response


@OPERATIONS.register("DeleteObject")
def delete_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.delete_object(req.bucket, req.key)
    return Response(status=204)


