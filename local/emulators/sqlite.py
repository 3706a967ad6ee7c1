"""The persistence every emulator's ``store.py`` builds on: one SQLite file, one locked connection.

A single connection behind a re-entrant lock keeps every state transition atomic and cheap
(``BEGIN IMMEDIATE`` … ``COMMIT``), WAL keeps readers of another process (a test peeking at
the file) out of the writer's way, and ``synchronous=NORMAL`` trades durability of the last
transactions on power loss — irrelevant on a laptop — for speed. State made by an older
schema is dropped, not migrated: ``SCHEMA_VERSION`` changes with the schema.

A store subclass declares ``SCHEMA`` (its ``CREATE TABLE`` script), ``TABLES`` (dropped on a
version change, emptied by ``wipe``) and ``SCHEMA_VERSION``, and adds one named method per
read or write its model needs, returning typed rows (dataclasses), never ``sqlite3.Row``.

An emulator served by several processes at once (``local.emulators.serve --processes``) opens
the file in each; ``share()`` then makes every write wait for the others' in the kernel
(``flock`` on a lock file beside the database) instead of in SQLite's busy handler, which
sleeps and polls (1, 2, 5, 10 … ms: ``sqliteDefaultBusyCallback``) while another process
holds the write lock.
"""

from __future__ import annotations

import contextlib
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
        self.path = path
        self.lock = threading.RLock()
        self._shared: Any = None  # the lock file, once shared with other processes
        self._held = 0  # nested writes of this process inside the shared lock
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

    def share(self) -> None:
        """Other processes write this file too: from now on each write waits for theirs."""
        if self._shared is None:
            self._shared = open(f"{self.path}.lock", "a+b")  # noqa: SIM115 (kept open)

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """The process's lock, and the other processes' too once shared (taken once, however
        deeply writes nest: a statement of a transaction is inside it already)."""
        with self.lock:
            if self._shared is None or self._held:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1
                return
            import fcntl  # POSIX: only a store shared by processes gets here

            fcntl.flock(self._shared, fcntl.LOCK_EX)
            self._held = 1
            try:
                yield
            finally:
                self._held = 0
                fcntl.flock(self._shared, fcntl.LOCK_UN)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write (or consistent read) under the lock."""
        with self._write_lock():
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
        with self._write_lock():
            return self._conn.execute(sql, tuple(args)).rowcount

    def wipe(self) -> None:
        """Empty every table (the control API's reset)."""
        with self.transaction() as db:
            for table in self.TABLES:
                db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self.lock:
            self._conn.close()
            if self._shared is not None:
                with contextlib.suppress(OSError):
                    self._shared.close()
