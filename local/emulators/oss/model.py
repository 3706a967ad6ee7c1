"""Buckets and objects: state and rules, no HTTP.

Metadata lives in SQLite (``state_dir/oss.sqlite3``) and object bytes in files under
``state_dir/oss/blobs``, so a new ``ObjectStore`` on the same directory sees everything the last
one stored. Blob files are named by a random id, never by the key (keys may hold ``/``, ``..``
or bytes a file system rejects). A blob is written to ``oss/tmp`` and renamed into place before
the row that points at it is committed: a crash of the process leaves at worst an orphan file,
which the next start sweeps, never a row pointing at half an object. Empty objects have no blob.
Durability is the process's, not the disk's: nothing is fsynced (SQLite runs WAL with
``synchronous=NORMAL``), so a killed or restarted local cloud loses nothing, while a power cut
may lose the last writes — the trade that keeps a 10,000-object fan-out from waiting on the disk.

One store per directory at a time: the start-up sweep would delete a live store's temp files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .crc64 import Crc64
from .errors import OssError

ACLS = ("private", "public-read", "public-read-write")
STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
REDUNDANCY_TYPES = ("LRS", "ZRS")
MAX_OBJECT_SIZE = 5 * 1024**3  # PutObject limit; larger objects need multipart on the cloud
MAX_KEY_BYTES = 1023
CHUNK = 1 << 20

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_OBJECT_COLS = ("bucket, key, size, etag, crc64, content_type, meta, headers, last_modified, "
                "storage_class, blob")


def valid_bucket_name(name: str) -> bool:
    return bool(_BUCKET_RE.match(name))


def check_key(key: str) -> None:
    if not key:
        raise OssError("InvalidObjectName", "The Object name can not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise OssError("InvalidObjectName", "The Length of Object name must be less than 1024")
    if key[0] in "/\\":
        raise OssError("InvalidObjectName")


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
    acl: str
    storage_class: str
    redundancy: str


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
    blob: str | None

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'


@dataclass
class ListPage:
    """One page of a listing; ``next_marker`` is the last key or common prefix returned."""

    objects: list[ObjectMeta]
    prefixes: list[str]
    truncated: bool
    next_marker: str


@dataclass(frozen=True)
class NewObject:
    """What a writer supplies besides the bytes."""

    content_type: str = "application/octet-stream"
    meta: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    storage_class: str | None = None
    content_md5: bytes | None = None  # raw 16-byte digest the body must match
    forbid_overwrite: bool = False


class ObjectStore:
    """Thread-safe bucket and object store; one lock serialises every database access."""

    def __init__(self, state_dir: Path, now: Callable[[], float]) -> None:
        self._now = now
        self._blobs = state_dir / "oss" / "blobs"
        self._tmp = state_dir / "oss" / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(state_dir / "oss.sqlite3"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL, "
            "acl TEXT NOT NULL, storage_class TEXT NOT NULL, redundancy TEXT NOT NULL)"
        )
        # crc64 is TEXT: an unsigned 64-bit value overflows SQLite's signed INTEGER.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (bucket TEXT NOT NULL, key TEXT NOT NULL, "
            "size INTEGER NOT NULL, etag TEXT NOT NULL, crc64 TEXT NOT NULL, "
            "content_type TEXT NOT NULL, meta TEXT NOT NULL, headers TEXT NOT NULL, "
            "last_modified REAL NOT NULL, storage_class TEXT NOT NULL, blob TEXT, "
            "PRIMARY KEY (bucket, key)) WITHOUT ROWID"
        )
        self._sweep()

    # --- plumbing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _blob_path(self, blob: str) -> Path:
        return self._blobs / blob[:2] / blob

    def _drop_blob(self, blob: str | None) -> None:
        if blob:
            with contextlib.suppress(FileNotFoundError):
                self._blob_path(blob).unlink()

    def _sweep(self, temp_files: bool = True) -> None:
        """Remove temp files and blobs no row points at (left by a crash between steps)."""
        for leftover in self._tmp.iterdir() if temp_files else ():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with self._lock:
            live = {r[0] for r in self._db.execute(
                "SELECT blob FROM objects WHERE blob IS NOT NULL")}
        for shard in self._blobs.iterdir():
            for path in shard.iterdir() if shard.is_dir() else ():
                if path.name not in live:
                    with contextlib.suppress(OSError):
                        path.unlink()

    @staticmethod
    def _row_to_object(row: tuple[Any, ...]) -> ObjectMeta:
        return ObjectMeta(
            bucket=row[0], key=row[1], size=row[2], etag=row[3], crc64=int(row[4]),
            content_type=row[5], meta=json.loads(row[6]), headers=json.loads(row[7]),
            last_modified=row[8], storage_class=row[9], blob=row[10],
        )

    # --- buckets ---------------------------------------------------------------------------
    def create_bucket(self, name: str, acl: str | None = None, storage_class: str | None = None,
                      redundancy: str | None = None) -> bool:
        """Create ``name``; True if new. Re-creating your own bucket only updates its ACL."""
        if not valid_bucket_name(name):
            raise OssError("InvalidBucketName", BucketName=name)
        if acl is not None and acl not in ACLS:
            raise OssError("InvalidArgument", "no such bucket access control exists")
        if storage_class is not None and storage_class not in STORAGE_CLASSES:
            raise OssError("InvalidArgument", f"invalid storage class {storage_class!r}")
        if redundancy is not None and redundancy not in REDUNDANCY_TYPES:
            raise OssError("InvalidArgument", f"invalid data redundancy type {redundancy!r}")
        with self._tx() as db:
            row = db.execute("SELECT storage_class, redundancy FROM buckets WHERE name = ?",
                             (name,)).fetchone()
            if row is None:
                db.execute("INSERT INTO buckets VALUES (?, ?, ?, ?, ?)", (
                    name, self._now(), acl or "private", storage_class or "Standard",
                    redundancy or "LRS"))
                return True
            if storage_class is not None and storage_class != row[0]:
                raise OssError("BucketAlreadyExists",
                               "Cannot modify existing bucket's storage class.")
            if redundancy is not None and redundancy != row[1]:
                raise OssError("BucketAlreadyExists",
                               "Bucket already exists can't modify data redundancy type.")
            if acl is not None:
                db.execute("UPDATE buckets SET acl = ? WHERE name = ?", (acl, name))
            return False

    def get_bucket(self, name: str) -> Bucket:
        with self._lock:
            row = self._db.execute(
                "SELECT name, created, acl, storage_class, redundancy FROM buckets WHERE name = ?",
                (name,)).fetchone()
        if row is None:
            raise OssError("NoSuchBucket", BucketName=name)
        return Bucket(*row)

    def set_bucket_acl(self, name: str, acl: str) -> None:
        if acl not in ACLS:
            raise OssError("InvalidArgument", "no such bucket access control exists")
        with self._tx() as db:
            if db.execute("UPDATE buckets SET acl = ? WHERE name = ?", (acl, name)).rowcount == 0:
                raise OssError("NoSuchBucket", BucketName=name)

    def delete_bucket(self, name: str) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone() is None:
                raise OssError("NoSuchBucket", BucketName=name)
            if db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1",
                          (name,)).fetchone() is not None:
                raise OssError("BucketNotEmpty", BucketName=name)
            db.execute("DELETE FROM buckets WHERE name = ?", (name,))

    def list_buckets(self, prefix: str = "", marker: str = "",
                     max_keys: int = 100) -> tuple[list[Bucket], bool]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, created, acl, storage_class, redundancy FROM buckets "
                "WHERE name > ? AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?",
                (marker, len(prefix), prefix, max_keys + 1)).fetchall()
        return [Bucket(*r) for r in rows[:max_keys]], len(rows) > max_keys

    def bucket_stats(self, name: str) -> tuple[int, int]:
        """(object count, total bytes) of a bucket."""
        self.get_bucket(name)
        with self._lock:
            count, total = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE bucket = ?",
                (name,)).fetchone()
        return int(count), int(total)

    # --- objects ---------------------------------------------------------------------------
    def put_object(self, bucket: str, key: str, body: Iterable[bytes],
                   spec: NewObject | None = None) -> ObjectMeta:
        """Store ``body`` (an iterable of chunks) under ``key``; replaces any previous object."""
        spec = spec or NewObject()
        check_key(key)
        target = self.get_bucket(bucket)
        storage_class = spec.storage_class or target.storage_class
        if storage_class not in STORAGE_CLASSES:
            raise OssError("InvalidArgument", f"invalid storage class {storage_class!r}")
        blob, size, md5, crc = self._write_blob(body)
        if spec.content_md5 is not None and spec.content_md5 != md5:
            self._drop_blob(blob)
            raise OssError("InvalidDigest",
                           "The Content-MD5 you specified did not match what we received.")
        obj = ObjectMeta(
            bucket=bucket, key=key, size=size, etag=md5.hex().upper(), crc64=crc,
            content_type=spec.content_type, meta=dict(spec.meta or {}),
            headers=dict(spec.headers or {}), last_modified=self._now(),
            storage_class=storage_class, blob=blob,
        )
        self._commit(obj, spec.forbid_overwrite)
        return obj

    def _write_blob(self, body: Iterable[bytes]) -> tuple[str | None, int, bytes, int]:
        blob = uuid.uuid4().hex
        tmp = self._tmp / blob
        md5, crc, size = hashlib.md5(), Crc64(), 0
        try:
            with open(tmp, "wb") as out:
                for chunk in body:
                    size += len(chunk)
                    if size > MAX_OBJECT_SIZE:
                        raise OssError("EntityTooLarge")
                    md5.update(chunk)
                    crc.update(chunk)
                    out.write(chunk)
                out.flush()
            if size == 0:
                tmp.unlink()
                return None, 0, md5.digest(), crc.value
            final = self._blob_path(blob)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return blob, size, md5.digest(), crc.value

    def _commit(self, obj: ObjectMeta, forbid_overwrite: bool) -> None:
        old: str | None = None
        try:
            with self._tx() as db:
                if db.execute("SELECT 1 FROM buckets WHERE name = ?",
                              (obj.bucket,)).fetchone() is None:
                    raise OssError("NoSuchBucket", BucketName=obj.bucket)
                row = db.execute("SELECT blob FROM objects WHERE bucket = ? AND key = ?",
                                 (obj.bucket, obj.key)).fetchone()
                if row is not None and forbid_overwrite:
                    raise OssError("FileAlreadyExists")
                old = row[0] if row else None
                db.execute(f"INSERT OR REPLACE INTO objects ({_OBJECT_COLS}) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                               obj.bucket, obj.key, obj.size, obj.etag, str(obj.crc64),
                               obj.content_type, json.dumps(obj.meta), json.dumps(obj.headers),
                               obj.last_modified, obj.storage_class, obj.blob))
        except BaseException:
            self._drop_blob(obj.blob)
            raise
        self._drop_blob(old)  # after the commit, so a crash never loses the live copy

    def head_object(self, bucket: str, key: str) -> ObjectMeta:
        self.get_bucket(bucket)
        with self._lock:
            row = self._db.execute(f"SELECT {_OBJECT_COLS} FROM objects "
                                   "WHERE bucket = ? AND key = ?", (bucket, key)).fetchone()
        if row is None:
            raise OssError("NoSuchKey", Key=key)
        return self._row_to_object(row)

    def open_object(self, bucket: str, key: str) -> tuple[ObjectMeta, BinaryIO]:
        """The object and an open file of its bytes (the caller closes it).

        Opened under the lock, so a concurrent overwrite cannot unlink the blob in between;
        once open, POSIX keeps the old bytes readable even after the overwrite deletes them.
        """
        with self._lock:
            obj = self.head_object(bucket, key)
            if obj.blob is None:
                return obj, io.BytesIO(b"")
            return obj, open(self._blob_path(obj.blob), "rb")

    def copy_object(self, src_bucket: str, src_key: str, bucket: str, key: str,
                    spec: NewObject | None = None) -> ObjectMeta:
        """Copy bytes; ``spec`` None keeps the source's metadata (COPY directive)."""
        source, stream = self.open_object(src_bucket, src_key)
        with stream:
            if spec is None:
                spec = NewObject(content_type=source.content_type, meta=source.meta,
                                 headers=source.headers, storage_class=source.storage_class)
            return self.put_object(bucket, key, iter(lambda: stream.read(CHUNK), b""), spec)

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete ``key``; deleting a missing key succeeds (False), as on OSS."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
                raise OssError("NoSuchBucket", BucketName=bucket)
            # no DELETE … RETURNING: it needs SQLite 3.35, newer than some 3.10 builds ship
            row = db.execute("SELECT blob FROM objects WHERE bucket = ? AND key = ?",
                             (bucket, key)).fetchone()
            db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
        if row is None:
            return False
        self._drop_blob(row[0])
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
            rows = self._scan(bucket, lower, inclusive, upper, batch)
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

    def _scan(self, bucket: str, lower: str, inclusive: bool, upper: str | None,
              limit: int) -> list[ObjectMeta]:
        sql = (f"SELECT {_OBJECT_COLS} FROM objects WHERE bucket = ? AND key "
               f"{'>=' if inclusive else '>'} ?")
        args: list[Any] = [bucket, lower]
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row_to_object(r) for r in rows]

    # --- whole store -----------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        with self._lock:
            buckets = self._db.execute(
                "SELECT b.name, b.acl, b.storage_class, b.created, COUNT(o.key), "
                "COALESCE(SUM(o.size), 0) FROM buckets b LEFT JOIN objects o "
                "ON o.bucket = b.name GROUP BY b.name ORDER BY b.name").fetchall()
        return {"buckets": {
            name: {"acl": acl, "storage_class": sc, "created": created, "objects": count,
                   "bytes": total}
            for name, acl, sc, created, count, total in buckets}}

    def reset(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM objects")
            db.execute("DELETE FROM buckets")
        self._sweep(temp_files=False)  # temp files may belong to uploads still in flight

    def close(self) -> None:
        with self._lock:
            self._db.close()
