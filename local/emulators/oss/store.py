"""Where the OSS emulator keeps its state: metadata in SQLite, object bytes in blob files.

Metadata lives in ``state_dir/oss.sqlite3`` and object bytes in files under
``state_dir/oss/blobs``, so a new store on the same directory sees everything the last one
stored. Blob files are named by a random id, never by the key (keys may hold ``/``, ``..`` or
bytes a file system rejects). A blob is written to ``oss/tmp`` and renamed into place before the
row that points at it is committed: a crash of the process leaves at worst an orphan file, which
the next start sweeps, never a row pointing at half an object. Empty objects have no blob.
Objects of at most ``INLINE_MAX`` bytes (a result.json, an output.txt) keep their bytes in
their row instead (``data``; the blob name starts with ``INLINE``): creating, renaming and
opening a file cost more CPU than the whole rest of a PutObject, and the row is committed in the
same transaction, so such an object is as durable as any other and never half-written.
Durability is the process's, not the disk's: nothing is fsynced (SQLite runs WAL with
``synchronous=NORMAL``), so a killed or restarted local cloud loses nothing, while a power cut
may lose the last writes — the trade that keeps a 10,000-object fan-out from waiting on the disk.

One store per directory at a time: the start-up sweep would delete a live store's temp files.
No rules here (which bucket may be deleted, when a key may be overwritten): ``model.py`` checks
them, inside ``transaction()`` when a check and its write must be atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..sqlite import SqliteStore
from .crc64 import Crc64
from .model import Bucket, ObjectMeta

_BUCKET_COLS = "name, created, acl, storage_class, redundancy"
_OBJECT_COLS = ("bucket, key, size, etag, crc64, content_type, meta, headers, last_modified, "
                "storage_class, blob")
INLINE_MAX = 64 * 1024  # bytes an object may have to be kept in its row, not in a file
INLINE = "="  # the blob name of an object kept in its row starts with it (never a file name)


@dataclass(frozen=True)
class Blob:
    """Bytes written to a blob file: its name (None when empty), size and checksums."""

    name: str | None
    size: int
    md5: bytes
    crc64: int


class OssStore(SqliteStore):
    # crc64 is TEXT: an unsigned 64-bit value overflows SQLite's signed INTEGER.
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL,
        acl TEXT NOT NULL, storage_class TEXT NOT NULL, redundancy TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS objects (bucket TEXT NOT NULL, key TEXT NOT NULL,
        size INTEGER NOT NULL, etag TEXT NOT NULL, crc64 TEXT NOT NULL,
        content_type TEXT NOT NULL, meta TEXT NOT NULL, headers TEXT NOT NULL,
        last_modified REAL NOT NULL, storage_class TEXT NOT NULL, blob TEXT, data BLOB,
        PRIMARY KEY (bucket, key)) WITHOUT ROWID;
    """
    TABLES = ("objects", "buckets")
    # 0: the schema OSS state has had since its first release, whose files carry no version,
    # so their buckets and objects are kept. A schema change bumps it (and drops older state).
    SCHEMA_VERSION = 0

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / "oss.sqlite3")
        columns = {r[1] for r in self.query("PRAGMA table_info(objects)")}
        if "data" not in columns:  # state from before objects were kept in their rows
            self.execute("ALTER TABLE objects ADD COLUMN data BLOB")
        # bytes of objects written (write_blob) and not yet saved with their row (save_object)
        self._inline: dict[str, bytes] = {}
        self._blobs = state_dir / "oss" / "blobs"
        self._tmp = state_dir / "oss" / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self.sweep(temp_files=True)

    # --- buckets ------------------------------------------------------------------------------
    def bucket(self, name: str) -> Bucket | None:
        row = self.one(f"SELECT {_BUCKET_COLS} FROM buckets WHERE name = ?", (name,))
        return None if row is None else Bucket(*row)

    def buckets(self, prefix: str, after: str, limit: int) -> list[Bucket]:
        """Up to ``limit`` buckets named after ``after`` that start with ``prefix``, by name."""
        rows = self.query(f"SELECT {_BUCKET_COLS} FROM buckets "
                          "WHERE name > ? AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?",
                          (after, len(prefix), prefix, limit))
        return [Bucket(*r) for r in rows]

    def insert_bucket(self, bucket: Bucket) -> None:
        self.execute(f"INSERT INTO buckets ({_BUCKET_COLS}) VALUES (?, ?, ?, ?, ?)", (
            bucket.name, bucket.created, bucket.acl, bucket.storage_class, bucket.redundancy))

    def set_bucket_acl(self, name: str, acl: str) -> bool:
        """False: no such bucket."""
        return self.execute("UPDATE buckets SET acl = ? WHERE name = ?", (acl, name)) > 0

    def delete_bucket(self, name: str) -> None:
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

    def save_object(self, obj: ObjectMeta) -> None:
        """Insert ``obj``, or replace the object under its key."""
        data = self._inline.pop(obj.blob or "", None) if _inline(obj.blob) else None
        self.execute(f"INSERT OR REPLACE INTO objects ({_OBJECT_COLS}, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                         obj.bucket, obj.key, obj.size, obj.etag, str(obj.crc64),
                         obj.content_type, json.dumps(obj.meta), json.dumps(obj.headers),
                         obj.last_modified, obj.storage_class, obj.blob, data))

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

    def open_object(self, bucket: str, key: str) -> tuple[ObjectMeta, BinaryIO] | None:
        """The object and an open file of its bytes (the caller closes it); None: no such key.

        Opened under the lock, so a concurrent overwrite cannot unlink the blob in between;
        once open, POSIX keeps the old bytes readable even after the overwrite deletes them.
        """
        with self.lock:
            row = self.one(f"SELECT {_OBJECT_COLS}, data FROM objects WHERE bucket = ? AND key = ?",
                           (bucket, key))
            if row is None:
                return None
            obj = _object(row)
            if obj.blob is None or _inline(obj.blob):
                return obj, io.BytesIO(row[11] or b"")
            return obj, open(self._blob_path(obj.blob), "rb")

    # --- blob files ---------------------------------------------------------------------------
    def write_blob(self, body: Iterable[bytes]) -> Blob:
        """Take ``body`` (chunks), computing its MD5 and CRC-64 on the way: kept in memory for
        its row while it is at most ``INLINE_MAX`` bytes, else written to a new blob file."""
        name = uuid.uuid4().hex
        tmp = self._tmp / name
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
                    out = open(tmp, "wb")  # noqa: SIM115 (closed below, or on failure)
                    out.writelines(head)
                    head = []
            if out is None:
                if size == 0:
                    return Blob(None, 0, md5.digest(), crc.value)
                name = INLINE + name
                self._inline[name] = b"".join(head)
                return Blob(name, size, md5.digest(), crc.value)
            out.close()
            final = self._blob_path(name)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            if out is not None:
                out.close()
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            raise
        return Blob(name, size, md5.digest(), crc.value)

    def drop_blob(self, name: str | None) -> None:
        if _inline(name):
            self._inline.pop(name or "", None)  # its bytes go with the row, if it was saved
        elif name:
            with contextlib.suppress(FileNotFoundError):
                self._blob_path(name).unlink()

    def sweep(self, temp_files: bool) -> None:
        """Remove blobs no row points at, and temp files (left by a crash between steps)."""
        for leftover in self._tmp.iterdir() if temp_files else ():
            with contextlib.suppress(OSError):
                leftover.unlink()
        live = {r[0] for r in self.query("SELECT blob FROM objects WHERE blob IS NOT NULL")}
        for shard in self._blobs.iterdir():
            for path in shard.iterdir() if shard.is_dir() else ():
                if path.name not in live:
                    with contextlib.suppress(OSError):
                        path.unlink()

    def wipe(self) -> None:
        """Empty every table and drop every blob; temp files may be uploads still in flight."""
        super().wipe()
        self.sweep(temp_files=False)

    def _blob_path(self, name: str) -> Path:
        return self._blobs / name[:2] / name


def _inline(blob: str | None) -> bool:
    return bool(blob) and str(blob).startswith(INLINE)


def _object(row: sqlite3.Row) -> ObjectMeta:
    return ObjectMeta(
        bucket=row[0], key=row[1], size=row[2], etag=row[3], crc64=int(row[4]),
        content_type=row[5], meta=json.loads(row[6]), headers=json.loads(row[7]),
        last_modified=row[8], storage_class=row[9], blob=row[10],
    )
