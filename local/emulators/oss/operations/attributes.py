"""What an object carries besides its bytes: ACL, tags, symlinks, and restore.

* PutObjectAcl / GetObjectAcl: ``x-oss-object-acl`` (default, private, public-read,
  public-read-write); the answer is an ``AccessControlPolicy`` with the owner
  (https://www.alibabacloud.com/help/en/oss/developer-reference/putobjectacl,
  https://www.alibabacloud.com/help/en/oss/developer-reference/getobjectacl).
* PutObjectTagging / GetObjectTagging / DeleteObjectTagging: ``Tagging/TagSet/Tag`` with
  ``Key`` and ``Value`` (https://www.alibabacloud.com/help/en/oss/developer-reference/putobjecttagging).
* PutSymlink (``x-oss-symlink-target``, URL-encoded) / GetSymlink (the target in the same header)
  (https://www.alibabacloud.com/help/en/oss/developer-reference/putsymlink).
* RestoreObject: only Archive, Cold Archive and Deep Cold Archive objects are restored; the
  local OSS stores Standard objects only, which the service answers with 400
  ``OperationNotSupported`` (https://www.alibabacloud.com/help/en/oss/user-guide/0016-00000702;
  oss2 2.19.1 ``Bucket.restore_object`` documents the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from werkzeug.wrappers import Response

from ..errors import InvalidArgument, MalformedXML, OperationNotSupported
from ..wire import (
    el,
    http_date,
    object_spec,
    owner_xml,
    parse_xml,
    unquote_key,
    xml_response,
)
from . import OPERATIONS

if TYPE_CHECKING:
    from ...base import Call
    from ..model import OssModel
    from ..signing import RequestParts


@OPERATIONS.register("PutObjectAcl")
def put_object_acl(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.set_object_acl(req.bucket, req.key, req.headers.get("x-oss-object-acl", ""))
    return Response(status=200)


@OPERATIONS.register("GetObjectAcl")
def get_object_acl(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    acl = model.stored_object(req.bucket, req.key).acl
    return xml_response("AccessControlPolicy",
                        owner_xml() + f"<AccessControlList>{el('Grant', acl)}</AccessControlList>")


@OPERATIONS.register("PutObjectTagging")
def put_object_tagging(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    root = parse_xml(call.request.get_data(), "Tagging")
    tags: dict[str, str] = {}
    for node in root.findall("TagSet/Tag"):
        key = node.findtext("Key")
        if key is None or key in tags:
            raise MalformedXML("Each Tag needs a Key, and a key may appear once.")
        tags[key] = node.findtext("Value") or ""
    model.set_object_tags(req.bucket, req.key, tags)
    return Response(status=200)


@OPERATIONS.register("GetObjectTagging")
def get_object_tagging(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    tags = model.stored_object(req.bucket, req.key).tags
    items = "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
    return xml_response("Tagging", f"<TagSet>{items}</TagSet>")


@OPERATIONS.register("DeleteObjectTagging")
def delete_object_tagging(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.set_object_tags(req.bucket, req.key, {})
    return Response(status=204)


@OPERATIONS.register("PutSymlink")
def put_symlink(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    raw = req.headers.get("x-oss-symlink-target")
    if not raw:
        raise InvalidArgument("x-oss-symlink-target is missing.",
                              ArgumentName="x-oss-symlink-target")
    obj = model.put_symlink(req.bucket, req.key, unquote_key(raw, "key"),
                            object_spec(req.headers, None))
    response = Response(status=200)
    response.headers["ETag"] = obj.quoted_etag
    return response


@OPERATIONS.register("GetSymlink")
def get_symlink(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    obj = model.get_symlink(req.bucket, req.key)
    response = Response(status=200)
    response.headers.update({"x-oss-symlink-target": quote(obj.target or "", safe=""),
                             "ETag": obj.quoted_etag,
                             "Last-Modified": http_date(obj.last_modified)})
    return response


@OPERATIONS.register("RestoreObject")
def restore_object(model: OssModel, call: Call) -> Response:
    req: RequestParts = call.params
    model.head_object(req.bucket, req.key)  # a missing key is NoSuchKey first
    raise OperationNotSupported(EC="0016-00000702")

