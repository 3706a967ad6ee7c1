"""MNS state and rules without HTTP: queues and messages here, topics in ``topics.py``.

Everything lives in one SQLite file so a restarted emulator sees the same queues and messages,
invisible and delayed ones included, with their times. One re-entrant lock guards the single
connection; the condition built on it is what long-polling receivers wait on, and it is
subscribed to the clock so ``Clock.advance`` wakes them as well as new messages do.

Times: queue/topic create and modify times are epoch seconds, message times epoch milliseconds,
as on the wire. All of them come from the injected clock.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from local.emulators.base import Clock

from . import errors
from .limits import (
    DEFAULT_PRIORITY,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    PRIORITY_RANGE,
    QUEUE_DEFAULTS,
    QUEUE_RANGES,
    check_attributes,
    check_name,
    check_range,
)
from .topics import TopicsMixin

# attribute name -> column; the order is the queues table's column order
_QUEUE_COLUMNS = {
    "VisibilityTimeout": "visibility_timeout",
    "MaximumMessageSize": "maximum_message_size",
    "MessageRetentionPeriod": "message_retention_period",
    "DelaySeconds": "delay_seconds",
    "PollingWaitSeconds": "polling_wait_seconds",
    "LoggingEnabled": "logging_enabled",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, create_time INTEGER NOT NULL, last_modify_time INTEGER NOT NULL,
    visibility_timeout INTEGER NOT NULL, maximum_message_size INTEGER NOT NULL,
    message_retention_period INTEGER NOT NULL, delay_seconds INTEGER NOT NULL,
    polling_wait_seconds INTEGER NOT NULL, logging_enabled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,
    body TEXT NOT NULL, body_md5 TEXT NOT NULL, priority INTEGER NOT NULL,
    enqueue_time INTEGER NOT NULL, first_dequeue_time INTEGER,
    next_visible_time INTEGER NOT NULL, dequeue_count INTEGER NOT NULL DEFAULT 0,
    receipt_handle TEXT, group_id TEXT NOT NULL DEFAULT '', properties TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, next_visible_time);
CREATE INDEX IF NOT EXISTS messages_by_handle ON messages (receipt_handle);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, create_time INTEGER NOT NULL, last_modify_time INTEGER NOT NULL,
    maximum_message_size INTEGER NOT NULL, logging_enabled INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL, name TEXT NOT NULL, endpoint TEXT NOT NULL, filter_tag TEXT NOT NULL,
    notify_strategy TEXT NOT NULL, notify_content_format TEXT NOT NULL,
    create_time INTEGER NOT NULL, last_modify_time INTEGER NOT NULL, PRIMARY KEY (topic, name));
CREATE TABLE IF NOT EXISTS account (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def body_md5(body: str) -> str:
    return hashlib.md5(body.encode("utf-8")).hexdigest().upper()


@dataclass(frozen=True)
class NewMessage:
    """A message as a client sends it; ``None`` means "use the queue's default"."""

    body: str
    delay_seconds: int | None = None
    priority: int | None = None
    group_id: str = ""
    properties: dict[str, list[dict[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredMessage:
    """A message in a queue, with the times and counters the API reports."""

    message_id: str
    body: str
    body_md5: str
    priority: int
    enqueue_time: int
    first_dequeue_time: int | None
    next_visible_time: int
    dequeue_count: int
    receipt_handle: str | None
    group_id: str
    properties: dict[str, list[dict[str, str]]]

    def state(self, now_ms: int) -> str:
        if self.next_visible_time <= now_ms:
            return "active"
        return "inactive" if self.dequeue_count else "delayed"


@dataclass(frozen=True)
class QueueInfo:
    """A queue's attributes (keyed by their MNS names) plus its message counts."""

    name: str
    create_time: int
    last_modify_time: int
    attributes: dict[str, int]
    active: int = 0
    inactive: int = 0
    delayed: int = 0


