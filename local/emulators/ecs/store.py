"""SQLite persistence of Cloud Assistant commands, invocations, targets and executions.

* ``invocations`` — one per RunCommand/InvokeCommand (``InvokeId``), with a copy of the
  command as it was run.
* ``targets`` — one per (invocation, instance): the per-instance status DescribeInvocations
  reports (``Scheduled`` between the runs of a periodic task) and the number of runs.
* ``results`` — one per execution (``run`` 1, 2, …): what the agent reported. A one-time task
  has one; a periodic one gains one per period (DescribeInvocationResults ``IncludeHistory``).
* ``tokens`` — ClientToken idempotency: the response returned for (action, token).

One connection, one lock: a single writer keeps every status transition atomic, and the
batch methods (``executemany`` in one transaction) keep a 100-instance invocation, or a tick of
thousands of simulated instances, to a few milliseconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3  # bump when SCHEMA changes: older local state is dropped, not migrated

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL, description TEXT NOT NULL, type TEXT NOT NULL,
    content TEXT NOT NULL,             -- Base64, as DescribeCommands returns it
    working_dir TEXT NOT NULL, timeout INTEGER NOT NULL,
    enable_parameter INTEGER NOT NULL, launcher TEXT NOT NULL,
    creation_time TEXT NOT NULL, invoke_times INTEGER NOT NULL DEFAULT 0,
    keep INTEGER NOT NULL DEFAULT 1    -- 0: created by RunCommand without KeepCommand
);
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    invoke_id TEXT UNIQUE NOT NULL,
    command_id TEXT NOT NULL, command_name TEXT NOT NULL, command_type TEXT NOT NULL,
    command_content TEXT NOT NULL, command_description TEXT NOT NULL,
    working_dir TEXT NOT NULL, timeout INTEGER NOT NULL,
    enable_parameter INTEGER NOT NULL, parameters TEXT NOT NULL,
    repeat_mode TEXT NOT NULL, frequency TEXT NOT NULL, username TEXT NOT NULL,
    termination_mode TEXT NOT NULL, launcher TEXT NOT NULL, creation_time TEXT NOT NULL,
    created_at REAL NOT NULL,          -- emulator clock, anchors rate() schedules
    schedule_done INTEGER NOT NULL DEFAULT 0   -- 1: no further runs will be started
);
CREATE TABLE IF NOT EXISTS targets (
    invoke_id TEXT NOT NULL, instance_id TEXT NOT NULL,
    status TEXT NOT NULL, repeats INTEGER NOT NULL DEFAULT 0,
    creation_time TEXT NOT NULL, update_time TEXT NOT NULL,
    stop_time TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (invoke_id, instance_id)
);
CREATE INDEX IF NOT EXISTS targets_instance ON targets (instance_id);
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
CREATE TABLE IF NOT EXISTS tokens (
    action TEXT NOT NULL, token TEXT NOT NULL, request_hash TEXT NOT NULL,
    response TEXT NOT NULL, PRIMARY KEY (action, token)
);
"""

TABLES = ("commands", "invocations", "targets", "results", "tokens")


class Store:
    """The emulator's database: thin helpers over one locked connection."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            for table in TABLES:
                self._conn.execute(f"DROP TABLE IF EXISTS {table}")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self.lock:
            row: sqlite3.Row | None = self._conn.execute(sql, tuple(args)).fetchone()
            return row

    def execute(self, sql: str, args: Iterable[Any] = ()) -> int:
        with self.lock:
            return self._conn.execute(sql, tuple(args)).rowcount

    def wipe(self) -> None:
        with self.transaction() as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self.lock:
            self._conn.close()
