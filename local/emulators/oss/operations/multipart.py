"""Multipart upload operations: InitiateMultipartUpload, UploadPart, UploadPartCopy, ListParts,
ListMultipartUploads, CompleteMultipartUpload, AbortMultipartUpload; the rules are in
``multipart.py``, the shapes here follow each action's page in the OSS API reference
(https://www.alibabacloud.com/help/en/oss/developer-reference/initiatemultipartupload and the
pages beside it) and what oss2 2.19.1 ``oss2.xml_utils`` reads (``parse_list_parts`` and
``parse_list_multipart_uploads`` require ``NextPartNumberMarker``, ``NextKeyMarker`` and
``NextUploadIdMarker`` on every page).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING
from urllib.parse import quote

from werkzeug.wrappers import Response

from ..errors import InvalidArgument, InvalidRequest, MalformedXML
from ..wire import (
    FileBody,
    content_md5,
    el,
    encoder,
    iso8601,
    max_keys,
    object_spec,
    parse_range,
    parse_xml,
    xml_response,
)
from . import OPERATIONS
from .objects import copy_source, upload_body

if TYPE_CHECKING:
    from ...base import Call
    from ..entities import Part
    from ..model import OssModel
    from ..signing import RequestParts


def _part_number(req: RequestParts) -> int:
    raw = req.params.get("partNumber", "")
    if not raw.isdigit():
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive.",
                              ArgumentName="partNumber", ArgumentValue=raw)
    return int(raw)


def _part_response(part: Part) -> Response:
    response = Response(status=200)
    response.headers.update({
        "ETag": f'"{part.etag}"', "x-oss-hash-crc64ecma": str(part.crc64),
        "Content-MD5": base64.b64encode(bytes.fromhex(part.etag)).decode("ascii")})
    return response


def _encoding(req: RequestParts) -> str:
    return el("EncodingType", "url") if req.params.get("encoding-type") else ""


@OPERATIONS.register("InitiateMultipartUpload")
def initiate_multipart_upload(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    enc = encoder(req.params)
    upload = model.multipart.initiate(req.bucket, req.key, object_spec(req.headers, None))
    return xml_response("InitiateMultipartUploadResult", _encoding(req) + el("Bucket", req.bucket)
                        + el("Key", enc(req.key)) + el("UploadId", upload.upload_id))


@OPERATIONS.register("UploadPart")
def upload_part(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    number = _part_number(req)
    body = upload_body(call.request, req.headers)
    part = model.multipart.upload(req.bucket, req.key, req.params["uploadId"], number, body,
                                  content_md5(req.headers))
    return _part_response(part)


@OPERATIONS.register("UploadPartCopy")
def upload_part_copy(model: OssModel, call: Call) -> Response:
    """The source's bytes, or the ``x-oss-copy-source-range`` of them (an invalid range copies
    the whole object, as a GetObject Range does)."""
    req: RequestParts = call.params
    number = _part_number(req)
    src_bucket, src_key = copy_source(req.headers)
    model.multipart.get(req.bucket, req.key, req.params["uploadId"])
    source, stream = model.open_object(src_bucket, src_key)
    with stream:
        span = None
        if "x-oss-copy-source-range" in req.headers:
            span = parse_range(req.headers["x-oss-copy-source-range"], source.size, False)
        start, end = (0, source.size - 1) if span is None else span
        part = model.multipart.upload(req.bucket, req.key, req.params["uploadId"], number,
                                      iter(FileBody(stream, start, end - start + 1)))
    response = xml_response("CopyPartResult", el("LastModified", iso8601(part.last_modified))
                            + el("ETag", f'"{part.etag}"'))
    # the ETag header too: oss2 2.19.1 reads a part copy's ETag from it (PutObjectResult), and
    # its resumable copy (oss2.resumable.ResumableCopy) completes with that ETag
    response.headers.update({"ETag": f'"{part.etag}"', "x-oss-hash-crc64ecma": str(part.crc64)})
    return response


@OPERATIONS.register("ListParts")
def list_parts(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    enc = encoder(req.params)
    limit = max_keys(req.params, "max-parts", 1000)
    raw_marker = req.params.get("part-number-marker", "") or "0"
    if not raw_marker.isdigit():
        raise InvalidArgument("part-number-marker must be a number.",
                              ArgumentName="part-number-marker", ArgumentValue=raw_marker)
    upload, parts, truncated = model.multipart.list_parts(
        req.bucket, req.key, req.params["uploadId"], int(raw_marker), limit)
    next_marker = parts[-1].number if parts else int(raw_marker)
    body = (_encoding(req) + el("Bucket", req.bucket) + el("Key", enc(upload.key))
            + el("UploadId", upload.upload_id) + el("PartNumberMarker", int(raw_marker))
            + el("NextPartNumberMarker", next_marker) + el("MaxParts", limit)
            + el("IsTruncated", str(truncated).lower()))
    body += "".join(
        "<Part>" + el("PartNumber", p.number) + el("LastModified", iso8601(p.last_modified))
        + el("ETag", f'"{p.etag}"') + el("HashCrc64ecma", p.crc64) + el("Size", p.size)
        + "</Part>" for p in parts)
    return xml_response("ListPartsResult", body)


@OPERATIONS.register("ListMultipartUploads")
def list_multipart_uploads(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    params = req.params
    enc = encoder(params)
    limit = max_keys(params, "max-uploads", 1000)
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    key_marker, id_marker = params.get("key-marker", ""), params.get("upload-id-marker", "")
    page = model.multipart.list_uploads(req.bucket, prefix, delimiter, key_marker, id_marker,
                                        limit)
    body = (_encoding(req) + el("Bucket", req.bucket) + el("KeyMarker", enc(key_marker))
            + el("UploadIdMarker", id_marker)
            + el("NextKeyMarker", enc(page.next_key if page.truncated else ""))
            + el("NextUploadIdMarker", page.next_upload_id if page.truncated else "")
            + el("Delimiter", enc(delimiter)) + el("Prefix", enc(prefix))
            + el("MaxUploads", limit) + el("IsTruncated", str(page.truncated).lower()))
    body += "".join("<Upload>" + el("Key", enc(u.key)) + el("UploadId", u.upload_id)
                    + el("Initiated", iso8601(u.initiated)) + "</Upload>" for u in page.uploads)
    body += "".join(f"<CommonPrefixes>{el('Prefix', enc(p))}</CommonPrefixes>"
                    for p in page.prefixes)
    return xml_response("ListMultipartUploadsResult", body)


@OPERATIONS.register("CompleteMultipartUpload")
def complete_multipart_upload(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    enc = encoder(req.params)
    data = call.request.get_data()
    listed: list[tuple[int, str]] | None = None
    if req.headers.get("x-oss-complete-all", "").lower() == "yes":
        if data.strip():
            raise InvalidRequest("With x-oss-complete-all: yes the request has no body.")
    else:
        root = parse_xml(data, "CompleteMultipartUpload")
        listed = []
        for node in root.findall("Part"):
            number, etag = node.findtext("PartNumber") or "", node.findtext("ETag")
            if not number.isdigit() or etag is None:
                raise MalformedXML("Each Part needs a PartNumber and an ETag.")
            listed.append((int(number), etag))
    forbid = req.headers.get("x-oss-forbid-overwrite", "").lower() == "true"
    obj = model.multipart.complete(req.bucket, req.key, req.params["uploadId"], listed, forbid)
    location = f"{call.request.host_url}{req.bucket}/{quote(req.key, safe='/')}"
    response = xml_response("CompleteMultipartUploadResult", _encoding(req)
                            + el("Location", location) + el("Bucket", req.bucket)
                            + el("Key", enc(req.key)) + el("ETag", obj.quoted_etag))
    response.headers.update({"ETag": obj.quoted_etag, "x-oss-hash-crc64ecma": str(obj.crc64)})
    return response


@OPERATIONS.register("AbortMultipartUpload")
def abort_multipart_upload(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.multipart.abort(req.bucket, req.key, req.params["uploadId"])
    return Response(status=204)
