"""SQLite persistence of Cloud Assistant commands, invocations and per-instance results.

One connection, one lock: the emulator's load is a few hundred writes per second at most, and
a single writer keeps every status transition atomic.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL, description TEXT NOT NULL, type TEXT NOT NULL,
    content TEXT NOT NULL,             -- Base64, as DescribeCommands returns it
    working_dir TEXT NOT NULL, timeout INTEGER NOT NULL,
    enable_parameter INTEGER NOT NULL, username TEXT NOT NULL, launcher TEXT NOT NULL,
    creation_time TEXT NOT NULL, invoke_times INTEGER NOT NULL DEFAULT 0,
    keep INTEGER NOT NULL DEFAULT 1,    -- 0: created by RunCommand without KeepCommand
    client_token TEXT, request_hash TEXT
);
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    invoke_id TEXT UNIQUE NOT NULL,
    command_id TEXT NOT NULL, command_name TEXT NOT NULL, command_type TEXT NOT NULL,
    command_content TEXT NOT NULL, working_dir TEXT NOT NULL, timeout INTEGER NOT NULL,
    parameters TEXT NOT NULL, repeat_mode TEXT NOT NULL, frequency TEXT NOT NULL,
    username TEXT NOT NULL, creation_time TEXT NOT NULL,
    client_token TEXT, request_hash TEXT, stopped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS invocations_token ON invocations (client_token);
CREATE TABLE IF NOT EXISTS results (
    invoke_id TEXT NOT NULL, instance_id TEXT NOT NULL, run INTEGER NOT NULL,
    status TEXT NOT NULL, exit_code INTEGER, output BLOB NOT NULL DEFAULT x'',
    dropped INTEGER NOT NULL DEFAULT 0, error_code TEXT NOT NULL DEFAULT '',
    error_info TEXT NOT NULL DEFAULT '', creation_time TEXT NOT NULL,
    start_time TEXT NOT NULL DEFAULT '', finished_time TEXT NOT NULL DEFAULT '',
    stop_time TEXT NOT NULL DEFAULT '', update_time TEXT NOT NULL,
    PRIMARY KEY (invoke_id, instance_id, run)
);
CREATE INDEX IF NOT EXISTS results_status ON results (status);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self.lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self.lock:
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self.lock:
            self._conn.execute(sql, args)

    def wipe(self) -> None:
        with self.transaction() as db:
            for table in ("commands", "invocations", "results"):
                db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self.lock:
            self._conn.close()
