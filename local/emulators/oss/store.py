"""Where the OSS emulator keeps its state: metadata in SQLite, object bytes in blob files.

Metadata lives in ``state_dir/oss.sqlite3`` and object bytes in files under
``state_dir/oss/blobs``, so a new store on the same directory sees everything the last one
stored. Blob files are named by a random id, never by the key (keys may hold ``/``, ``..`` or
bytes a file system rejects). A blob is written to ``oss/tmp`` and renamed into place before the
row that points at it is committed: a crash of the process leaves at worst an orphan file, which
the next start sweeps, never a row pointing at half an object. Empty objects have no blob.
Blobs of at most ``INLINE_MAX`` bytes (a result.json, an output.txt, a small part) keep their
bytes in a row of ``inline_blobs`` instead (their name starts with ``INLINE``): creating,
renaming and opening a file cost more CPU than the whole rest of a PutObject. A PutObject
commits the blob's row in the same transaction as the object's row that points at it (one
write transaction per small object); elsewhere the blob's row is committed first, as a file is
renamed into place first, so a crash leaves at worst an orphan blob row, which the next start
sweeps.
Durability is the process's, not the disk's: nothing is fsynced (SQLite runs WAL with
``synchronous=NORMAL``), so a killed or restarted local cloud loses nothing, while a power cut
may lose the last writes — the trade that keeps a 10,000-object fan-out from waiting on the disk.

Multipart uploads keep their parts as blob files of their own, concatenated into the object's
blob when the upload completes.

One store per directory at a time: the start-up sweep would delete a live store's temp files.
The processes of one emulator (``local.emulators.serve --processes``) are the exception: each
opens its store before any of them serves, then ``share()``s it — writes wait for each other
across processes, and the bucket cache follows the others' bucket writes (below).
No rules here (which bucket may be deleted, when a key may be overwritten): ``model.py`` checks
them, inside ``transaction()`` when a check and its write must be atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import mmap
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..sqlite import SqliteStore
from .crc64 import Crc64
from .entities import CHUNK, Bucket, NewObject, ObjectMeta, Part, Upload
from .errors import EntityTooLarge

_BUCKET_COLS = "name, created, acl, storage_class, redundancy"
_OBJECT_COLS = ("bucket, key, size, etag, crc64, content_type, meta, headers, last_modified, "
                "storage_class, blob, kind, acl, tags, target")
_PART_COLS = "number, size, etag, crc64, last_modified, blob"


def at_most(body: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """``body``'s chunks, refused with ``EntityTooLarge`` once more than ``limit`` bytes came."""
    size = 0
    for chunk in body:
        size += len(chunk)
        if size > limit:
            raise EntityTooLarge()
        yield chunk


def chunks_of(stream: BinaryIO) -> Iterator[bytes]:
    return iter(lambda: stream.read(CHUNK), b"")
INLINE_MAX = 64 * 1024  # bytes a blob may have to be kept in a row, not in a file
INLINE = "="  # the name of a blob kept in a row starts with it (never a file name)


@dataclass(frozen=True)
class Blob:
    """Bytes written to a blob file: its name (None when empty), size and checksums.
    ``pending``: the bytes of an inline blob not stored yet (``write_blob(defer=True)``);
    ``save_pending`` stores them, in the transaction that commits the object."""

    name: str | None
    size: int
    md5: bytes
    crc64: int
    pending: bytes | None = None


