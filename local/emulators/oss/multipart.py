"""Multipart uploads: initiate, parts (uploaded or copied), listings, complete, abort.

The rules and their public sources:

* Part numbers run 1-10000; uploading a number again replaces that part; a part is at most
  5 GB (https://www.alibabacloud.com/help/en/oss/developer-reference/uploadpart).
* CompleteMultipartUpload names the parts in ascending order (else 400 ``InvalidPartOrder``),
  each with the ETag its upload returned (else 400 ``InvalidPart``); every part but the last
  is at least 100 KB (else 400 ``EntityTooSmall``); parts left out are discarded; the object's
  ETag is the MD5 of the listed parts' binary MD5s, upper-case hex, then ``-<count>``; with
  ``x-oss-complete-all: yes`` and no body every uploaded part is taken in order
  (https://www.alibabacloud.com/help/en/oss/developer-reference/completemultipartupload,
  https://www.alibabacloud.com/help/en/oss/user-guide/0042-00000209,
  https://www.alibabacloud.com/help/en/oss/user-guide/0042-00000213).
* An upload completed or aborted no longer exists: 404 ``NoSuchUpload``
  (https://www.alibabacloud.com/help/en/oss/developer-reference/abortmultipartupload).
* ListMultipartUploads: uploads by key, then upload ID, after ``key-marker`` (and, for that
  key, after ``upload-id-marker``), rolled up at ``delimiter``; at most 1000
  (https://www.alibabacloud.com/help/en/oss/developer-reference/listmultipartuploads).
* ListParts: parts after ``part-number-marker``, at most 1000
  (https://www.alibabacloud.com/help/en/oss/developer-reference/listparts).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .entities import MAX_OBJECT_SIZE, MULTIPART, NewObject, ObjectMeta, Part, Upload
from .errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    MalformedXML,
    NoSuchUpload,
)
from .store import at_most, chunks_of

if TYPE_CHECKING:
    from .model import OssModel

MAX_PARTS = 10000
MIN_PART_SIZE = 100 * 1024


@dataclass
class UploadPage:
    """One page of ListMultipartUploads."""

    uploads: list[Upload]
    prefixes: list[str]
    truncated: bool
    next_key: str
    next_upload_id: str


def new_upload_id() -> str:
    """Sortable by creation (nanoseconds first), unique (random tail), 32 upper-case hex."""
    return f"{time.time_ns():016X}{os.urandom(8).hex().upper()}"


class Multipart:
    """The multipart uploads of the model's buckets."""

    def __init__(self, model: OssModel) -> None:
        self.model = model
        self.store = model.store

    def initiate(self, bucket: str, key: str, spec: NewObject) -> Upload:
        storage_class = self.model.check_new(bucket, key, spec)
        upload = Upload(bucket, key, new_upload_id(), self.model.clock.now(),
                        replace(spec, storage_class=storage_class, content_md5=None))
        with self.store.transaction():
            self.model.get_bucket(bucket)
            self.store.insert_upload(upload)
        return upload

    def upload(self, bucket: str, key: str, upload_id: str, number: int,
               body: Iterable[bytes], content_md5: bytes | None = None) -> Part:
        """UploadPart (and UploadPartCopy, with the source's bytes as ``body``)."""
        if not 1 <= number <= MAX_PARTS:
            raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive.",
                                  ArgumentName="partNumber", ArgumentValue=str(number))
        self.get(bucket, key, upload_id)
        blob = self.store.write_blob(at_most(body, MAX_OBJECT_SIZE))
        if content_md5 is not None and content_md5 != blob.md5:
            self.store.drop_blob(blob.name)
            raise InvalidDigest("The Content-MD5 you specified did not match what we received.")
        part = Part(number, blob.size, blob.md5.hex().upper(), blob.crc64,
                    self.model.clock.now(), blob.name)
        replaced = None
        try:
            with self.store.transaction():
                self.get(bucket, key, upload_id)
                replaced = self.store.part(upload_id, number)
                self.store.save_part(upload_id, part)
        except BaseException:
            self.store.drop_blob(blob.name)
            raise
        if replaced is not None:
            self.store.drop_blob(replaced.blob)
        return part

    def get(self, bucket: str, key: str, upload_id: str) -> Upload:
        self.model.get_bucket(bucket)
        upload = self.store.upload(upload_id)
        if upload is None or (upload.bucket, upload.key) != (bucket, key):
            raise NoSuchUpload(UploadId=upload_id)
        return upload

    def list_parts(self, bucket: str, key: str, upload_id: str, marker: int,
                   limit: int) -> tuple[Upload, list[Part], bool]:
        upload = self.get(bucket, key, upload_id)
        parts = self.store.parts(upload_id, marker, limit + 1)
        return upload, parts[:limit], len(parts) > limit

    def list_uploads(self, bucket: str, prefix: str, delimiter: str, key_marker: str,
                     id_marker: str, limit: int) -> UploadPage:
        self.model.get_bucket(bucket)
        page = UploadPage([], [], False, "", "")
        for upload in self.store.uploads(bucket, prefix):
            if upload.key < key_marker or (upload.key == key_marker
                                           and (not id_marker or upload.upload_id <= id_marker)):
                continue
            common = None
            if delimiter:
                at = upload.key.find(delimiter, len(prefix))
                common = upload.key[: at + len(delimiter)] if at >= 0 else None
            if common is not None and (common in page.prefixes or common <= key_marker):
                continue
            if len(page.uploads) + len(page.prefixes) >= limit:
                page.truncated = True
                return page
            if common is None:
                page.uploads.append(upload)
                page.next_key, page.next_upload_id = upload.key, upload.upload_id
            else:
                page.prefixes.append(common)
                page.next_key, page.next_upload_id = common, ""
        return page

    def complete(self, bucket: str, key: str, upload_id: str,
                 listed: list[tuple[int, str]] | None, forbid_overwrite: bool) -> ObjectMeta:
        """The object the listed parts make (``listed`` None: every part, x-oss-complete-all)."""
        upload = self.get(bucket, key, upload_id)
        uploaded = {p.number: p for p in self.store.parts(upload_id, 0, MAX_PARTS)}
        if listed is None:
            listed = [(n, p.etag) for n, p in sorted(uploaded.items())]
        if not listed:
            raise MalformedXML("The XML you provided did not name any part.")
        parts: list[Part] = []
        for number, etag in listed:
            if parts and number <= parts[-1].number:
                raise InvalidPartOrder()
            part = uploaded.get(number)
            if part is None or etag.strip('"').upper() != part.etag:
                raise InvalidPart(PartNumber=str(number), ETag=etag)
            parts.append(part)
        for part in parts[:-1]:
            if part.size < MIN_PART_SIZE:
                raise EntityTooSmall(PartNumber=str(part.number), ProposedSize=str(part.size),
                                     MinSizeAllowed=str(MIN_PART_SIZE))
        blob = self.store.write_blob(self._bytes_of(parts))
        digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
        obj = self.model.new_object(bucket, key, blob, upload.spec,
                                    upload.spec.storage_class or "Standard", MULTIPART,
                                    f"{digest.upper()}-{len(parts)}")

        def still_open(_: ObjectMeta | None) -> None:
            if self.store.upload(upload_id) is None:
                raise NoSuchUpload(UploadId=upload_id)
            self.store.delete_upload(upload_id)

        self.model.commit(obj, forbid_overwrite, check=still_open)
        for part in uploaded.values():
            self.store.drop_blob(part.blob)
        return obj

    def _bytes_of(self, parts: list[Part]) -> Iterator[bytes]:
        for part in parts:
            with self.store.open_blob(part.blob) as stream:
                yield from chunks_of(stream)

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        with self.store.transaction():
            self.get(bucket, key, upload_id)
            parts = self.store.parts(upload_id, 0, MAX_PARTS)
            self.store.delete_upload(upload_id)
        for part in parts:
            self.store.drop_blob(part.blob)
