"""The OSS API actions, one function each, registered in ``OPERATIONS`` by their OSS name.

Each takes the model and the ``Call`` (``call.params`` is the request's ``RequestParts``:
bucket, key, query and headers; ``call.request`` gives the body) and returns the werkzeug
``Response`` the service would send; errors are raised as ``OssError`` subclasses and rendered
by the app. Which request names which action is the route table in ``app.py``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

from ..base import Operations
from .errors import EntityTooLarge, InvalidArgument, InvalidDigest, MalformedXML, MissingContentLength
from .model import MAX_OBJECT_SIZE, OssModel, valid_bucket_name
from .wire import (
    RESPONSE_OVERRIDES,
    FileBody,
    body_chunks,
    conditions,
    content_md5,
    continuation_token,
    el,
    encoder,
    endpoints_xml,
    http_date,
    iso8601,
    marker_of,
    max_keys,
    object_headers,
    object_spec,
    owner_xml,
    parse_range,
    parse_xml,
    unquote_key,
    xml_response,
)

if TYPE_CHECKING:
    from ..base import Call
    from .signing import RequestParts

OPERATIONS: Operations[OssModel] = Operations()


# --- service and bucket operations -----------------------------------------------------------
@OPERATIONS.register("ListBuckets")
def list_buckets(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    params = req.params
    prefix, marker = params.get("prefix", ""), params.get("marker", "")
    limit = max_keys(params)
    buckets, truncated = model.list_buckets(prefix, marker, limit)
    items = "".join(
        "<Bucket>" + el("CreationDate", iso8601(b.created)) + endpoints_xml(model.region)
        + el("Name", b.name) + el("Region", model.region) + el("StorageClass", b.storage_class)
        + "</Bucket>" for b in buckets)
    head = (el("Prefix", prefix) + el("Marker", marker) + el("MaxKeys", limit)
            + el("IsTruncated", str(truncated).lower()))
    if truncated:
        head += el("NextMarker", buckets[-1].name)
    return xml_response("ListAllMyBucketsResult", head + owner_xml() + f"<Buckets>{items}</Buckets>")


@OPERATIONS.register("PutBucket")
def put_bucket(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    storage_class = redundancy = None
    data = call.request.get_data()
    if data.strip():
        root = parse_xml(data, "CreateBucketConfiguration")
        storage_class = root.findtext("StorageClass") or None
        redundancy = root.findtext("DataRedundancyType") or None
    model.create_bucket(req.bucket, req.headers.get("x-oss-acl"), storage_class, redundancy)
    return Response(status=200)


@OPERATIONS.register("PutBucketAcl")
def put_bucket_acl(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.set_bucket_acl(req.bucket, req.headers.get("x-oss-acl", ""))
    return Response(status=200)


@OPERATIONS.register("DeleteBucket")
def delete_bucket(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.delete_bucket(req.bucket)
    return Response(status=204)


@OPERATIONS.register("GetBucketInfo")
def get_bucket_info(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    b = model.get_bucket(req.bucket)
    body = ("<Bucket>" + el("AccessMonitor", "Disabled") + el("CreationDate", iso8601(b.created))
            + endpoints_xml(model.region) + el("StorageClass", b.storage_class)
            + el("DataRedundancyType", b.redundancy) + el("TransferAcceleration", "Disabled")
            + el("CrossRegionReplication", "Disabled") + el("Name", b.name) + owner_xml()
            + f"<AccessControlList>{el('Grant', b.acl)}</AccessControlList>"
            + "<ServerSideEncryptionRule><SSEAlgorithm>None</SSEAlgorithm>"
            + "</ServerSideEncryptionRule></Bucket>")
    return xml_response("BucketInfo", body)


@OPERATIONS.register("GetBucketLocation")
def get_bucket_location(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.get_bucket(req.bucket)
    return xml_response("LocationConstraint", escape(f"oss-{model.region}"))


@OPERATIONS.register("GetBucketAcl")
def get_bucket_acl(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    acl = model.get_bucket(req.bucket).acl
    return xml_response("AccessControlPolicy",
                        owner_xml() + f"<AccessControlList>{el('Grant', acl)}</AccessControlList>")


@OPERATIONS.register("GetBucketStat")
def get_bucket_stat(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    count, size = model.bucket_stats(req.bucket)
    body = (el("Storage", size) + el("ObjectCount", count) + el("MultipartUploadCount", 0)
            + el("StandardStorage", size) + el("StandardObjectCount", count))
    return xml_response("BucketStat", body)


@OPERATIONS.register("ListObjects")
def list_objects(model: OssModel, call: Call) -> Response:
    return _listing(model, call, v2=False)


@OPERATIONS.register("ListObjectsV2")
def list_objects_v2(model: OssModel, call: Call) -> Response:
    return _listing(model, call, v2=True)


def _listing(model: OssModel, call: Call, v2: bool) -> Response:
    req: RequestParts = call.params
    params = req.params
    enc = encoder(params)
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    limit = max_keys(params)
    token = params.get("continuation-token", "") if v2 else ""
    start_after = params.get("start-after", "") if v2 else params.get("marker", "")
    marker = marker_of(token) if token else start_after
    page = model.list_objects(req.bucket, prefix, delimiter, marker, limit)
    owner = not v2 or params.get("fetch-owner", "").lower() == "true"
    body = [el("Name", req.bucket), el("Prefix", enc(prefix))]
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
        body.append(el("NextContinuationToken", enc(continuation_token(page.next_marker))) if v2
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


@OPERATIONS.register("DeleteMultipleObjects")
def delete_multiple_objects(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    data = call.request.get_data()
    md5 = content_md5(req.headers)
    if md5 is not None and md5 != hashlib.md5(data).digest():
        raise InvalidDigest("The Content-MD5 you specified did not match what we received.")
    root = parse_xml(data, "Delete")
    keys = [node.findtext("Key") or "" for node in root.findall("Object")]
    if not keys or len(keys) > 1000 or not all(keys):
        raise MalformedXML()
    model.get_bucket(req.bucket)
    for key in keys:
        model.delete_object(req.bucket, key)
    enc = encoder(req.params)
    body = el("EncodingType", "url") if req.params.get("encoding-type") else ""
    if (root.findtext("Quiet") or "").lower() != "true":
        body += "".join(f"<Deleted>{el('Key', enc(k))}</Deleted>" for k in keys)
    return xml_response("DeleteResult", body)


# --- object operations -----------------------------------------------------------------------
@OPERATIONS.register("PutObject")
def put_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    headers = req.headers
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
    spec = object_spec(headers, content_md5(headers))
    obj = model.put_object(req.bucket, req.key, body_chunks(call.request, length), spec)
    response = Response(status=200)
    response.headers.update({
        "ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64),
        "Content-MD5": base64.b64encode(bytes.fromhex(obj.etag)).decode("ascii"),
    })
    return response


@OPERATIONS.register("CopyObject")
def copy_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    source = req.headers["x-oss-copy-source"].split("?", 1)[0]
    src_bucket, _, src_key = source.lstrip("/").partition("/")
    src_key = unquote_key(src_key, "key")
    if not valid_bucket_name(src_bucket) or not src_key:
        raise InvalidArgument("Copy Source must mention the source bucket and key.")
    directive = req.headers.get("x-oss-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument("x-oss-metadata-directive must be COPY or REPLACE.")
    spec = object_spec(req.headers, None) if directive == "REPLACE" else None
    obj = model.copy_object(src_bucket, src_key, req.bucket, req.key, spec)
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


@OPERATIONS.register("DeleteObject")
def delete_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.delete_object(req.bucket, req.key)
    return Response(status=204)