class MnsModel(TopicsMixin):
    """The whole MNS account: thread-safe, persistent, clock-driven."""

    def __init__(self, db_path: Path, clock: Clock, account_id: str) -> None:
        self.clock = clock
        self.account_id = account_id
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(db_path), check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        clock.subscribe(self._cond)

    # --- plumbing --------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    @contextmanager
    def _write(self, notify: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; ``notify`` wakes long-polling receivers after it.

        Only changes that can make a message receivable (or remove a queue a receiver waits
        on) notify: receivers themselves write (dequeue counts, expiry purges) and would
        otherwise wake each other in a loop.
        """
        with self._cond:
            try:
                yield self._db
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()
            if notify:
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._db.close()

    def reset(self) -> None:
        with self._write() as db:
            for table in ("messages", "queues", "subscriptions", "topics", "account"):
                db.execute(f"DELETE FROM {table}")

    # --- queues ----------------------------------------------------------------------------
    def _queue_row(self, name: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM queues WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise errors.QueueNotExist(name=name)
        return row

    @staticmethod
    def _attrs(row: sqlite3.Row) -> dict[str, int]:
        return {attr: int(row[col]) for attr, col in _QUEUE_COLUMNS.items()}

    def create_queue(self, name: str, attrs: dict[str, int]) -> bool:
        """Create ``name``; False if it already exists with the same attributes."""
        check_name("QueueName", name)
        check_attributes(attrs, QUEUE_RANGES, "queue")
        wanted = {**QUEUE_DEFAULTS, **attrs}
        with self._write() as db:
            row = db.execute("SELECT * FROM queues WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if self._attrs(row) != wanted:
                    raise errors.QueueAlreadyExist(name=name)
                return False
            now = int(self.clock.now())
            db.execute(
                "INSERT INTO queues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, now, now, *(wanted[a] for a in _QUEUE_COLUMNS)),
            )
            return True

    def set_queue_attributes(self, name: str, attrs: dict[str, int]) -> None:
        check_attributes(attrs, QUEUE_RANGES, "queue")
        with self._write() as db:
            self._queue_row(name)
            for attr, value in attrs.items():
                db.execute(
                    f"UPDATE queues SET {_QUEUE_COLUMNS[attr]} = ? WHERE name = ?", (value, name)
                )
            db.execute(
                "UPDATE queues SET last_modify_time = ? WHERE name = ?",
                (int(self.clock.now()), name),
            )

    def delete_queue(self, name: str) -> None:
        with self._write() as db:
            self._queue_row(name)
            db.execute("DELETE FROM messages WHERE queue = ?", (name,))
            db.execute("DELETE FROM queues WHERE name = ?", (name,))

    def get_queue(self, name: str) -> QueueInfo:
        with self._write(notify=False):
            return self._queue_info(self._queue_row(name))

    def _queue_info(self, row: sqlite3.Row) -> QueueInfo:
        self._purge_expired(row)
        counts = {"active": 0, "inactive": 0, "delayed": 0}
        for message in self._messages(row["name"]):
            counts[message.state(self.now_ms())] += 1
        return QueueInfo(
            row["name"], row["create_time"], row["last_modify_time"], self._attrs(row), **counts
        )

    def list_queues(
        self, prefix: str = "", marker: str = "", limit: int = 1000
    ) -> tuple[list[QueueInfo], str]:
        """Queues by name from ``marker`` on; the second value is the next page's marker."""
        with self._write(notify=False) as db:
            rows = db.execute(
                "SELECT * FROM queues WHERE name >= ? AND substr(name, 1, ?) = ? "
                "ORDER BY name LIMIT ?",
                (marker, len(prefix), prefix, limit + 1),
            ).fetchall()
            page = [self._queue_info(row) for row in rows[:limit]]
            return page, rows[limit]["name"] if len(rows) > limit else ""

    # --- messages --------------------------------------------------------------------------
    def _purge_expired(self, queue: sqlite3.Row) -> None:
        cutoff = self.now_ms() - queue["message_retention_period"] * 1000
        self._db.execute(
            "DELETE FROM messages WHERE queue = ? AND enqueue_time <= ?", (queue["name"], cutoff)
        )

    def _messages(self, queue: str, where: str = "", args: tuple[Any, ...] = (),
                  limit: int = -1) -> list[StoredMessage]:
        rows = self._db.execute(
            f"SELECT * FROM messages WHERE queue = ? {where} "
            "ORDER BY priority, enqueue_time, seq LIMIT ?",
            (queue, *args, limit),
        ).fetchall()
        return [
            StoredMessage(
                r["message_id"], r["body"], r["body_md5"], r["priority"], r["enqueue_time"],
                r["first_dequeue_time"], r["next_visible_time"], r["dequeue_count"],
                r["receipt_handle"], r["group_id"], json.loads(r["properties"]),
            )
            for r in rows
        ]

    def _check_message(self, queue: sqlite3.Row, message: NewMessage) -> None:
        size = len(message.body.encode("utf-8"))
        check_range("MessageBody length", size, 1, queue["maximum_message_size"])
        if message.delay_seconds is not None:
            check_range("DelaySeconds", message.delay_seconds, *QUEUE_RANGES["DelaySeconds"])
        if message.priority is not None:
            check_range("Priority", message.priority, *PRIORITY_RANGE)

    def _enqueue(self, queue: sqlite3.Row, message: NewMessage) -> StoredMessage:
        now = self.now_ms()
        delay = queue["delay_seconds"] if message.delay_seconds is None else message.delay_seconds
        priority = DEFAULT_PRIORITY if message.priority is None else message.priority
        # Shaped like the real ids (host-ish prefix, ms timestamp, counter), unique per emulator.
        message_id = f"{uuid.uuid4().hex[:16].upper()}-1-{now:X}-{secrets.randbelow(10**9):09d}"
        stored = StoredMessage(
            message_id, message.body, body_md5(message.body), priority, now, None,
            now + delay * 1000, 0, None, message.group_id, message.properties,
        )
        self._db.execute(
            "INSERT INTO messages (queue, message_id, body, body_md5, priority, enqueue_time, "
            "next_visible_time, group_id, properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (queue["name"], stored.message_id, stored.body, stored.body_md5, priority, now,
             stored.next_visible_time, message.group_id, json.dumps(message.properties)),
        )
        return stored

    def _deliver(self, queue: str, body: str) -> bool:
        """Push a topic notification into ``queue`` (inside the publisher's transaction)."""
        row = self._db.execute("SELECT * FROM queues WHERE name = ?", (queue,)).fetchone()
        if row is None:
            return False
        self._enqueue(row, NewMessage(body))
        return True

    def send_message(self, queue: str, message: NewMessage) -> StoredMessage:
        with self._write():
            row = self._queue_row(queue)
            self._check_message(row, message)
            return self._enqueue(row, message)

    def send_batch(
        self, queue: str, messages: list[NewMessage]
    ) -> list[StoredMessage | errors.MnsError]:
        """Send each message; a message that breaks a rule yields its error, the rest go in."""
        check_range("the number of Messages", len(messages), 1, MAX_BATCH)
        total = sum(len(m.body.encode("utf-8")) for m in messages)
        check_range("the total size of Messages", total, 1, MAX_BATCH_BYTES)
        results: list[StoredMessage | errors.MnsError] = []
        with self._write():
            row = self._queue_row(queue)
            for message in messages:
                try:
                    self._check_message(row, message)
                except errors.MnsError as exc:
                    results.append(exc)
                    continue
                results.append(self._enqueue(row, message))
        return results

    def receive(self, queue: str, count: int, wait_seconds: int | None) -> list[StoredMessage]:
        """Receive up to ``count`` messages, long-polling up to the wait; none → MessageNotExist."""
        check_range("numOfMessages", count, 1, MAX_BATCH)
        if wait_seconds is not None:
            check_range("waitseconds", wait_seconds, *QUEUE_RANGES["PollingWaitSeconds"])
        with self._cond:
            row = self._queue_row(queue)
            wait = row["polling_wait_seconds"] if wait_seconds is None else wait_seconds
            deadline = self.clock.now() + wait
            while True:
                if self._closed:
                    raise errors.MessageNotExist()
                with self._write(notify=False):
                    taken = self._take_visible(self._queue_row(queue), count)
                if taken:
                    return taken
                now = self.clock.now()
                if now >= deadline:
                    raise errors.MessageNotExist()
                # Sleep until the deadline or until the next invisible/delayed message is due;
                # sends and clock advances notify the condition earlier.
                due = self._db.execute(
                    "SELECT MIN(next_visible_time) FROM messages WHERE queue = ?", (queue,)
                ).fetchone()[0]
                timeout = deadline - now
                if due is not None:
                    timeout = min(timeout, max(due / 1000 - now, 0.005))
                self._cond.wait(timeout)

    def _take_visible(self, queue: sqlite3.Row, count: int) -> list[StoredMessage]:
        self._purge_expired(queue)
        now = self.now_ms()
        visible = self._messages(queue["name"], "AND next_visible_time <= ?", (now,), count)
        taken = []
        for message in visible:
            handle = new_receipt_handle()
            first = message.first_dequeue_time or now
            next_visible = now + queue["visibility_timeout"] * 1000
            self._db.execute(
                "UPDATE messages SET dequeue_count = dequeue_count + 1, first_dequeue_time = ?, "
                "next_visible_time = ?, receipt_handle = ? WHERE message_id = ?",
                (first, next_visible, handle, message.message_id),
            )
            taken.append(replace(
                message, first_dequeue_time=first, next_visible_time=next_visible,
                dequeue_count=message.dequeue_count + 1, receipt_handle=handle,
            ))
        return taken

    def peek(self, queue: str, count: int) -> list[StoredMessage]:
        """The next ``count`` receivable messages, changing nothing."""
        check_range("numOfMessages", count, 1, MAX_BATCH)
        with self._write(notify=False):
            row = self._queue_row(queue)
            self._purge_expired(row)
            found = self._messages(queue, "AND next_visible_time <= ?", (self.now_ms(),), count)
        if not found:
            raise errors.MessageNotExist()
        return found

    # Receipt handles: a handle is valid only while it is the message's latest one and its
    # NextVisibleTime has not passed (research §1.3). The docs disagree on the code for a
    # handle that is no longer valid; we answer ReceiptHandleError 400 for every invalid
    # handle on DeleteMessage (stale, expired, already deleted, malformed), and on
    # ChangeMessageVisibility MessageNotExist 404 for an expired-but-latest handle (its doc
    # table lists that) and ReceiptHandleError 400 otherwise.
    def _by_handle(self, queue: str, handle: str) -> StoredMessage:
        found = self._messages(queue, "AND receipt_handle = ?", (handle,), 1)
        if not found:
            raise errors.ReceiptHandleError(handle=handle)
        return found[0]

    def _delete_one(self, queue: str, handle: str) -> None:
        message = self._by_handle(queue, handle)
        if message.next_visible_time <= self.now_ms():
            raise errors.ReceiptHandleError(handle=handle)
        self._db.execute("DELETE FROM messages WHERE message_id = ?", (message.message_id,))

    def delete_message(self, queue: str, handle: str) -> None:
        with self._write():
            self._queue_row(queue)
            self._delete_one(queue, handle)

    def delete_batch(self, queue: str, handles: list[str]) -> list[tuple[str, errors.MnsError]]:
        """Delete each handle's message; returns the handles that failed, with their errors."""
        check_range("the number of ReceiptHandles", len(handles), 1, MAX_BATCH)
        failed = []
        with self._write():
            self._queue_row(queue)
            for handle in handles:
                try:
                    self._delete_one(queue, handle)
                except errors.MnsError as exc:
                    failed.append((handle, exc))
        return failed

    def change_visibility(self, queue: str, handle: str, timeout: int) -> StoredMessage:
        check_range("VisibilityTimeout", timeout, *QUEUE_RANGES["VisibilityTimeout"])
        with self._write():
            self._queue_row(queue)
            message = self._by_handle(queue, handle)
            now = self.now_ms()
            if message.next_visible_time <= now:
                raise errors.MessageNotExist()
            new_handle = new_receipt_handle()
            self._db.execute(
                "UPDATE messages SET next_visible_time = ?, receipt_handle = ? "
                "WHERE message_id = ?",
                (now + timeout * 1000, new_handle, message.message_id),
            )
        return replace(message, next_visible_time=now + timeout * 1000, receipt_handle=new_handle)

    # --- account ---------------------------------------------------------------------------
    def get_logging_bucket(self) -> str:
        with self._cond:
            row = self._db.execute(
                "SELECT value FROM account WHERE key = 'LoggingBucket'"
            ).fetchone()
            return str(row[0]) if row else ""

    def set_logging_bucket(self, bucket: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO account VALUES ('LoggingBucket', ?)", (bucket,))

    # --- inspection (control API) ----------------------------------------------------------
    def queue_overview(self) -> list[dict[str, Any]]:
        queues, _ = self.list_queues(limit=1_000_000)
        return [
            {"name": q.name, "active": q.active, "inactive": q.inactive, "delayed": q.delayed,
             "attributes": q.attributes, "create_time": q.create_time}
            for q in queues
        ]

    def queue_messages(self, queue: str) -> list[dict[str, Any]]:
        with self._write(notify=False):
            self._purge_expired(self._queue_row(queue))
            now = self.now_ms()
            return [
                {"message_id": m.message_id, "body": m.body, "state": m.state(now),
                 "priority": m.priority, "enqueue_time": m.enqueue_time,
                 "first_dequeue_time": m.first_dequeue_time,
                 "next_visible_time": m.next_visible_time, "dequeue_count": m.dequeue_count}
                for m in self._messages(queue)
            ]

    def dump(self) -> dict[str, Any]:
        queues = self.queue_overview()
        for queue in queues:
            queue["messages"] = self.queue_messages(queue["name"])
        return {"queues": queues, "topics": self.topic_overview(),
                "logging_bucket": self.get_logging_bucket()}


def new_receipt_handle() -> str:
    # URL-safe on purpose: the SDK puts the handle into the query string without quoting it.
    return "1-" + uuid.uuid4().hex