class OssStore(SqliteStore):
    # crc64 is TEXT: an unsigned 64-bit value overflows SQLite's signed INTEGER.
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL,
        acl TEXT NOT NULL, storage_class TEXT NOT NULL, redundancy TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS objects (bucket TEXT NOT NULL, key TEXT NOT NULL,
        size INTEGER NOT NULL, etag TEXT NOT NULL, crc64 TEXT NOT NULL,
        content_type TEXT NOT NULL, meta TEXT NOT NULL, headers TEXT NOT NULL,
        last_modified REAL NOT NULL, storage_class TEXT NOT NULL, blob TEXT,
        kind TEXT NOT NULL, acl TEXT NOT NULL, tags TEXT NOT NULL, target TEXT,
        PRIMARY KEY (bucket, key)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS uploads (upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL,
        key TEXT NOT NULL, initiated REAL NOT NULL, spec TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, upload_id);
    CREATE TABLE IF NOT EXISTS parts (upload_id TEXT NOT NULL, number INTEGER NOT NULL,
        size INTEGER NOT NULL, etag TEXT NOT NULL, crc64 TEXT NOT NULL,
        last_modified REAL NOT NULL, blob TEXT, PRIMARY KEY (upload_id, number)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS inline_blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL)
        WITHOUT ROWID;
    """
    TABLES = ("inline_blobs", "parts", "uploads", "objects", "buckets")
    # 1: objects carry their type, ACL, tags and symlink target; multipart uploads (0 had
    # neither). A schema change bumps it (and drops older state).
    SCHEMA_VERSION = 1

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / "oss.sqlite3")
        self._blobs = state_dir / "oss" / "blobs"
        self._tmp = state_dir / "oss" / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Committed buckets by name (None: none), read by every object call: a write of the
        # buckets table empties it (committed or not, so a rolled-back write leaves nothing
        # stale), and a read inside a transaction uses it but never fills it.
        self._buckets: dict[str, Bucket | None] = {}
        self._writing = 0
        # Shared with other processes (``share``): 8 bytes every bucket write of any of them
        # changes, and their value when this cache was last known good.
        self._generation: mmap.mmap | None = None
        self._seen = b""
        self._changed_inside = False  # a bucket write in the transaction not committed yet
        self.sweep(temp_files=True)

    def share(self) -> None:
        """Other processes serve this state too: besides waiting for each other's writes
        (``SqliteStore.share``), each bucket write changes a generation they all map
        (``oss/buckets.generation``, random bytes: two writers can never leave the value a
        reader saw), and the bucket cache is emptied when it differs from the one seen. The
        generation changes before a bucket write and again once it is committed, so a request
        that starts after a bucket write was answered never sees the bucket as it was."""
        super().share()
        if self._generation is not None:
            return
        with open(self._blobs.parent / "buckets.generation", "a+b") as file:
            if file.seek(0, os.SEEK_END) < 8:
                file.write(os.urandom(8))
                file.flush()
            self._generation = mmap.mmap(file.fileno(), 8)
        self._seen = self._generation[:8]

    def _bump(self) -> None:
        if self._generation is not None:
            self._generation[:8] = os.urandom(8)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # ``lock`` is held until the caches are told of a bucket write the transaction
        # committed, so no other write of this process comes in between
        with self.lock:
            try:
                with super().transaction() as conn:
                    self._writing += 1
                    try:
                        yield conn
                    finally:
                        self._writing -= 1
            finally:
                if self._changed_inside:  # committed (or rolled back)
                    self._changed_inside = False
                    self._buckets_written()

    # --- buckets ------------------------------------------------------------------------------
    def bucket(self, name: str) -> Bucket | None:
        with self.lock:
            if self._generation is not None and self._generation[:8] != self._seen:
                self._buckets.clear()  # another process wrote a bucket
                self._seen = self._generation[:8]
            if name in self._buckets:
                return self._buckets[name]
            row = self.one(f"SELECT {_BUCKET_COLS} FROM buckets WHERE name = ?", (name,))
            found = None if row is None else Bucket(*row)
            if not self._writing:
                self._buckets[name] = found
            return found

    @contextlib.contextmanager
    def _bucket_write(self) -> Iterator[None]:
        """Around a bucket write: the caches are emptied before it and again once it is
        committed (``_buckets_changed``, ``_buckets_written``)."""
        self._buckets_changed()
        try:
            yield
        finally:
            self._buckets_written()

    def _buckets_changed(self) -> None:
        """Before a bucket write: the cache is emptied, here and in the other processes."""
        with self.lock:  # ``_writing``: this thread's transaction (another's holds the lock)
            self._buckets.clear()
            self._bump()
            if self._writing:
                self._changed_inside = True

    def _buckets_written(self) -> None:
        """After a bucket write is committed: a lookup made while it was under way may have
        cached what the bucket was; empty the caches again (at the end of the transaction,
        when the write was one of its statements)."""
        with self.lock:
            if not self._writing:
                self._buckets.clear()
                self._bump()

    def buckets(self, prefix: str, after: str, limit: int) -> list[Bucket]:
        """Up to ``limit`` buckets named after ``after`` that start with ``prefix``, by name."""
        rows = self.query(f"SELECT {_BUCKET_COLS} FROM buckets "
                          "WHERE name > ? AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?",
                          (after, len(prefix), prefix, limit))
        return [Bucket(*r) for r in rows]

    def insert_bucket(self, bucket: Bucket) -> None:
        with self._bucket_write():
            self.execute(f"INSERT INTO buckets ({_BUCKET_COLS}) VALUES (?, ?, ?, ?, ?)", (
                bucket.name, bucket.created, bucket.acl, bucket.storage_class,
                bucket.redundancy))

    def set_bucket_acl(self, name: str, acl: str) -> bool:
        """False: no such bucket."""
        with self._bucket_write():
            return self.execute("UPDATE buckets SET acl = ? WHERE name = ?", (acl, name)) > 0

    def delete_bucket(self, name: str) -> None:
        with self._bucket_write():
            self.execute("DELETE FROM buckets WHERE name = ?", (name,))

    def has_objects(self, bucket: str) -> bool:
        return self.one("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (bucket,)) is not None

    def usage(self, bucket: str) -> tuple[int, int]:
        """(object count, total bytes) of a bucket."""
        row = self.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE bucket = ?",
                       (bucket,))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def buckets_with_usage(self) -> list[tuple[Bucket, tuple[int, int]]]:
        """Every bucket by name, with its (object count, total bytes)."""
        rows = self.query(
            "SELECT b.name, b.created, b.acl, b.storage_class, b.redundancy, COUNT(o.key), "
            "COALESCE(SUM(o.size), 0) FROM buckets b LEFT JOIN objects o "
            "ON o.bucket = b.name GROUP BY b.name ORDER BY b.name")
        return [(Bucket(*r[:5]), (int(r[5]), int(r[6]))) for r in rows]

    # --- objects ------------------------------------------------------------------------------
    def object(self, bucket: str, key: str) -> ObjectMeta | None:
        row = self.one(f"SELECT {_OBJECT_COLS} FROM objects WHERE bucket = ? AND key = ?",
                       (bucket, key))
        return None if row is None else _object(row)

    def blob_of(self, bucket: str, key: str) -> tuple[bool, str | None]:
        """Whether ``key`` holds an object, and its blob (what a plain overwrite needs)."""
        row = self.one("SELECT blob FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
        return (False, None) if row is None else (True, row[0])

    def save_object(self, obj: ObjectMeta) -> None:
        """Insert ``obj``, or replace the object under its key."""
        self.execute(f"INSERT OR REPLACE INTO objects ({_OBJECT_COLS}) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                         obj.bucket, obj.key, obj.size, obj.etag, str(obj.crc64),
                         obj.content_type, _dumps(obj.meta), _dumps(obj.headers),
                         obj.last_modified, obj.storage_class, obj.blob, obj.kind, obj.acl,
                         _dumps(obj.tags), obj.target))

    def delete_object(self, bucket: str, key: str) -> None:
        self.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))

    def scan(self, bucket: str, lower: str, inclusive: bool, upper: str | None,
             limit: int) -> list[ObjectMeta]:
        """Up to ``limit`` objects by key from ``lower`` (``inclusive`` or not) below ``upper``."""
        sql = (f"SELECT {_OBJECT_COLS} FROM objects WHERE bucket = ? AND key "
               f"{'>=' if inclusive else '>'} ?")
        args: list[Any] = [bucket, lower]
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        return [_object(r) for r in self.query(sql, args)]

    # --- multipart uploads ------------------------------------------------------------------
    def insert_upload(self, upload: Upload) -> None:
        spec = {k: v for k, v in asdict(upload.spec).items() if k != "content_md5"}
        self.execute("INSERT INTO uploads (upload_id, bucket, key, initiated, spec) "
                     "VALUES (?, ?, ?, ?, ?)", (upload.upload_id, upload.bucket, upload.key,
                                                upload.initiated, json.dumps(spec)))

    def upload(self, upload_id: str) -> Upload | None:
        row = self.one("SELECT bucket, key, upload_id, initiated, spec FROM uploads "
                       "WHERE upload_id = ?", (upload_id,))
        return None if row is None else _upload(row)

    def uploads(self, bucket: str, prefix: str) -> list[Upload]:
        """Every upload in ``bucket`` whose key starts with ``prefix``, by key and upload ID."""
        rows = self.query("SELECT bucket, key, upload_id, initiated, spec FROM uploads "
                          "WHERE bucket = ? AND substr(key, 1, ?) = ? ORDER BY key, upload_id",
                          (bucket, len(prefix), prefix))
        return [_upload(r) for r in rows]

    def upload_count(self, bucket: str) -> int:
        row = self.one("SELECT COUNT(*) FROM uploads WHERE bucket = ?", (bucket,))
        return int(row[0]) if row else 0

    def delete_upload(self, upload_id: str) -> None:
        """The upload and its part rows (the caller drops the part blobs)."""
        self.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        self.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

    def part(self, upload_id: str, number: int) -> Part | None:
        row = self.one(f"SELECT {_PART_COLS} FROM parts WHERE upload_id = ? AND number = ?",
                       (upload_id, number))
        return None if row is None else _part(row)

    def parts(self, upload_id: str, after: int, limit: int) -> list[Part]:
        rows = self.query(f"SELECT {_PART_COLS} FROM parts WHERE upload_id = ? AND number > ? "
                          "ORDER BY number LIMIT ?", (upload_id, after, limit))
        return [_part(r) for r in rows]

    def save_part(self, upload_id: str, part: Part) -> None:
        self.execute(f"INSERT OR REPLACE INTO parts (upload_id, {_PART_COLS}) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (upload_id, part.number, part.size,
                                                      part.etag, str(part.crc64),
                                                      part.last_modified, part.blob))

    # --- blob files ---------------------------------------------------------------------------
    def write_blob(self, body: Iterable[bytes], defer: bool = False) -> Blob:
        """Take ``body`` (chunks), computing its MD5 and CRC-64 on the way: kept in a row of
        ``inline_blobs`` when it is at most ``INLINE_MAX`` bytes, else written to a new blob
        file. ``defer``: an inline blob's row is left to ``save_pending`` (one write
        transaction per small object instead of two)."""
        name = os.urandom(16).hex()  # as unique as a uuid4's hex, without building the UUID
        tmp: Path | None = None  # named once the body outgrows a row
        md5, crc, size = hashlib.md5(), Crc64(), 0
        head: list[bytes] = []  # the bytes so far, while they fit in a row
        out: BinaryIO | None = None
        try:
            for chunk in body:
                size += len(chunk)
                md5.update(chunk)
                crc.update(chunk)
                if out is not None:
                    out.write(chunk)
                    continue
                head.append(chunk)
                if size > INLINE_MAX:
                    tmp = self._tmp / name
                    out = open(tmp, "wb")  # noqa: SIM115 (closed below, or on failure)
                    out.writelines(head)
                    head = []
            if out is None:
                if size == 0:
                    return Blob(None, 0, md5.digest(), crc.value)
                name, data = INLINE + name, b"".join(head)
                if defer:
                    return Blob(name, size, md5.digest(), crc.value, data)
                self.execute("INSERT INTO inline_blobs (name, data) VALUES (?, ?)", (name, data))
                return Blob(name, size, md5.digest(), crc.value)
            out.close()
            assert tmp is not None  # named when ``out`` was opened
            final = self._blob_path(name)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            if out is not None:
                out.close()
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            raise
        return Blob(name, size, md5.digest(), crc.value)

    def open_blob(self, name: str | None) -> BinaryIO:
        """An open file of a blob's bytes (None: the empty object); once open, POSIX keeps the
        bytes readable even after an overwrite unlinks the file (an inline blob is read whole
        at once; gone, it raises ``FileNotFoundError`` as a file would)."""
        if name is None:
            return io.BytesIO(b"")
        if _inline(name):
            row = self.one("SELECT data FROM inline_blobs WHERE name = ?", (name,))
            if row is None:
                raise FileNotFoundError(name)
            return io.BytesIO(row[0])
        return open(self._blob_path(name), "rb")

    def save_pending(self, blob: Blob) -> None:
        """Store the row of an inline blob ``write_blob(defer=True)`` left pending."""
        if blob.pending is not None:
            self.execute("INSERT INTO inline_blobs (name, data) VALUES (?, ?)",
                         (blob.name, blob.pending))

    def drop_blob(self, name: str | None) -> None:
        if _inline(name):
            self.execute("DELETE FROM inline_blobs WHERE name = ?", (name,))
        elif name:
            with contextlib.suppress(FileNotFoundError):
                self._blob_path(name).unlink()

    def sweep(self, temp_files: bool) -> None:
        """Remove blobs no row points at, and temp files (left by a crash between steps)."""
        for leftover in self._tmp.iterdir() if temp_files else ():
            with contextlib.suppress(OSError):
                leftover.unlink()
        live = {r[0] for r in self.query("SELECT blob FROM objects WHERE blob IS NOT NULL "
                                         "UNION SELECT blob FROM parts WHERE blob IS NOT NULL")}
        for shard in self._blobs.iterdir():
            for path in shard.iterdir() if shard.is_dir() else ():
                if path.name not in live:
                    with contextlib.suppress(OSError):
                        path.unlink()
        self.execute("DELETE FROM inline_blobs WHERE name NOT IN (SELECT blob FROM objects "
                     "WHERE blob IS NOT NULL UNION SELECT blob FROM parts WHERE blob IS NOT "
                     "NULL)")

    def wipe(self) -> None:
        """Empty every table and drop every blob; temp files may be uploads still in flight."""
        with self._bucket_write():
            super().wipe()
        self.sweep(temp_files=False)

    def _blob_path(self, name: str) -> Path:
        return self._blobs / name[:2] / name


def _inline(blob: str | None) -> bool:
    return bool(blob) and str(blob).startswith(INLINE)


def _dumps(mapping: dict[str, str]) -> str:
    return json.dumps(mapping) if mapping else "{}"  # most objects have no meta, headers, tags


def _loads(text: str) -> dict[str, str]:
    return {} if text == "{}" else dict(json.loads(text))


def _object(row: sqlite3.Row) -> ObjectMeta:
    return ObjectMeta(
        bucket=row[0], key=row[1], size=row[2], etag=row[3], crc64=int(row[4]),
        content_type=row[5], meta=_loads(row[6]), headers=_loads(row[7]),
        last_modified=row[8], storage_class=row[9], blob=row[10], kind=row[11], acl=row[12],
        tags=_loads(row[13]), target=row[14],
    )


def _upload(row: sqlite3.Row) -> Upload:
    return Upload(row[0], row[1], row[2], row[3], NewObject(**json.loads(row[4])))


def _part(row: sqlite3.Row) -> Part:
    return Part(row[0], row[1], row[2], int(row[3]), row[4], row[5])
