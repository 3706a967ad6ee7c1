"""The persistence every emulator's ``store.py`` builds on: one SQLite file, one locked connection.

A single connection behind a re-entrant lock keeps every state transition atomic and cheap
(``BEGIN IMMEDIATE`` … ``COMMIT``), WAL keeps readers of another process (a test peeking at
the file) out of the writer's way, and ``synchronous=NORMAL`` trades durability of the last
transactions on power loss — irrelevant on a laptop — for speed. State made by an older
schema is dropped, not migrated: ``SCHEMA_VERSION`` changes with the schema.

A store subclass declares ``SCHEMA`` (its ``CREATE TABLE`` script), ``TABLES`` (dropped on a
version change, emptied by ``wipe``) and ``SCHEMA_VERSION``, and adds one named method per
read or write its model needs, returning typed rows (dataclasses), never ``sqlite3.Row``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar


class SqliteStore:
    SCHEMA: ClassVar[str] = ""
    TABLES: ClassVar[tuple[str, ...]] = ()
    SCHEMA_VERSION: ClassVar[int] = 1

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != self.SCHEMA_VERSION:
            for table in self.TABLES:
                self._conn.execute(f"DROP TABLE IF EXISTS {table}")
            self._conn.execute(f"PRAGMA user_version = {self.SCHEMA_VERSION}")
        self._conn.executescript(self.SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write (or consistent read) under the lock."""
        with self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self.lock:
            row: sqlite3.Row | None = self._conn.execute(sql, tuple(args)).fetchone()
            return row

    def execute(self, sql: str, args: Iterable[Any] = ()) -> int:
        """Run one statement outside a transaction; the number of rows it changed."""
        with self.lock:
            return self._conn.execute(sql, tuple(args)).rowcount

    def wipe(self) -> None:
        """Empty every table (the control API's reset)."""
        with self.transaction() as db:
            for table in self.TABLES:
                db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self.lock:
            self._conn.close()
