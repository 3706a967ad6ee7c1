"""The OSS emulator's entities and the rules that need nothing but themselves.

The rules and their public sources:

* Bucket names: 3-63 characters of lower-case letters, digits and ``-``, starting and ending
  with a letter or digit; object names: 1-1023 bytes of UTF-8, not starting with ``/`` or
  ``\\`` (https://www.alibabacloud.com/help/en/oss/support/http-400-status-code, the
  ``InvalidBucketName`` and ``InvalidObjectName`` entries; oss2 2.19.1 checks the same bucket
  rule client-side in ``oss2.utils.is_valid_bucket_name``).
* Re-creating a bucket you own succeeds and may change its ACL, never its storage class or
  redundancy type: 409 ``BucketAlreadyExists`` with "Cannot modify existing bucket's storage
  class." (https://www.alibabacloud.com/help/doc-detail/185809.htm, HTTP status code 409).
* Storage classes: the names are Standard, IA, Archive, ColdArchive, DeepColdArchive (any
  other is ``InvalidArgument``, https://www.alibabacloud.com/help/en/oss/support/0013-00000101).
  The local OSS stores Standard only and answers every other class as a region or an OSS on
  CloudBox without it does — the request refused, nothing created
  (https://www.alibabacloud.com/help/en/oss/user-guide/0015-00000226 for PutBucket,
  https://www.alibabacloud.com/help/en/oss/support/0013-00000108 for objects).
* ACLs: a bucket's is private, public-read or public-read-write; an object's also ``default``
  (follow the bucket) (https://www.alibabacloud.com/help/en/oss/developer-reference/putobjectacl).
* Object tags: at most 10, unique keys of at most 128 characters, values of at most 256
  (https://www.alibabacloud.com/help/en/oss/user-guide/0010-00000217).
* Conditional reads: a failed ``If-Match`` / ``If-Unmodified-Since`` is 412, a failed
  ``If-None-Match`` / ``If-Modified-Since`` 304 (https://www.alibabacloud.com/help/en/oss/developer-reference/getobject).
* ETag: the upper-case hex MD5 of a simple upload; of a multipart object the MD5 of the parts'
  binary MD5s with ``-<part count>``; of an appendable object not an MD5 of its content
  (https://www.alibabacloud.com/help/en/oss/developer-reference/completemultipartupload,
  https://www.alibabacloud.com/help/en/oss/developer-reference/appendobject).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .errors import (
    AccessDenied,
    BucketAlreadyExists,
    InvalidArgument,
    InvalidBucketName,
    InvalidObjectName,
    InvalidTag,
    NotModified,
    PreconditionFailed,
)

ACLS = ("private", "public-read", "public-read-write")
OBJECT_ACLS = ("default", *ACLS)
STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
SUPPORTED_STORAGE_CLASSES = ("Standard",)
REDUNDANCY_TYPES = ("LRS", "ZRS")
MAX_OBJECT_SIZE = 5 * 1024**3  # PutObject and AppendObject limit
MAX_KEY_BYTES = 1023
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 10, 128, 256
CHUNK = 1 << 20
NORMAL, APPENDABLE, MULTIPART, SYMLINK = "Normal", "Appendable", "Multipart", "Symlink"

# The ACLs that grant an unsigned request "read" or "write" access.
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


def check_acl(acl: str, choices: tuple[str, ...] = ACLS) -> None:
    if acl not in choices:
        what = "bucket" if choices == ACLS else "object"
        raise InvalidArgument(f"no such {what} access control exists",
                              ArgumentName="x-oss-acl" if what == "bucket" else "x-oss-object-acl",
                              ArgumentValue=acl)


def check_storage_class(storage_class: str) -> None:
    if storage_class not in STORAGE_CLASSES:
        raise InvalidArgument(f"invalid storage class {storage_class!r}",
                              ArgumentName="x-oss-storage-class", ArgumentValue=storage_class)
    if storage_class not in SUPPORTED_STORAGE_CLASSES:
        raise InvalidArgument(f"The storage class {storage_class} is not supported in this "
                              "region (the local OSS stores Standard only).",
                              ArgumentName="StorageClass", ArgumentValue=storage_class)


def check_tags(tags: dict[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise InvalidTag(f"Object tags cannot be greater than {MAX_TAGS}")
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_KEY:
            raise InvalidTag("The tag key is empty or longer than 128 characters.")
        if len(value) > MAX_TAG_VALUE:
            raise InvalidTag("The tag value is longer than 256 characters.")


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


def check_anonymous(acl: str, access: str) -> None:
    """Refuse an unsigned request that needs ``access`` ("read"/"write") the ACL denies."""
    if acl not in ANONYMOUS_GRANTS.get(access, ()):
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
    """Everything stored about an object except its bytes. ``etag`` is upper-case hex."""

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
    blob: str | None  # the file holding the bytes; None for an empty object or a symlink
    kind: str = NORMAL  # x-oss-object-type: Normal, Appendable, Multipart, Symlink
    acl: str = "default"
    tags: dict[str, str] = field(default_factory=dict)
    target: str | None = None  # a symlink's target key

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
    acl: str = "default"
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def copy_of(cls, source: ObjectMeta) -> NewObject:
        """The metadata CopyObject keeps with the COPY directive (tags and ACL: see the model)."""
        return cls(source.content_type, source.meta, source.headers, source.storage_class,
                   tags=source.tags)


@dataclass
class ListPage:
    """One page of a listing; ``next_marker`` is the last key or common prefix returned."""

    objects: list[ObjectMeta]
    prefixes: list[str]
    truncated: bool
    next_marker: str


@dataclass(frozen=True)
class Upload:
    """A multipart upload in progress: where it goes and what the object will carry."""

    bucket: str
    key: str
    upload_id: str
    initiated: float
    spec: NewObject


@dataclass(frozen=True)
class Part:
    """One uploaded part; ``etag`` is the upper-case hex MD5 of its bytes."""

    number: int
    size: int
    etag: str
    crc64: int
    last_modified: float
    blob: str | None
