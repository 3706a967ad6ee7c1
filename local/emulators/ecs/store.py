"""SQLite persistence of Cloud Assistant commands, invocations, targets and runs.

* ``commands`` — ``Command``; ``keep = 0`` for RunCommand's own (KeepCommand=false).
* ``invocations`` — ``CommandInvocation``, with a copy of the command as it was run.
* ``targets`` — ``InvocationTarget``: one per (invocation, instance).
* ``results`` — ``Run``: one per execution (``run`` 1, 2, …). A one-time task has one; a
  periodic one gains one per period (DescribeInvocationResults ``IncludeHistory``).
* ``tokens`` — ClientToken idempotency: the answer given to (action, token).

Every method returns entities (``entities.py``), never ``sqlite3.Row``, and decides nothing:
which status a run takes, or when a schedule ends, is the model's. ``atomic()`` lets the model
read, decide and write as one transaction; the batch writes (``executemany``) keep a
100-instance invocation, or a tick of thousands of simulated instances, to a few milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from local.emulators.ecs.entities import (
    Activity,
    Command,
    CommandInvocation,
    InvocationTarget,
    Record,
    Run,
    TokenAnswer,
)
from local.emulators.ecs.executor import RunKey
from local.emulators.sqlite import SqliteStore

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

_RUN_COLUMNS = ("r.exit_code, r.output, r.dropped, r.error_code, r.error_info, r.start_time,"
                " r.finished_time")
_TARGET_COLUMNS = ("t.invoke_id, t.instance_id, i.command_id, i.repeat_mode, t.creation_time")


def _command(row: sqlite3.Row) -> Command:
    return Command(row["command_id"], row["name"], row["type"], row["content"],
                   row["description"], row["working_dir"], row["timeout"],
                   bool(row["enable_parameter"]), row["launcher"], row["creation_time"],
                   row["invoke_times"], bool(row["keep"]))


def _invocation(row: sqlite3.Row) -> CommandInvocation:
    return CommandInvocation(
        row["invoke_id"], row["command_id"], row["command_name"], row["command_type"],
        row["command_content"], row["command_description"], row["working_dir"], row["timeout"],
        bool(row["enable_parameter"]), json.loads(row["parameters"]), row["repeat_mode"],
        row["frequency"], row["username"], row["termination_mode"], row["launcher"],
        row["creation_time"], row["created_at"], bool(row["schedule_done"]))


def _run(row: sqlite3.Row) -> Run:
    return Run(row["invoke_id"], row["instance_id"], row["run"], row["status"],
               row["creation_time"], row["update_time"], row["exit_code"], bytes(row["output"]),
               row["dropped"], row["error_code"], row["error_info"], row["start_time"],
               row["finished_time"], row["stop_time"])


def _record(row: sqlite3.Row) -> Record:
    # a target without a run yet has NULL run columns (LEFT JOIN)
    return Record(row["invoke_id"], row["instance_id"], row["command_id"], row["repeat_mode"],
                  row["status"], row["repeats"], row["creation_time"], row["update_time"],
                  row["stop_time"], row["exit_code"], bytes(row["output"] or b""),
                  row["dropped"] or 0, row["error_code"] or "", row["error_info"] or "",
                  row["start_time"] or "", row["finished_time"] or "")


def _glob(pattern: str) -> tuple[str, str]:
    """DescribeCommands' ``x*``, ``*x``, ``*x*`` wildcards as an SQL condition."""
    return ("GLOB ?", pattern) if "*" in pattern else ("= ?", pattern)


def _where(filters: Iterable[tuple[str, str]]) -> tuple[str, list[Any]]:
    """``AND column = ?`` for each filter given a value."""
    sql, args = "", []
    for column, value in filters:
        if value:
            sql += f" AND {column} = ?"
            args.append(value)
    return sql, args


