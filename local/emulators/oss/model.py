"""Buckets and objects, and the rules OSS applies to them; no HTTP, no SQL (see ``store.py``).

The rules and their public sources:

* Bucket names: 3-63 characters of lower-case letters, digits and ``-``, starting and ending
  with a letter or digit; object names: 1-1023 bytes of UTF-8, not starting with ``/`` or
  ``\\`` (https://www.alibabacloud.com/help/en/oss/support/http-400-status-code, the
  ``InvalidBucketName`` and ``InvalidObjectName`` entries; oss2 2.19.1 checks the same bucket
  rule client-side in ``oss2.utils.is_valid_bucket_name``).
* PutObject takes at most 5 GB, and overwrites an existing key unless the request says
  ``x-oss-forbid-overwrite: true`` (then 409 ``FileAlreadyExists``)
  (https://www.alibabacloud.com/help/en/oss/developer-reference/putobject).
* Re-creating a bucket you own succeeds and may change its ACL, never its storage class or
  redundancy type: 409 ``BucketAlreadyExists`` with "Cannot modify existing bucket's storage
  class." (https://www.alibabacloud.com/help/doc-detail/185809.htm, HTTP status code 409).
* Conditional reads: a failed ``If-Match`` / ``If-Unmodified-Since`` is 412, a failed
  ``If-None-Match`` / ``If-Modified-Since`` 304 (https://www.alibabacloud.com/help/en/oss/developer-reference/getobject).
* Deleting a missing key succeeds (https://www.alibabacloud.com/help/en/oss/developer-reference/deleteobject).
* ETag is the upper-case hex MD5 of a simple upload; CRC-64 is the ECMA-182 value
  (https://www.alibabacloud.com/help/doc-detail/43394.htm; see ``crc64.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketNotEmpty,
    EntityTooLarge,
    FileAlreadyExists,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidObjectName,
    NoSuchBucket,
    NoSuchKey,
    NotModified,
    PreconditionFailed,
)

if TYPE_CHECKING:
    from ..base import Clock
    from .store import OssStore

ACLS = ("private", "public-read", "public-read-write")
STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
REDUNDANCY_TYPES = ("LRS", "ZRS")
MAX_OBJECT_SIZE = 5 * 1024**3  # PutObject limit; larger objects need multipart on the cloud
MAX_KEY_BYTES = 1023
CHUNK = 1 << 20

# The bucket ACLs that grant an unsigned request "read" or "write" access.
ANONYMOUS_GRANTS = {"read": ("public-read", "public-read-write"), "write": ("public-read-write",)}

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def valid_bucket_name(name: str) -> bool:
    return bool(_BUCKET_RE.match(name))


def check_key(key: str) -> None:
    if not key:
        raise InvalidObjectName("The Object name can not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidObjectName("The Length of Object name must be less than 1024")
    if key[0] in "/\\":
        raise InvalidObjectName()


def check_acl(acl: str) -> None:
    if acl not in ACLS:
        raise InvalidArgument("no such bucket access control exists")


def check_storage_class(storage_class: str) -> None:
    if storage_class not in STORAGE_CLASSES:
        raise InvalidArgument(f"invalid storage class {storage_class!r}")


def successor(text: str) -> str | None:
    """The smallest string greater than every string that starts with ``text`` (None: none)."""
    while text:
        code = ord(text[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored as UTF-8
            code = 0xE000
        if code <= 0x10FFFF:
            return text[:-1] + chr(code)
        text = text[:-1]
    return None


# --- entities ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bucket:
    """A bucket's settings; every bucket belongs to the emulator's single account."""

    name: str
    created: float
    acl: str = "private"
    storage_class: str = "Standard"
    redundancy: str = "LRS"

    @classmethod
    def new(cls, name: str, created: float, acl: str | None, storage_class: str | None,
            redundancy: str | None) -> Bucket:
        """A bucket as PutBucket creates it; unset settings take the service's defaults."""
        if not valid_bucket_name(name):
            raise InvalidBucketName(BucketName=name)
        if acl is not None:
            check_acl(acl)
        if storage_class is not None:
            check_storage_class(storage_class)
        if redundancy is not None and redundancy not in REDUNDANCY_TYPES:
            raise InvalidArgument(f"invalid data redundancy type {redundancy!r}")
        return cls(name, created, acl or "private", storage_class or "Standard",
                   redundancy or "LRS")

    def recreated(self, acl: str | None, storage_class: str | None,
                  redundancy: str | None) -> Bucket:
        """This bucket after its owner's PutBucket again with these (validated) settings."""
        if storage_class is not None and storage_class != self.storage_class:
            raise BucketAlreadyExists("Cannot modify existing bucket's storage class.")
        if redundancy is not None and redundancy != self.redundancy:
            raise BucketAlreadyExists("Bucket already exists can't modify data redundancy type.")
        return self if acl is None else replace(self, acl=acl)

    def check_anonymous(self, access: str) -> None:
        """Refuse an unsigned request that needs ``access`` ("read"/"write") the ACL denies."""
        if self.acl not in ANONYMOUS_GRANTS.get(access, ()):
            raise AccessDenied()


