"""Buckets and objects, and the rules OSS applies to them; no HTTP, no SQL (see ``store.py``).

The entities and the rules that need nothing else are in ``entities.py``, multipart uploads in
``multipart.py``. The rules here and their public sources:

* PutObject takes at most 5 GB, and overwrites an existing key unless the request says
  ``x-oss-forbid-overwrite: true`` (then 409 ``FileAlreadyExists``)
  (https://www.alibabacloud.com/help/en/oss/developer-reference/putobject).
* Deleting a missing key succeeds (https://www.alibabacloud.com/help/en/oss/developer-reference/deleteobject).
* A bucket is deleted only when it holds no object and no multipart upload in progress, else
  409 ``BucketNotEmpty`` (https://www.alibabacloud.com/help/en/oss/developer-reference/deletebucket).
* AppendObject: ``position`` must equal the object's length (0 for a new object), else 409
  ``PositionNotEqualToLength`` with ``x-oss-next-append-position``; a Normal, Multipart or
  Symlink object is 409 ``ObjectNotAppendable``; the headers of the first append set the
  object's metadata (https://www.alibabacloud.com/help/en/oss/developer-reference/appendobject,
  https://www.alibabacloud.com/help/en/oss/user-guide/0026-00000016).
* A symlink answers reads with its target's bytes, length and ETag; GetSymlink on anything else
  is 400 ``NotSymlink``; a missing target is 404 ``NoSuchKey``
  (https://www.alibabacloud.com/help/en/oss/developer-reference/putsymlink,
  https://www.alibabacloud.com/help/en/oss/developer-reference/getsymlink).
* CopyObject cannot copy an appendable object (the AppendObject pages of the SDK guides, e.g.
  https://www.alibabacloud.com/help/doc-detail/91099.htm): 400 ``OperationNotSupported``.
* Object ACL and tags change neither the bytes nor Last-Modified
  (https://www.alibabacloud.com/help/en/oss/developer-reference/putobjectacl,
  https://www.alibabacloud.com/help/en/oss/developer-reference/putobjecttagging).
* ETag is the upper-case hex MD5 of a simple upload; CRC-64 is the ECMA-182 value
  (https://www.alibabacloud.com/help/doc-detail/43394.htm; see ``crc64.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

from .entities import (
    APPENDABLE,
    MAX_OBJECT_SIZE,
    NORMAL,
    OBJECT_ACLS,
    SYMLINK,
    Bucket,
    ListPage,
    NewObject,
    ObjectMeta,
    check_acl,
    check_key,
    check_storage_class,
    check_tags,
    successor,
)
from .errors import (
    BucketNotEmpty,
    FileAlreadyExists,
    InvalidDigest,
    NoSuchBucket,
    NoSuchKey,
    NotSymlink,
    ObjectNotAppendable,
    OperationNotSupported,
    PositionNotEqualToLength,
)
from .multipart import Multipart
from .store import at_most, chunks_of

if TYPE_CHECKING:
    from ..base import Clock
    from .store import Blob, OssStore

NEXT_POSITION = "x-oss-next-append-position"
OPEN_ATTEMPTS = 5  # looks at an object whose bytes another process dropped under the read


# --- the service ------------------------------------------------------------------------------
class OssModel:
    """The buckets and objects of the emulator's single account in ``region``.

    Thread-safe: each change runs in one store transaction, its rules checked inside it.
    ``multipart`` holds the multipart uploads (``multipart.py``).
    """

    def __init__(self, store: OssStore, clock: Clock, region: str) -> None:
        self.store = store
        self.clock = clock
        self.region = region
        self.multipart = Multipart(self)

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
            if self.store.has_objects(name) or self.store.upload_count(name):
                raise BucketNotEmpty(BucketName=name)
            self.store.delete_bucket(name)

    def list_buckets(self, prefix: str = "", marker: str = "",
                     max_keys: int = 100) -> tuple[list[Bucket], bool]:
        buckets = self.store.buckets(prefix, marker, max_keys + 1)
        return buckets[:max_keys], len(buckets) > max_keys

    def bucket_stats(self, name: str) -> tuple[int, int, int]:
        """(object count, total bytes, multipart uploads in progress) of a bucket."""
        self.get_bucket(name)
        return (*self.store.usage(name), self.store.upload_count(name))

    def acl_for(self, bucket: str, key: str) -> str:
        """The ACL that judges an unsigned request: the object's unless ``default``."""
        found = self.get_bucket(bucket).acl
        obj = self.store.object(bucket, key) if key else None
        return obj.acl if obj is not None and obj.acl != "default" else found

    # --- objects ------------------------------------------------------------------------------
    def put_object(self, bucket: str, key: str, body: Iterable[bytes],
                   spec: NewObject | None = None) -> ObjectMeta:
        """Store ``body`` (an iterable of chunks) under ``key``; replaces any previous object."""
        spec = spec or NewObject()
        storage_class = self.check_new(bucket, key, spec)
        blob = self.store.write_blob(at_most(body, MAX_OBJECT_SIZE), defer=True)
        if spec.content_md5 is not None and spec.content_md5 != blob.md5:
            if blob.pending is None:
                self.store.drop_blob(blob.name)
            raise InvalidDigest("The Content-MD5 you specified did not match what we received.")
        obj = self.new_object(bucket, key, blob, spec, storage_class)
        return self.commit(obj, spec.forbid_overwrite, pending=blob)

    def check_new(self, bucket: str, key: str, spec: NewObject) -> str:
        """Check what a write names before any byte is stored; the storage class it gets."""
        check_key(key)
        target = self.get_bucket(bucket)
        storage_class = spec.storage_class or target.storage_class
        check_storage_class(storage_class)
        check_acl(spec.acl, OBJECT_ACLS)
        check_tags(spec.tags)
        return storage_class

    def new_object(self, bucket: str, key: str, blob: Blob, spec: NewObject, storage_class: str,
                   kind: str = NORMAL, etag: str | None = None) -> ObjectMeta:
        return ObjectMeta(
            bucket=bucket, key=key, size=blob.size, etag=etag or blob.md5.hex().upper(),
            crc64=blob.crc64, content_type=spec.content_type, meta=dict(spec.meta),
            headers=dict(spec.headers), last_modified=self.clock.now(),
            storage_class=storage_class, blob=blob.name, kind=kind, acl=spec.acl,
            tags=dict(spec.tags))

    def commit(self, obj: ObjectMeta, forbid_overwrite: bool = False,
               check: Callable[[ObjectMeta | None], None] | None = None,
               pending: Blob | None = None) -> ObjectMeta:
        """Save ``obj`` over whatever its key holds; ``check`` may refuse, seeing what is there.
        ``pending``: ``obj``'s inline blob, stored in the same transaction as the object.

        A refused or failed commit drops the new blob; a replaced blob is dropped after the
        commit, so a crash never loses the live copy.
        """
        old_blob: str | None = None
        try:
            with self.store.transaction():
                self.get_bucket(obj.bucket)
                if check is None:  # only whether there is one, and its blob
                    found, old_blob = self.store.blob_of(obj.bucket, obj.key)
                else:
                    replaced = self.store.object(obj.bucket, obj.key)
                    found = replaced is not None
                    old_blob = replaced.blob if replaced is not None else None
                if found and forbid_overwrite:
                    raise FileAlreadyExists()
                if check is not None:
                    check(replaced)
                if pending is not None:
                    self.store.save_pending(pending)
                self.store.save_object(obj)
        except BaseException:
            if pending is None or pending.pending is None:  # else it went with the rollback
                self.store.drop_blob(obj.blob)
            raise
        if found and old_blob != obj.blob:
            self.store.drop_blob(old_blob)
        return obj

    def append_object(self, bucket: str, key: str, position: int, body: Iterable[bytes],
                      spec: NewObject) -> ObjectMeta:
        """AppendObject: ``body`` after the ``position`` bytes the object has."""
        storage_class = self.check_new(bucket, key, spec)
        current = self.store.object(bucket, key)

        def check(found: ObjectMeta | None) -> None:
            if found is not None and found.kind != APPENDABLE:
                raise ObjectNotAppendable()
            length = 0 if found is None else found.size
            if length != position or (found and current and found.blob != current.blob):
                raise PositionNotEqualToLength(headers={NEXT_POSITION: str(length)})

        check(current)
        md5 = hashlib.md5()

        def appended() -> Iterator[bytes]:
            if current is not None and current.blob is not None:
                with self.store.open_blob(current.blob) as old:
                    yield from chunks_of(old)
            for chunk in body:
                md5.update(chunk)
                yield chunk

        blob = self.store.write_blob(at_most(appended(), MAX_OBJECT_SIZE))
        if spec.content_md5 is not None and spec.content_md5 != md5.digest():
            self.store.drop_blob(blob.name)
            raise InvalidDigest("The Content-MD5 you specified did not match what we received.")
        if current is not None:  # the first append's headers are the object's metadata
            spec = replace(spec, content_type=current.content_type, meta=current.meta,
                           headers=current.headers, acl=current.acl, tags=current.tags)
        # not the content's MD5 (AppendObject reference): derived from its CRC and length
        etag = f"{blob.crc64:016X}{blob.size:016X}"
        obj = self.new_object(bucket, key, blob, spec, storage_class, APPENDABLE, etag)
        return self.commit(obj, check=check)

    def put_symlink(self, bucket: str, key: str, target: str, spec: NewObject) -> ObjectMeta:
        storage_class = self.check_new(bucket, key, spec)
        check_key(target)
        obj = ObjectMeta(
            bucket=bucket, key=key, size=0,
            etag=hashlib.md5(target.encode("utf-8")).hexdigest().upper(), crc64=0,
            content_type=spec.content_type, meta=dict(spec.meta), headers=dict(spec.headers),
            last_modified=self.clock.now(), storage_class=storage_class, blob=None,
            kind=SYMLINK, acl=spec.acl, tags=dict(spec.tags), target=target)
        return self.commit(obj, spec.forbid_overwrite)

    def get_symlink(self, bucket: str, key: str) -> ObjectMeta:
        obj = self.stored_object(bucket, key)
        if obj.kind != SYMLINK:
            raise NotSymlink()
        return obj

    def stored_object(self, bucket: str, key: str) -> ObjectMeta:
        """The object under ``key`` itself (a symlink as a symlink)."""
        self.get_bucket(bucket)
        obj = self.store.object(bucket, key)
        if obj is None:
            raise NoSuchKey(Key=key)
        return obj

    def head_object(self, bucket: str, key: str) -> ObjectMeta:
        """The object as a read presents it: a symlink with its target's bytes."""
        return self._present(self.stored_object(bucket, key))

    def _present(self, obj: ObjectMeta) -> ObjectMeta:
        if obj.kind != SYMLINK or obj.target is None:
            return obj
        target = self.store.object(obj.bucket, obj.target)
        if target is None or target.kind == SYMLINK:
            raise NoSuchKey("The symlink target object does not exist", Key=obj.key)
        return replace(target, key=obj.key, kind=SYMLINK, meta=obj.meta, acl=obj.acl,
                       tags=obj.tags, last_modified=max(obj.last_modified,
                                                        target.last_modified))

    def open_object(self, bucket: str, key: str) -> tuple[ObjectMeta, BinaryIO]:
        """The object as a read presents it and an open file of its bytes (the caller closes
        it). Opened under the store's lock, so an overwrite by this process cannot drop its
        bytes first; one by another process serving the same store (``--processes``) can,
        between the row and the bytes: the object is then looked up again (it was replaced,
        or deleted), as OSS answers a read with the old bytes or the new, never an error."""
        for _ in range(OPEN_ATTEMPTS - 1):
            with self.store.lock, contextlib.suppress(FileNotFoundError):
                obj = self.head_object(bucket, key)
                return obj, self.store.open_blob(obj.blob)
        with self.store.lock:  # the last look: a blob still missing is the caller's error
            obj = self.head_object(bucket, key)
            return obj, self.store.open_blob(obj.blob)

    def copy_object(self, src_bucket: str, src_key: str, bucket: str, key: str,
                    spec: NewObject | None = None, acl: str | None = None,
                    tags: dict[str, str] | None = None) -> ObjectMeta:
        """Copy bytes; ``spec`` None keeps the source's metadata (COPY directive), ``tags``
        None its tags (``x-oss-tagging-directive: COPY``); ``acl`` None is ``default``, or
        the object's own ACL when it is copied onto itself (updating its metadata)."""
        source, stream = self.open_object(src_bucket, src_key)
        if source.kind == APPENDABLE:
            stream.close()
            raise OperationNotSupported("CopyObject cannot copy an appendable object.")
        same = (src_bucket, src_key) == (bucket, key)
        spec = spec or NewObject.copy_of(source)
        spec = replace(spec, tags=source.tags if tags is None else tags,
                       acl=acl or (source.acl if same else "default"))
        with stream:
            return self.put_object(bucket, key, chunks_of(stream), spec)

    def set_object_acl(self, bucket: str, key: str, acl: str) -> None:
        check_acl(acl, OBJECT_ACLS)
        self._update(bucket, key, acl=acl)

    def set_object_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        check_tags(tags)
        self._update(bucket, key, tags=tags)

    def _update(self, bucket: str, key: str, **changes: Any) -> None:
        with self.store.transaction():
            self.store.save_object(replace(self.stored_object(bucket, key), **changes))

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
