"""Service and bucket operations: ListBuckets, PutBucket, DeleteBucket, bucket info, location,
ACL and stat (https://www.alibabacloud.com/help/en/oss/developer-reference/list-of-operations-by-function)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

from ..wire import el, endpoints_xml, iso8601, max_keys, owner_xml, parse_xml, xml_response
from . import OPERATIONS

if TYPE_CHECKING:
    from ...base import Call
    from ..model import OssModel
    from ..signing import RequestParts


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
    count, size, uploads = model.bucket_stats(req.bucket)
    body = (el("Storage", size) + el("ObjectCount", count) + el("MultipartUploadCount", uploads)
            + el("StandardStorage", size) + el("StandardObjectCount", count))
    return xml_response("BucketStat", body)