class EcsStore(SqliteStore):
    SCHEMA = SCHEMA
    TABLES = ("commands", "invocations", "targets", "results", "tokens")
    SCHEMA_VERSION = 3  # bump when SCHEMA changes: older local state is dropped, not migrated

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._open: sqlite3.Connection | None = None  # inside atomic(): its transaction

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One transaction around everything inside, store methods included (they join it)."""
        with self.lock:
            if self._open is not None:
                yield self._open
                return
            with self.transaction() as db:
                self._open = db
                try:
                    yield db
                finally:
                    self._open = None

    # --- commands --------------------------------------------------------------------------
    def kept_command_count(self) -> int:
        row = self.one("SELECT COUNT(*) AS n FROM commands WHERE keep = 1")
        return int(row["n"]) if row is not None else 0

    def insert_command(self, command: Command) -> None:
        self.execute(
            "INSERT INTO commands (command_id, name, description, type, content, working_dir,"
            " timeout, enable_parameter, launcher, creation_time, keep)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (command.command_id, command.name, command.description, command.type,
             command.content, command.working_dir, command.timeout,
             int(command.enable_parameter), command.launcher, command.creation_time,
             int(command.keep)))

    def command(self, command_id: str, include_unkept: bool = False) -> Command | None:
        row = self.one("SELECT * FROM commands WHERE command_id = ? AND keep >= ?",
                       (command_id, 0 if include_unkept else 1))
        return _command(row) if row is not None else None

    def commands(self, command_id: str = "", name: str = "", type_: str = "",
                 description: str = "") -> list[Command]:
        """Kept commands, newest first; ``name`` and ``description`` may use ``*``."""
        sql, args = _where((("command_id", command_id), ("type", type_)))
        for column, pattern in (("name", name), ("description", description)):
            if pattern:
                op, arg = _glob(pattern)
                sql += f" AND {column} {op}"
                args.append(arg)
        rows = self.query(f"SELECT * FROM commands WHERE keep = 1{sql} ORDER BY seq DESC", args)
        return [_command(r) for r in rows]

    def update_command(self, command: Command) -> None:
        self.execute(
            "UPDATE commands SET name = ?, description = ?, working_dir = ?, timeout = ?,"
            " launcher = ? WHERE command_id = ?",
            (command.name, command.description, command.working_dir, command.timeout,
             command.launcher, command.command_id))

    def delete_command(self, command_id: str) -> None:
        self.execute("DELETE FROM commands WHERE command_id = ?", (command_id,))

    # --- ClientToken answers ---------------------------------------------------------------
    def token_answer(self, action: str, token: str) -> TokenAnswer | None:
        row = self.one("SELECT request_hash, response FROM tokens WHERE action = ? AND token = ?",
                       (action, token))
        return TokenAnswer(row["request_hash"], json.loads(row["response"])) if row else None

    def save_token_answer(self, action: str, token: str, answer: TokenAnswer) -> None:
        self.execute("INSERT INTO tokens VALUES (?,?,?,?)",
                     (action, token, answer.request_hash, json.dumps(answer.response)))

    # --- invocations -----------------------------------------------------------------------
    def insert_invocation(self, inv: CommandInvocation, targets: list[InvocationTarget],
                          runs: list[Run]) -> None:
        """The invocation, its targets and first runs, and one more InvokeTimes of its command."""
        with self.atomic() as db:
            db.execute(
                "INSERT INTO invocations (invoke_id, command_id, command_name, command_type,"
                " command_content, command_description, working_dir, timeout, enable_parameter,"
                " parameters, repeat_mode, frequency, username, termination_mode, launcher,"
                " creation_time, created_at, schedule_done)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (inv.invoke_id, inv.command_id, inv.command_name, inv.command_type,
                 inv.command_content, inv.command_description, inv.working_dir, inv.timeout,
                 int(inv.enable_parameter), json.dumps(inv.parameters), inv.repeat_mode,
                 inv.frequency, inv.username, inv.termination_mode, inv.launcher,
                 inv.creation_time, inv.created_at, int(inv.schedule_done)))
            db.execute("UPDATE commands SET invoke_times = invoke_times + 1 WHERE command_id = ?",
                       (inv.command_id,))
            db.executemany(
                "INSERT INTO targets (invoke_id, instance_id, status, repeats, creation_time,"
                " update_time) VALUES (?,?,?,?,?,?)",
                [(t.invoke_id, t.instance_id, t.status, t.repeats, t.creation_time,
                  t.update_time) for t in targets])
            self._insert_runs(db, runs)

    def invocation(self, invoke_id: str) -> CommandInvocation | None:
        row = self.one("SELECT * FROM invocations WHERE invoke_id = ?", (invoke_id,))
        return _invocation(row) if row is not None else None

    def invocations(self, invoke_id: str = "", command_id: str = "", instance_id: str = "",
                    command_name: str = "", command_type: str = "", repeat_mode: str = "",
                    timed: bool | None = None) -> list[CommandInvocation]:
        """Invocations, newest first; ``timed``: only those (not) repeating."""
        sql, args = _where((("invoke_id", invoke_id), ("command_id", command_id),
                            ("command_name", command_name), ("command_type", command_type),
                            ("repeat_mode", repeat_mode)))
        if instance_id:
            sql += " AND invoke_id IN (SELECT invoke_id FROM targets WHERE instance_id = ?)"
            args.append(instance_id)
        if timed is not None:
            sql += " AND repeat_mode " + ("!= 'Once'" if timed else "= 'Once'")
        rows = self.query(f"SELECT * FROM invocations WHERE 1=1{sql} ORDER BY seq DESC", args)
        return [_invocation(r) for r in rows]

    def scheduled_invocations(self, repeat_modes: tuple[str, ...],
                              waiting_only: bool = False) -> list[CommandInvocation]:
        """Invocations in these repeat modes whose schedule has not ended; ``waiting_only``:
        only those with a target Scheduled."""
        marks = ",".join("?" * len(repeat_modes))
        waiting = (" AND invoke_id IN (SELECT invoke_id FROM targets WHERE status = 'Scheduled')"
                   if waiting_only else "")
        rows = self.query(f"SELECT * FROM invocations WHERE repeat_mode IN ({marks})"
                          f" AND schedule_done = 0{waiting} ORDER BY seq", repeat_modes)
        return [_invocation(r) for r in rows]

    def end_schedule(self, invoke_id: str) -> None:
        self.execute("UPDATE invocations SET schedule_done = 1 WHERE invoke_id = ?",
                     (invoke_id,))

    # --- targets and runs ------------------------------------------------------------------
    def targets_of(self, invoke_id: str) -> list[InvocationTarget]:
        """The invocation's targets, each with the status of its latest run."""
        rows = self.query(
            "SELECT t.*, COALESCE(r.status, '') AS run_status FROM targets t LEFT JOIN results r"
            " ON r.invoke_id = t.invoke_id AND r.instance_id = t.instance_id AND r.run = t.repeats"
            " WHERE t.invoke_id = ? ORDER BY t.rowid", (invoke_id,))
        return [InvocationTarget(r["invoke_id"], r["instance_id"], r["status"], r["repeats"],
                       r["creation_time"], r["update_time"], r["stop_time"], r["run_status"])
                for r in rows]

    def start_runs(self, runs: list[Run]) -> None:
        """New Pending runs; their targets become Pending, counting the run."""
        with self.atomic() as db:
            db.executemany(
                "UPDATE targets SET status = ?, repeats = ?, update_time = ?"
                " WHERE invoke_id = ? AND instance_id = ?",
                [(r.status, r.run, r.update_time, r.invoke_id, r.instance_id) for r in runs])
            self._insert_runs(db, runs)

    @staticmethod
    def _insert_runs(db: sqlite3.Connection, runs: list[Run]) -> None:
        db.executemany(
            "INSERT INTO results (invoke_id, instance_id, run, status, creation_time,"
            " update_time) VALUES (?,?,?,?,?,?)",
            [(r.invoke_id, r.instance_id, r.run, r.status, r.creation_time, r.update_time)
             for r in runs])

    def mark_running(self, keys: list[RunKey], stamp: str) -> set[RunKey]:
        """The runs among ``keys`` that were still Pending, now Running (with their targets)."""
        started: set[RunKey] = set()
        with self.atomic() as db:
            for key in keys:
                cur = db.execute(
                    "UPDATE results SET status = 'Running', start_time = ?, update_time = ?"
                    " WHERE invoke_id = ? AND instance_id = ? AND run = ? AND status = 'Pending'",
                    (stamp, stamp, *key))
                if cur.rowcount:
                    started.add(key)
            db.executemany(
                "UPDATE targets SET status = 'Running', update_time = ?"
                " WHERE invoke_id = ? AND instance_id = ? AND status = 'Pending'",
                [(stamp, k[0], k[1]) for k in started])
        return started

    def stop_target(self, target: InvocationTarget, status: str, stamp: str) -> None:
        """The target, and its latest run if Pending or Running, take ``status`` at ``stamp``
        (a Stopping run gets its finish time when the agent reports)."""
        with self.atomic() as db:
            db.execute(
                "UPDATE results SET status = ?, stop_time = ?, update_time = ?,"
                " finished_time = ? WHERE invoke_id = ? AND instance_id = ? AND run = ?"
                " AND status IN ('Pending', 'Running')",
                (status, stamp, stamp, "" if status == "Stopping" else stamp, target.invoke_id,
                 target.instance_id, target.repeats))
            db.execute(
                "UPDATE targets SET status = ?, stop_time = ?, update_time = ?"
                " WHERE invoke_id = ? AND instance_id = ?",
                (status, stamp, stamp, target.invoke_id, target.instance_id))

    def run(self, key: RunKey) -> Run | None:
        row = self.one("SELECT * FROM results WHERE invoke_id = ? AND instance_id = ? AND run = ?",
                       key)
        return _run(row) if row is not None else None

    def runs_in(self, statuses: tuple[str, ...]) -> list[Run]:
        marks = ",".join("?" * len(statuses))
        rows = self.query(f"SELECT * FROM results WHERE status IN ({marks})"
                          " ORDER BY rowid", statuses)
        return [_run(r) for r in rows]

    def settle_run(self, run: Run, target_status: str) -> None:
        """Save the agent's report on ``run``; its target takes ``target_status``."""
        with self.atomic() as db:
            db.execute(
                "UPDATE results SET status = ?, exit_code = ?, output = ?, dropped = ?,"
                " error_code = ?, error_info = ?, start_time = ?, finished_time = ?,"
                " update_time = ? WHERE invoke_id = ? AND instance_id = ? AND run = ?",
                (run.status, run.exit_code, run.output, run.dropped, run.error_code,
                 run.error_info, run.start_time, run.finished_time, run.update_time, *run.key))
            db.execute(
                "UPDATE targets SET status = ?, update_time = ? WHERE invoke_id = ?"
                " AND instance_id = ? AND repeats = ?", (target_status, run.update_time, *run.key))

    # --- reads for the Describe* APIs ------------------------------------------------------
    def records(self, invoke_id: str = "", instance_id: str = "", command_id: str = "",
                include_history: bool = False) -> list[Record]:
        """DescribeInvocationResults' records, newest invocation first, then by instance and
        run; with history, targets that have not run yet still show, as Scheduled."""
        where, args = _where((("t.invoke_id", invoke_id), ("t.instance_id", instance_id),
                              ("i.command_id", command_id)))
        if not include_history:
            rows = self.query(
                f"SELECT {_TARGET_COLUMNS}, t.status, t.repeats, t.update_time, t.stop_time,"
                f" {_RUN_COLUMNS} FROM targets t JOIN invocations i USING (invoke_id)"
                " LEFT JOIN results r ON r.invoke_id = t.invoke_id"
                f" AND r.instance_id = t.instance_id AND r.run = t.repeats WHERE 1=1{where}"
                " ORDER BY i.seq DESC, t.instance_id", args)
            return [_record(r) for r in rows]
        rows = self.query(
            f"SELECT {_TARGET_COLUMNS}, r.status, r.run AS repeats, r.update_time, r.stop_time,"
            f" {_RUN_COLUMNS} FROM targets t JOIN invocations i USING (invoke_id)"
            " JOIN results r ON r.invoke_id = t.invoke_id AND r.instance_id = t.instance_id"
            f" WHERE 1=1{where} ORDER BY i.seq DESC, t.instance_id, r.run", args)
        out = [_record(r) for r in rows]
        seen = {(r.invoke_id, r.instance_id) for r in out}
        out += [rec for rec in self.records(invoke_id, instance_id, command_id)
                if (rec.invoke_id, rec.instance_id) not in seen]
        return out

    def activity(self, instance_ids: list[str]) -> dict[str, Activity]:
        """Per instance: runs ever, runs in flight, when the latest was created."""
        if not instance_ids:
            return {}
        marks = ",".join("?" * len(instance_ids))
        rows = self.query(
            "SELECT instance_id, COUNT(*) AS runs, MAX(creation_time) AS last,"
            " SUM(status IN ('Pending', 'Running', 'Stopping')) AS active"
            f" FROM results WHERE instance_id IN ({marks}) GROUP BY instance_id", instance_ids)
        return {r["instance_id"]: Activity(r["runs"], r["active"] or 0, r["last"] or "")
                for r in rows}