@dataclass(frozen=True)
class Conditions:
    """A read's conditional headers (``If-…``); dates as seconds since the epoch."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None


@dataclass(frozen=True)
class ObjectMeta:
    """Everything stored about an object except its bytes. ``etag`` is upper-case hex MD5."""

    bucket: str
    key: str
    size: int
    etag: str
    crc64: int
    content_type: str
    meta: dict[str, str]
    headers: dict[str, str]  # stored standard headers: Cache-Control, Content-Disposition, …
    last_modified: float
    storage_class: str
    blob: str | None  # the file holding the bytes; None for an empty object

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'

    def check_conditions(self, conditions: Conditions) -> None:
        """Raise what a conditional read of this object answers when a condition fails."""
        modified = int(self.last_modified)
        match = conditions.if_match
        if match is not None and match.strip('"').upper() not in ("*", self.etag):
            raise PreconditionFailed(Condition="If-Match")
        since = conditions.if_unmodified_since
        if since is not None and modified > since:
            raise PreconditionFailed(Condition="If-Unmodified-Since")
        none_match = conditions.if_none_match
        if none_match is not None and none_match.strip('"').upper() in ("*", self.etag):
            raise NotModified()
        since = conditions.if_modified_since
        if since is not None and modified <= since:
            raise NotModified()


@dataclass(frozen=True)
class NewObject:
    """What a writer supplies besides the bytes."""

    content_type: str = "application/octet-stream"
    meta: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    storage_class: str | None = None  # None: the bucket's
    content_md5: bytes | None = None  # raw 16-byte digest the body must match
    forbid_overwrite: bool = False

    @classmethod
    def copy_of(cls, source: ObjectMeta) -> NewObject:
        """The metadata CopyObject keeps with the COPY directive."""
        return cls(source.content_type, source.meta, source.headers, source.storage_class)


@dataclass
class ListPage:
    """One page of a listing; ``next_marker`` is the last key or common prefix returned."""

    objects: list[ObjectMeta]
    prefixes: list[str]
    truncated: bool
    next_marker: str


def _at_most(body: Iterable[bytes], limit: int) -> Iterator[bytes]:
    size = 0
    for chunk in body:
        size += len(chunk)
        if size > limit:
            raise EntityTooLarge()
        yield chunk


# --- the service ------------------------------------------------------------------------------
class OssModel:
    """The buckets and objects of the emulator's single account in ``region``.

    Thread-safe: each change runs in one store transaction, its rules checked inside it.
    """

    def __init__(self, store: OssStore, clock: Clock, region: str) -> None:
        self.store = store
        self.clock = clock
        self.region = region

    # --- buckets ------------------------------------------------------------------------------
    def create_bucket(self, name: str, acl: str | None = None, storage_class: str | None = None,
                      redundancy: str | None = None) -> bool:
        """Create ``name``; True if new. Re-creating your own bucket only updates its ACL."""
        wanted = Bucket.new(name, self.clock.now(), acl, storage_class, redundancy)
        with self.store.transaction():
            current = self.store.bucket(name)
            if current is None:
                self.store.insert_bucket(wanted)
                return True
            updated = current.recreated(acl, storage_class, redundancy)
            if updated != current:
                self.store.set_bucket_acl(name, updated.acl)
            return False

    def get_bucket(self, name: str) -> Bucket:
        bucket = self.store.bucket(name)
        if bucket is None:
            raise NoSuchBucket(BucketName=name)
        return bucket

    def set_bucket_acl(self, name: str, acl: str) -> None:
        check_acl(acl)
        if not self.store.set_bucket_acl(name, acl):
            raise NoSuchBucket(BucketName=name)

    def delete_bucket(self, name: str) -> None:
        with self.store.transaction():
            self.get_bucket(name)
            if self.store.has_objects(name):
                raise BucketNotEmpty(BucketName=name)
            self.store.delete_bucket(name)

    def list_buckets(self, prefix: str = "", marker: str = "",
                     max_keys: int = 100) -> tuple[list[Bucket], bool]:
        buckets = self.store.buckets(prefix, marker, max_keys + 1)
        return buckets[:max_keys], len(buckets) > max_keys

    def bucket_stats(self, name: str) -> tuple[int, int]:
        """(object count, total bytes) of a bucket."""
        self.get_bucket(name)
        return self.store.usage(name)

    # --- objects ------------------------------------------------------------------------------
    def put_object(self, bucket: str, key: str, body: Iterable[bytes],
                   spec: NewObject | None = None) -> ObjectMeta:
        """Store ``body`` (an iterable of chunks) under ``key``; replaces any previous object."""
        spec = spec or NewObject()
        check_key(key)
        target = self.get_bucket(bucket)
        storage_class = spec.storage_class or target.storage_class
        check_storage_class(storage_class)
        blob = self.store.write_blob(_at_most(body, MAX_OBJECT_SIZE))
        if spec.content_md5 is not None and spec.content_md5 != blob.md5:
            self.store.drop_blob(blob.name)
            raise InvalidDigest("The Content-MD5 you specified did not match what we received.")
        obj = ObjectMeta(
            bucket=bucket, key=key, size=blob.size, etag=blob.md5.hex().upper(), crc64=blob.crc64,
            content_type=spec.content_type, meta=dict(spec.meta), headers=dict(spec.headers),
            last_modified=self.clock.now(), storage_class=storage_class, blob=blob.name,
        )
        replaced: ObjectMeta | None = None
        try:
            with self.store.transaction():
                self.get_bucket(bucket)
                replaced = self.store.object(bucket, key)
                if replaced is not None and spec.forbid_overwrite:
                    raise FileAlreadyExists()
                self.store.save_object(obj)
        except BaseException:
            self.store.drop_blob(obj.blob)
            raise
        if replaced is not None:  # after the commit, so a crash never loses the live copy
            self.store.drop_blob(replaced.blob)
        return obj

    def head_object(self, bucket: str, key: str) -> ObjectMeta:
        self.get_bucket(bucket)
        obj = self.store.object(bucket, key)
        if obj is None:
            raise NoSuchKey(Key=key)
        return obj

    def open_object(self, bucket: str, key: str) -> tuple[ObjectMeta, BinaryIO]:
        """The object and an open file of its bytes (the caller closes it)."""
        self.get_bucket(bucket)
        found = self.store.open_object(bucket, key)
        if found is None:
            raise NoSuchKey(Key=key)
        return found

    def copy_object(self, src_bucket: str, src_key: str, bucket: str, key: str,
                    spec: NewObject | None = None) -> ObjectMeta:
        """Copy bytes; ``spec`` None keeps the source's metadata (COPY directive)."""
        source, stream = self.open_object(src_bucket, src_key)
        with stream:
            return self.put_object(bucket, key, iter(lambda: stream.read(CHUNK), b""),
                                   spec or NewObject.copy_of(source))

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete ``key``; deleting a missing key succeeds (False), as on OSS."""
        with self.store.transaction():
            self.get_bucket(bucket)
            gone = self.store.object(bucket, key)
            self.store.delete_object(bucket, key)
        if gone is None:
            return False
        self.store.drop_blob(gone.blob)
        return True

    def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                     marker: str = "", max_keys: int = 100) -> ListPage:
        """Keys after ``marker`` starting with ``prefix``, rolled up at ``delimiter``.

        ``marker`` equal to a common prefix (a previous page ended on it) skips that whole
        group, so paging with ``next_marker`` never repeats a prefix.
        """
        self.get_bucket(bucket)
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        last = ""
        lower, inclusive = (prefix, True) if prefix > marker else (marker, False)
        upper = successor(prefix) if prefix else None
        batch = min(max_keys, 1000) + 1
        while True:
            rows = self.store.scan(bucket, lower, inclusive, upper, batch)
            jumped = False
            for obj in rows:
                common = None
                if delimiter:
                    at = obj.key.find(delimiter, len(prefix))
                    if at >= 0:
                        common = obj.key[: at + len(delimiter)]
                if common is None or common != marker:
                    if len(objects) + len(prefixes) >= max_keys:
                        return ListPage(objects, prefixes, True, last)
                    if common is None:
                        objects.append(obj)
                        last = obj.key
                    else:
                        prefixes.append(common)
                        last = common
                if common is not None:
                    # every key inside the group sorts before successor(common): jump past it
                    nxt = successor(common)
                    if nxt is None:
                        return ListPage(objects, prefixes, False, "")
                    lower, inclusive, jumped = nxt, True, True
                    break
                lower, inclusive = obj.key, False
            if not jumped and len(rows) < batch:
                return ListPage(objects, prefixes, False, "")

    # --- whole service ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Every bucket with its settings, object count and bytes (the control API's view)."""
        return {"buckets": {
            b.name: {"acl": b.acl, "storage_class": b.storage_class, "created": b.created,
                     "objects": count, "bytes": size}
            for b, (count, size) in self.store.buckets_with_usage()}}

    def dump(self) -> dict[str, Any]:
        return {"region": self.region, **self.summary()}

    def reset(self) -> None:
        self.store.wipe()

    def close(self) -> None:
        self.store.close()
