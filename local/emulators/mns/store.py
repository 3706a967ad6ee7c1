"""SQLite persistence of MNS queues, messages, topics, subscriptions and account settings.

* ``queues`` / ``topics`` — one row per queue or topic, its attributes in columns;
* ``messages`` — one row per message in a queue, with the times (epoch ms) and the receipt
  handle of its latest receive; ``seq`` keeps the enqueue order of equal times;
* ``subscriptions`` — one row per (topic, subscription);
* ``account`` — account-wide settings (``LoggingBucket``).

Named methods read and write whole entities (``Queue``, ``StoredMessage``, ``Topic``,
``Subscription``); the rules about them are the model's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import TypeVar

from local.emulators.sqlite import SqliteStore

from .model import Queue, StoredMessage
from .topics import Subscription, Topic

# attribute name -> column; the order is the table's column order
QUEUE_COLUMNS = {
    "VisibilityTimeout": "visibility_timeout",
    "MaximumMessageSize": "maximum_message_size",
    "MessageRetentionPeriod": "message_retention_period",
    "DelaySeconds": "delay_seconds",
    "PollingWaitSeconds": "polling_wait_seconds",
    "LoggingEnabled": "logging_enabled",
}
TOPIC_COLUMNS = {"MaximumMessageSize": "maximum_message_size",
                 "LoggingEnabled": "logging_enabled"}

SCHEMA = """
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

T = TypeVar("T")


class MnsStore(SqliteStore):
    SCHEMA = SCHEMA
    TABLES = ("messages", "queues", "subscriptions", "topics", "account")
    # Unchanged since the first MNS emulator, which never set user_version: its state is kept.
    SCHEMA_VERSION = 0

    def _set_attributes(self, table: str, columns: Mapping[str, str], name: str,
                        attributes: Mapping[str, int], modified: int) -> None:
        for attr, value in attributes.items():
            self.execute(f"UPDATE {table} SET {columns[attr]} = ? WHERE name = ?", (value, name))
        self.execute(f"UPDATE {table} SET last_modify_time = ? WHERE name = ?", (modified, name))

    def _named(self, table: str, prefix: str, marker: str, limit: int | None,
               where: str = "", args: tuple[str, ...] = ()) -> list[sqlite3.Row]:
        """Rows named ``prefix``… from ``marker`` on, by name, one more than ``limit``."""
        return self.query(f"SELECT * FROM {table} WHERE {where}name >= ? "
                          "AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?",
                          (*args, marker, len(prefix), prefix, _limit(limit)))

    # --- queues ----------------------------------------------------------------------------
    def queue(self, name: str) -> Queue | None:
        row = self.one("SELECT * FROM queues WHERE name = ?", (name,))
        return None if row is None else _queue(row)

    def insert_queue(self, queue: Queue) -> None:
        self.execute("INSERT INTO queues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (queue.name, queue.create_time, queue.last_modify_time,
                      *(queue.attributes[a] for a in QUEUE_COLUMNS)))

    def update_queue(self, name: str, attributes: Mapping[str, int], modified: int) -> None:
        """Set the given attributes (a subset) and the last modify time (epoch s)."""
        self._set_attributes("queues", QUEUE_COLUMNS, name, attributes, modified)

    def delete_queue(self, name: str) -> None:
        """The queue and its messages."""
        self.execute("DELETE FROM messages WHERE queue = ?", (name,))
        self.execute("DELETE FROM queues WHERE name = ?", (name,))

    def queues(self, prefix: str = "", marker: str = "", limit: int | None = None,
               ) -> tuple[list[Queue], str]:
        """Queues named ``prefix``… from ``marker`` on, by name; and the next page's marker."""
        return _page(self._named("queues", prefix, marker, limit), limit, _queue)

    # --- messages --------------------------------------------------------------------------
    def messages(self, queue: str, *, visible_at: int | None = None, handle: str | None = None,
                 limit: int = -1) -> list[StoredMessage]:
        """A queue's messages in delivery order (priority, then enqueue order), optionally only
        those visible at ``visible_at`` (ms) or the one holding receipt ``handle``."""
        where = ""
        args: list[object] = [queue]
        if visible_at is not None:
            where += " AND next_visible_time <= ?"
            args.append(visible_at)
        if handle is not None:
            where += " AND receipt_handle = ?"
            args.append(handle)
        rows = self.query(f"SELECT * FROM messages WHERE queue = ?{where} "
                          "ORDER BY priority, enqueue_time, seq LIMIT ?", (*args, limit))
        return [_message(row) for row in rows]

    def next_visible_time(self, queue: str) -> int | None:
        """When (ms) the queue's next message becomes visible, or None if it has none."""
        row = self.one("SELECT MIN(next_visible_time) FROM messages WHERE queue = ?", (queue,))
        return None if row is None or row[0] is None else int(row[0])

    def insert_message(self, queue: str, message: StoredMessage) -> None:
        self.execute(
            "INSERT INTO messages (queue, message_id, body, body_md5, priority, enqueue_time, "
            "first_dequeue_time, next_visible_time, dequeue_count, receipt_handle, group_id, "
            "properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (queue, message.message_id, message.body, message.body_md5, message.priority,
             message.enqueue_time, message.first_dequeue_time, message.next_visible_time,
             message.dequeue_count, message.receipt_handle, message.group_id,
             json.dumps(message.properties)),
        )

    def update_message(self, message: StoredMessage) -> None:
        """Store a message's receive state: times, dequeue count and receipt handle."""
        self.execute(
            "UPDATE messages SET first_dequeue_time = ?, next_visible_time = ?, "
            "dequeue_count = ?, receipt_handle = ? WHERE message_id = ?",
            (message.first_dequeue_time, message.next_visible_time, message.dequeue_count,
             message.receipt_handle, message.message_id),
        )

    def delete_message(self, message_id: str) -> None:
        self.execute("DELETE FROM messages WHERE message_id = ?", (message_id,))

    def delete_messages_enqueued_until(self, queue: str, until_ms: int) -> None:
        self.execute("DELETE FROM messages WHERE queue = ? AND enqueue_time <= ?",
                     (queue, until_ms))

    # --- topics ----------------------------------------------------------------------------
    def topic(self, name: str) -> Topic | None:
        row = self.one("SELECT * FROM topics WHERE name = ?", (name,))
        return None if row is None else _topic(row)

    def insert_topic(self, topic: Topic) -> None:
        self.execute(
            "INSERT INTO topics (name, create_time, last_modify_time, maximum_message_size, "
            "logging_enabled) VALUES (?, ?, ?, ?, ?)",
            (topic.name, topic.create_time, topic.last_modify_time,
             *(topic.attributes[a] for a in TOPIC_COLUMNS)),
        )

    def update_topic(self, name: str, attributes: Mapping[str, int], modified: int) -> None:
        """Set the given attributes (a subset) and the last modify time (epoch s)."""
        self._set_attributes("topics", TOPIC_COLUMNS, name, attributes, modified)

    def delete_topic(self, name: str) -> None:
        """The topic and its subscriptions."""
        self.execute("DELETE FROM subscriptions WHERE topic = ?", (name,))
        self.execute("DELETE FROM topics WHERE name = ?", (name,))

    def topics(self, prefix: str = "", marker: str = "", limit: int | None = None,
               ) -> tuple[list[Topic], str]:
        """Topics named ``prefix``… from ``marker`` on, by name; and the next page's marker."""
        return _page(self._named("topics", prefix, marker, limit), limit, _topic)

    def count_published(self, name: str) -> None:
        self.execute("UPDATE topics SET published = published + 1 WHERE name = ?", (name,))

    # --- subscriptions ---------------------------------------------------------------------
    def subscription(self, topic: str, name: str) -> Subscription | None:
        row = self.one("SELECT * FROM subscriptions WHERE topic = ? AND name = ?", (topic, name))
        return None if row is None else _subscription(row)

    def insert_subscription(self, s: Subscription) -> None:
        self.execute("INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (s.topic, s.name, s.endpoint, s.filter_tag, s.notify_strategy,
                      s.notify_content_format, s.create_time, s.last_modify_time))

    def update_subscription(self, topic: str, name: str, notify_strategy: str,
                            modified: int) -> None:
        """Set the strategy (unless empty) and the last modify time (epoch s)."""
        if notify_strategy:
            self.execute("UPDATE subscriptions SET notify_strategy = ? "
                         "WHERE topic = ? AND name = ?", (notify_strategy, topic, name))
        self.execute("UPDATE subscriptions SET last_modify_time = ? WHERE topic = ? AND name = ?",
                     (modified, topic, name))

    def delete_subscription(self, topic: str, name: str) -> None:
        self.execute("DELETE FROM subscriptions WHERE topic = ? AND name = ?", (topic, name))

    def subscriptions(self, topic: str, prefix: str = "", marker: str = "",
                      limit: int | None = None) -> tuple[list[Subscription], str]:
        """A topic's subscriptions named ``prefix``… from ``marker`` on, by name; and the next
        page's marker."""
        rows = self._named("subscriptions", prefix, marker, limit, "topic = ? AND ", (topic,))
        return _page(rows, limit, _subscription)

    def all_subscriptions(self) -> list[Subscription]:
        rows = self.query("SELECT * FROM subscriptions ORDER BY topic, name")
        return [_subscription(row) for row in rows]

    # --- account ---------------------------------------------------------------------------
    def account_value(self, key: str) -> str | None:
        row = self.one("SELECT value FROM account WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_account_value(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO account VALUES (?, ?)", (key, value))


