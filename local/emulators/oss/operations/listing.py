"""Listing and batch deletion: ListObjects (v1), ListObjectsV2, DeleteMultipleObjects.

With ``encoding-type=url`` every key, prefix, marker and delimiter in the answer is
percent-encoded (and oss2 decodes them), so keys XML cannot carry list back unchanged
(https://www.alibabacloud.com/help/en/oss/developer-reference/listobjectsv2). DeleteMultipleObjects
takes at most 1000 keys and requires ``Content-MD5``, answers every key in verbose mode and no
body in quiet mode (only failures would be listed), and deleting a missing key counts as
deleted (https://www.alibabacloud.com/help/en/oss/developer-reference/deletemultipleobjects).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from werkzeug.wrappers import Response

from ..errors import InvalidDigest, InvalidRequest, MalformedXML
from ..wire import (
    content_md5,
    continuation_token,
    el,
    encoder,
    iso8601,
    marker_of,
    max_keys,
    owner_xml,
    parse_xml,
    xml_response,
)
from . import OPERATIONS

if TYPE_CHECKING:
    from ...base import Call
    from ..model import OssModel
    from ..signing import RequestParts


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
                    + el("Type", obj.kind) + el("Size", obj.size)
                    + el("StorageClass", obj.storage_class) + (owner_xml() if owner else "")
                    + "</Contents>")
    body += [f"<CommonPrefixes>{el('Prefix', enc(p))}</CommonPrefixes>" for p in page.prefixes]
    return xml_response("ListBucketResult", "".join(body))


@OPERATIONS.register("DeleteMultipleObjects")
def delete_multiple_objects(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    data = call.request.get_data()
    md5 = content_md5(req.headers)
    if md5 is None:
        raise InvalidRequest("Missing required header for this request: Content-MD5")
    if md5 != hashlib.md5(data).digest():
        raise InvalidDigest("The Content-MD5 you specified did not match what we received.")
    root = parse_xml(data, "Delete")
    keys = [node.findtext("Key") or "" for node in root.findall("Object")]
    if not keys or len(keys) > 1000 or not all(keys):
        raise MalformedXML()
    model.get_bucket(req.bucket)
    for key in keys:
        model.delete_object(req.bucket, key)
    enc = encoder(req.params)
    if (root.findtext("Quiet") or "").lower() == "true":
        return Response(status=200)  # quiet: only failures are listed, and none failed
    body = el("EncodingType", "url") if req.params.get("encoding-type") else ""
    body += "".join(f"<Deleted>{el('Key', enc(k))}</Deleted>" for k in keys)
    return xml_response("DeleteResult", body)


