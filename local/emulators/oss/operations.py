"""OSS operations: the route table from (method, sub-resource) to a handler, and the handlers.

Each handler gets a ``Call`` (the parsed request plus the model) and returns the response the
service would; errors are raised as ``OssError`` and rendered by the app.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from .errors import OssError
from .model import MAX_OBJECT_SIZE, ObjectStore, valid_bucket_name
from .signing import SUBRESOURCES, RequestParts
from .wire import (
    RESPONSE_OVERRIDES,
    FileBody,
    body_chunks,
    check_preconditions,
    content_md5,
    el,
    encoder,
    endpoints_xml,
    http_date,
    iso8601,
    max_keys,
    object_headers,
    object_spec,
    owner_xml,
    parse_range,
    parse_xml,
    unquote_key,
    xml_response,
)

# Sub-resources that qualify a request without selecting another operation.
NEUTRAL_PARAMS = frozenset({"continuation-token", "security-token", "x-oss-request-payer",
                            "x-oss-traffic-limit", *RESPONSE_OVERRIDES})


# --- routing ---------------------------------------------------------------------------------
@dataclass
class Call:
    """One API call as a handler sees it."""

    store: ObjectStore
    region: str
    request: Request
    parts: RequestParts

    @property
    def bucket(self) -> str:
        return self.parts.bucket

    @property
    def key(self) -> str:
        return self.parts.key

    @property
    def params(self) -> dict[str, str]:
        return self.parts.params

    @property
    def headers(self) -> dict[str, str]:
        return self.parts.headers


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    """An operation: its OSS name (fault actions use it) and the ACL it needs anonymously."""

    action: str
    handler: Handler
    access: str  # "read" / "write" by bucket ACL, "owner" never anonymous


def route(parts: RequestParts) -> Route:
    """The operation a request names; 501 for real OSS operations the emulator lacks."""
    subs = sorted(k for k in parts.params if k in SUBRESOURCES and k not in NEUTRAL_PARAMS)
    if len(subs) > 1:
        raise OssError("NotImplemented", f"The emulator cannot combine ?{'&'.join(subs)}.")
    sub = subs[0] if subs else ""
    if not parts.bucket:
        table = _SERVICE
    elif not parts.key:
        table = _BUCKET
    else:
        table = _OBJECT
    found = table.get((parts.method, sub))
    if found is None:
        if sub or parts.method in {m for m, _ in table}:
            raise OssError("NotImplemented",
                           f"The emulator does not implement {parts.method} ?{sub or '(none)'} "
                           "on this resource.")
        raise OssError("MethodNotAllowed")
    if found.action == "ListObjects" and parts.params.get("list-type") == "2":
        return _LIST_V2
    if found.action == "PutObject" and "x-oss-copy-source" in parts.headers:
        return _COPY
    return found


# --- service and bucket operations -----------------------------------------------------------
def list_buckets(call: Call) -> Response:
    params = call.params
    prefix, marker = params.get("prefix", ""), params.get("marker", "")
    limit = max_keys(params)
    buckets, truncated = call.store.list_buckets(prefix, marker, limit)
    items = "".join(
        "<Bucket>" + el("CreationDate", iso8601(b.created)) + endpoints_xml(call.region)
        + el("Name", b.name) + el("Region", call.region) + el("StorageClass", b.storage_class)
        + "</Bucket>" for b in buckets)
    head = (el("Prefix", prefix) + el("Marker", marker) + el("MaxKeys", limit)
            + el("IsTruncated", str(truncated).lower()))
    if truncated:
        head += el("NextMarker", buckets[-1].name)
    return xml_response("ListAllMyBucketsResult", head + owner_xml() + f"<Buckets>{items}</Buckets>")


def put_bucket(call: Call) -> Response:
    storage_class = redundancy = None
    data = call.request.get_data()
    if data.strip():
        root = parse_xml(data, "CreateBucketConfiguration")
        storage_class = root.findtext("StorageClass") or None
        redundancy = root.findtext("DataRedundancyType") or None
    call.store.create_bucket(call.bucket, call.headers.get("x-oss-acl"), storage_class,
                             redundancy)
    return Response(status=200)


def put_bucket_acl(call: Call) -> Response:
    call.store.set_bucket_acl(call.bucket, call.headers.get("x-oss-acl", ""))
    return Response(status=200)


def delete_bucket(call: Call) -> Response:
    call.store.delete_bucket(call.bucket)
    return Response(status=204)


def get_bucket_info(call: Call) -> Response:
    b = call.store.get_bucket(call.bucket)
    body = ("<Bucket>" + el("AccessMonitor", "Disabled") + el("CreationDate", iso8601(b.created))
            + endpoints_xml(call.region) + el("StorageClass", b.storage_class)
            + el("DataRedundancyType", b.redundancy) + el("TransferAcceleration", "Disabled")
            + el("CrossRegionReplication", "Disabled") + el("Name", b.name) + owner_xml()
            + f"<AccessControlList>{el('Grant', b.acl)}</AccessControlList>"
            + "<ServerSideEncryptionRule><SSEAlgorithm>None</SSEAlgorithm>"
            + "</ServerSideEncryptionRule></Bucket>")
    return xml_response("BucketInfo", body)


def get_bucket_location(call: Call) -> Response:
    call.store.get_bucket(call.bucket)
    return xml_response("LocationConstraint", escape(f"oss-{call.region}"))


def get_bucket_acl(call: Call) -> Response:
    acl = call.store.get_bucket(call.bucket).acl
    return xml_response("AccessControlPolicy",
                        owner_xml() + f"<AccessControlList>{el('Grant', acl)}</AccessControlList>")


def get_bucket_stat(call: Call) -> Response:
    count, size = call.store.bucket_stats(call.bucket)
    body = (el("Storage", size) + el("ObjectCount", count) + el("MultipartUploadCount", 0)
            + el("StandardStorage", size) + el("StandardObjectCount", count))
    return xml_response("BucketStat", body)


def list_objects(call: Call) -> Response:
    return _listing(call, v2=False)


def list_objects_v2(call: Call) -> Response:
    return _listing(call, v2=True)


def _listing(call: Call, v2: bool) -> Response:
    params = call.params
    enc = encoder(params)
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    limit = max_keys(params)
    token = params.get("continuation-token", "") if v2 else ""
    start_after = params.get("start-after", "") if v2 else params.get("marker", "")
    marker = _decode_token(token) if token else start_after
    page = call.store.list_objects(call.bucket, prefix, delimiter, marker, limit)
    owner = not v2 or params.get("fetch-owner", "").lower() == "true"
    body = [el("Name", call.bucket), el("Prefix", enc(prefix))]
    if v2:
        if start_after:
            body.append(el("StartAfter", enc(start_after)))
        if token:
            body.append(el("ContinuationToken", enc(token)))
    else:
        body.append(el("Marker", enc(start_after)))
    body += [el("MaxKeys", limit), el("Delimiter", enc(delimiter))]
    if params.get("encoding-type"):
        body.append(el("EncodingType", "url"))
    body.append(el("IsTruncated", str(page.truncated).lower()))
    if page.truncated:
        body.append(el("NextContinuationToken", enc(_encode_token(page.next_marker))) if v2
                    else el("NextMarker", enc(page.next_marker)))
    if v2:
        body.append(el("KeyCount", len(page.objects) + len(page.prefixes)))
    for obj in page.objects:
        body.append("<Contents>" + el("Key", enc(obj.key))
                    + el("LastModified", iso8601(obj.last_modified)) + el("ETag", obj.quoted_etag)
                    + el("Type", "Normal") + el("Size", obj.size)
                    + el("StorageClass", obj.storage_class) + (owner_xml() if owner else "")
                    + "</Contents>")
    body += [f"<CommonPrefixes>{el('Prefix', enc(p))}</CommonPrefixes>" for p in page.prefixes]
    return xml_response("ListBucketResult", "".join(body))


def _encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise OssError("InvalidArgument", "The continuation-token is not valid.",
                       ArgumentName="continuation-token", ArgumentValue=token) from None


def delete_multiple_objects(call: Call) -> Response:
    data = call.request.get_data()
    md5 = content_md5(call.headers)
    if md5 is not None and md5 != hashlib.md5(data).digest():
        raise OssError("InvalidDigest",
                       "The Content-MD5 you specified did not match what we received.")
    root = parse_xml(data, "Delete")
    keys = [node.findtext("Key") or "" for node in root.findall("Object")]
    if not keys or len(keys) > 1000 or not all(keys):
        raise OssError("MalformedXML")
    call.store.get_bucket(call.bucket)
    for key in keys:
        call.store.delete_object(call.bucket, key)
    enc = encoder(call.params)
    body = el("EncodingType", "url") if call.params.get("encoding-type") else ""
    if (root.findtext("Quiet") or "").lower() != "true":
        body += "".join(f"<Deleted>{el('Key', enc(k))}</Deleted>" for k in keys)
    return xml_response("DeleteResult", body)


# --- object operations -----------------------------------------------------------------------
def put_object(call: Call) -> Response:
    headers = call.headers
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    raw_length = None if chunked else headers.get("content-length")
    if raw_length is None and not chunked:
        raise OssError("MissingContentLength")
    length = None
    if raw_length is not None:
        if not raw_length.isdigit():
            raise OssError("InvalidArgument", "Content-Length is not a number.")
        length = int(raw_length)
        if length > MAX_OBJECT_SIZE:
            raise OssError("EntityTooLarge")
    spec = object_spec(headers, content_md5(headers))
    obj = call.store.put_object(call.bucket, call.key, body_chunks(call.request, length), spec)
    response = Response(status=200)
    response.headers.update({
        "ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64),
        "Content-MD5": base64.b64encode(bytes.fromhex(obj.etag)).decode("ascii"),
    })
    return response


def copy_object(call: Call) -> Response:
    source = call.headers["x-oss-copy-source"].split("?", 1)[0]
    src_bucket, _, src_key = source.lstrip("/").partition("/")
    src_key = unquote_key(src_key, "key")
    if not valid_bucket_name(src_bucket) or not src_key:
        raise OssError("InvalidArgument", "Copy Source must mention the source bucket and key.")
    directive = call.headers.get("x-oss-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise OssError("InvalidArgument", "x-oss-metadata-directive must be COPY or REPLACE.")
    spec = object_spec(call.headers, None) if directive == "REPLACE" else None
    obj = call.store.copy_object(src_bucket, src_key, call.bucket, call.key, spec)
    response = xml_response("CopyObjectResult", el("ETag", obj.quoted_etag)
                            + el("LastModified", iso8601(obj.last_modified)))
    response.headers.update({"ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64)})
    return response


def get_object(call: Call) -> Response:
    obj, stream = call.store.open_object(call.bucket, call.key)
    try:
        check_preconditions(call.headers, obj)
        headers = object_headers(obj)
        for param, header in RESPONSE_OVERRIDES.items():
            if param in call.params:
                headers[header.title()] = call.params[param]
        span = None
        if "range" in call.headers:
            standard = call.headers.get("x-oss-range-behavior", "").lower() == "standard"
            span = parse_range(call.headers["range"], obj.size, standard)
    except BaseException:
        stream.close()
        raise
    start, end, status = (0, obj.size - 1, 200) if span is None else (*span, 206)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{obj.size}"
    headers["Content-Length"] = str(end - start + 1)
    return Response(FileBody(stream, start, end - start + 1), status=status, headers=headers,
                    direct_passthrough=True)


def head_object(call: Call) -> Response:
    obj = call.store.head_object(call.bucket, call.key)
    check_preconditions(call.headers, obj)
    response = Response(status=200, headers=object_headers(obj))
    response.headers["Content-Length"] = str(obj.size)
    return response


def get_object_meta(call: Call) -> Response:
    obj = call.store.head_object(call.bucket, call.key)
    response = Response(status=200, headers={
        "ETag": obj.quoted_etag, "Last-Modified": http_date(obj.last_modified),
        "x-oss-hash-crc64ecma": str(obj.crc64)})
    response.headers["Content-Length"] = str(obj.size)
    return response


def delete_object(call: Call) -> Response:
    call.store.delete_object(call.bucket, call.key)
    return Response(status=204)


_SERVICE = {("GET", ""): Route("ListBuckets", list_buckets, "owner")}
_BUCKET = {
    ("PUT", ""): Route("PutBucket", put_bucket, "owner"),
    ("PUT", "acl"): Route("PutBucketAcl", put_bucket_acl, "owner"),
    ("DELETE", ""): Route("DeleteBucket", delete_bucket, "owner"),
    ("GET", ""): Route("ListObjects", list_objects, "read"),
    ("GET", "bucketInfo"): Route("GetBucketInfo", get_bucket_info, "owner"),
    ("GET", "location"): Route("GetBucketLocation", get_bucket_location, "owner"),
    ("GET", "acl"): Route("GetBucketAcl", get_bucket_acl, "owner"),
    ("GET", "stat"): Route("GetBucketStat", get_bucket_stat, "owner"),
    ("POST", "delete"): Route("DeleteMultipleObjects", delete_multiple_objects, "write"),
}
_OBJECT = {
    ("PUT", ""): Route("PutObject", put_object, "write"),
    ("GET", ""): Route("GetObject", get_object, "read"),
    ("HEAD", ""): Route("HeadObject", head_object, "read"),
    ("HEAD", "objectMeta"): Route("GetObjectMeta", get_object_meta, "read"),
    ("GET", "objectMeta"): Route("GetObjectMeta", get_object_meta, "read"),
    ("DELETE", ""): Route("DeleteObject", delete_object, "write"),
}
_LIST_V2 = Route("ListObjectsV2", list_objects_v2, "read")
_COPY = Route("CopyObject", copy_object, "owner")