def _limit(limit: int | None) -> int:
    return -1 if limit is None else limit + 1  # one more row tells whether a page follows


def _page(rows: list[sqlite3.Row], limit: int | None, entity: Callable[[sqlite3.Row], T],
          ) -> tuple[list[T], str]:
    """Rows fetched with ``_limit(limit)`` as one page, plus the next page's marker."""
    if limit is None or len(rows) <= limit:
        return [entity(row) for row in rows], ""
    return [entity(row) for row in rows[:limit]], str(rows[limit]["name"])


def _queue(row: sqlite3.Row) -> Queue:
    return Queue(row["name"], row["create_time"], row["last_modify_time"],
                 {attr: int(row[col]) for attr, col in QUEUE_COLUMNS.items()})


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        row["message_id"], row["body"], row["body_md5"], row["priority"], row["enqueue_time"],
        row["first_dequeue_time"], row["next_visible_time"], row["dequeue_count"],
        row["receipt_handle"], row["group_id"], json.loads(row["properties"]),
    )


def _topic(row: sqlite3.Row) -> Topic:
    return Topic(row["name"], row["create_time"], row["last_modify_time"],
                 {attr: int(row[col]) for attr, col in TOPIC_COLUMNS.items()}, row["published"])


def _subscription(row: sqlite3.Row) -> Subscription:
    return Subscription(
        row["topic"], row["name"], row["endpoint"], row["filter_tag"], row["notify_strategy"],
        row["notify_content_format"], row["create_time"], row["last_modify_time"],
    )
