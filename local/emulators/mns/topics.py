"""MNS topics and subscriptions, mixed into ``MnsModel`` (which owns storage and queues).

Publishing fans out synchronously: each queue-endpoint subscription whose FilterTag matches
gets the notification in its NotifyContentFormat before PublishMessage answers, so nothing is
ever pending in a topic. Other endpoints (HTTP, mail, SMS) are stored but never called.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from . import errors
from .errors import XMLNS
from .limits import MAX_TAG, TOPIC_DEFAULTS, TOPIC_RANGES, check_attributes, check_name, check_range

if TYPE_CHECKING:
    from local.emulators.base import Clock

TOPIC_RETENTION_SECONDS = 86400  # fixed by the service, reported by GetTopicAttributes
FORMATS = ("XML", "JSON", "SIMPLIFIED")
STRATEGIES = ("BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY")

# acs:mns:{region}:{account}:queues/{name} (TopicHelper.generate_queue_endpoint), and the
# http(s)://{account}.mns.{region}.aliyuncs.com/queues/{name} form seen in samples.
_QUEUE_ENDPOINT = re.compile(
    r"^(?:acs:mns:[^:]*:[^:]*:queues/|https?://[^/]+/queues/)([A-Za-z0-9-]+)/?$"
)


def queue_of(endpoint: str) -> str | None:
    """The queue a subscription endpoint points at, or None for other endpoint kinds."""
    match = _QUEUE_ENDPOINT.match(endpoint.strip())
    return match.group(1) if match else None


@dataclass(frozen=True)
class TopicInfo:
    """A topic's attributes as GetTopicAttributes reports them."""

    name: str
    create_time: int
    last_modify_time: int
    maximum_message_size: int
    logging_enabled: bool
    message_count: int = 0  # delivery is synchronous, so nothing waits in a topic


@dataclass(frozen=True)
class SubscriptionInfo:
    """A subscription as GetSubscriptionAttributes reports it."""

    topic: str
    name: str
    endpoint: str
    filter_tag: str
    notify_strategy: str
    notify_content_format: str
    create_time: int
    last_modify_time: int


def _topic(row: sqlite3.Row) -> TopicInfo:
    return TopicInfo(row["name"], row["create_time"], row["last_modify_time"],
                     row["maximum_message_size"], bool(row["logging_enabled"]))


def _subscription(row: sqlite3.Row) -> SubscriptionInfo:
    return SubscriptionInfo(
        row["topic"], row["name"], row["endpoint"], row["filter_tag"], row["notify_strategy"],
        row["notify_content_format"], row["create_time"], row["last_modify_time"],
    )


def notification(fmt: str, fields: dict[str, Any]) -> str:
    """The queue message body for one published message in NotifyContentFormat ``fmt``."""
    if fmt == "SIMPLIFIED":
        return str(fields["Message"])
    if fmt == "JSON":
        return json.dumps(fields, ensure_ascii=False)
    children = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return (f'<?xml version="1.0" encoding="utf-8"?>\n'
            f'<Notification xmlns="{XMLNS}">{children}</Notification>')


class TopicsMixin:
    """Topic and subscription operations of ``MnsModel``."""

    if TYPE_CHECKING:
        clock: Clock
        account_id: str
        _db: sqlite3.Connection

        def now_ms(self) -> int: ...
        def _write(self, notify: bool = True) -> AbstractContextManager[sqlite3.Connection]: ...
        def _deliver(self, queue: str, body: str) -> bool: ...

    def _topic_row(self, name: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM topics WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise errors.TopicNotExist(name=name)
        return row

    def create_topic(self, name: str, attrs: dict[str, int]) -> bool:
        """Create ``name``; False if it already exists with the same attributes."""
        check_name("TopicName", name)
        check_attributes(attrs, TOPIC_RANGES, "topic")
        wanted = {**TOPIC_DEFAULTS, **attrs}
        with self._write() as db:
            row = db.execute("SELECT * FROM topics WHERE name = ?", (name,)).fetchone()
            if row is not None:
                have = {"MaximumMessageSize": row["maximum_message_size"],
                        "LoggingEnabled": row["logging_enabled"]}
                if have != wanted:
                    raise errors.TopicAlreadyExist(name=name)
                return False
            now = int(self.clock.now())
            db.execute(
                "INSERT INTO topics (name, create_time, last_modify_time, maximum_message_size, "
                "logging_enabled) VALUES (?, ?, ?, ?, ?)",
                (name, now, now, wanted["MaximumMessageSize"], wanted["LoggingEnabled"]),
            )
            return True

    def set_topic_attributes(self, name: str, attrs: dict[str, int]) -> None:
        check_attributes(attrs, TOPIC_RANGES, "topic")
        with self._write() as db:
            self._topic_row(name)
            columns = {"MaximumMessageSize": "maximum_message_size",
                       "LoggingEnabled": "logging_enabled"}
            for attr, value in attrs.items():
                db.execute(f"UPDATE topics SET {columns[attr]} = ? WHERE name = ?", (value, name))
            db.execute("UPDATE topics SET last_modify_time = ? WHERE name = ?",
                       (int(self.clock.now()), name))

    def get_topic(self, name: str) -> TopicInfo:
        with self._write(notify=False):
            return _topic(self._topic_row(name))

    def delete_topic(self, name: str) -> None:
        with self._write() as db:
            self._topic_row(name)
            db.execute("DELETE FROM subscriptions WHERE topic = ?", (name,))
            db.execute("DELETE FROM topics WHERE name = ?", (name,))

    def list_topics(
        self, prefix: str = "", marker: str = "", limit: int = 1000
    ) -> tuple[list[TopicInfo], str]:
        with self._write(notify=False) as db:
            rows = db.execute(
                "SELECT * FROM topics WHERE name >= ? AND substr(name, 1, ?) = ? "
                "ORDER BY name LIMIT ?",
                (marker, len(prefix), prefix, limit + 1),
            ).fetchall()
        page = [_topic(row) for row in rows[:limit]]
        return page, rows[limit]["name"] if len(rows) > limit else ""

    # --- subscriptions ---------------------------------------------------------------------
    def _subscription_row(self, topic: str, name: str) -> sqlite3.Row:
        row = self._db.execute(
            "SELECT * FROM subscriptions WHERE topic = ? AND name = ?", (topic, name)
        ).fetchone()
        if row is None:
            raise errors.SubscriptionNotExist(name=name)
        return row

    def subscribe(self, topic: str, name: str, endpoint: str, filter_tag: str = "",
                  notify_strategy: str = "", notify_content_format: str = "") -> bool:
        """Create subscription ``name``; False if it exists with the same attributes."""
        check_name("SubscriptionName", name)
        if not endpoint:
            raise errors.InvalidArgument(param="Endpoint", detail="a non-empty endpoint")
        strategy = notify_strategy or STRATEGIES[0]
        fmt = notify_content_format or "XML"
        if strategy not in STRATEGIES:
            raise errors.InvalidArgument(param="NotifyStrategy", detail=" or ".join(STRATEGIES))
        if fmt not in FORMATS:
            raise errors.InvalidArgument(param="NotifyContentFormat", detail=", ".join(FORMATS))
        check_range("FilterTag length", len(filter_tag), 0, MAX_TAG)
        wanted = (endpoint, filter_tag, strategy, fmt)
        with self._write() as db:
            self._topic_row(topic)
            row = db.execute(
                "SELECT * FROM subscriptions WHERE topic = ? AND name = ?", (topic, name)
            ).fetchone()
            if row is not None:
                have = (row["endpoint"], row["filter_tag"], row["notify_strategy"],
                        row["notify_content_format"])
                if have != wanted:
                    raise errors.SubscriptionAlreadyExist(name=name)
                return False
            now = int(self.clock.now())
            db.execute("INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (topic, name, *wanted, now, now))
            return True

    def set_subscription_attributes(self, topic: str, name: str, notify_strategy: str) -> None:
        if notify_strategy and notify_strategy not in STRATEGIES:
            raise errors.InvalidArgument(param="NotifyStrategy", detail=" or ".join(STRATEGIES))
        with self._write() as db:
            self._topic_row(topic)
            self._subscription_row(topic, name)
            if notify_strategy:
                db.execute(
                    "UPDATE subscriptions SET notify_strategy = ? WHERE topic = ? AND name = ?",
                    (notify_strategy, topic, name),
                )
            db.execute(
                "UPDATE subscriptions SET last_modify_time = ? WHERE topic = ? AND name = ?",
                (int(self.clock.now()), topic, name),
            )

    def get_subscription(self, topic: str, name: str) -> SubscriptionInfo:
        with self._write(notify=False):
            self._topic_row(topic)
            return _subscription(self._subscription_row(topic, name))

    def unsubscribe(self, topic: str, name: str) -> None:
        with self._write() as db:
            self._topic_row(topic)
            self._subscription_row(topic, name)
            db.execute("DELETE FROM subscriptions WHERE topic = ? AND name = ?", (topic, name))

    def list_subscriptions(
        self, topic: str, prefix: str = "", marker: str = "", limit: int = 1000
    ) -> tuple[list[SubscriptionInfo], str]:
        with self._write(notify=False) as db:
            self._topic_row(topic)
            rows = db.execute(
                "SELECT * FROM subscriptions WHERE topic = ? AND name >= ? "
                "AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?",
                (topic, marker, len(prefix), prefix, limit + 1),
            ).fetchall()
        page = [_subscription(row) for row in rows[:limit]]
        return page, rows[limit]["name"] if len(rows) > limit else ""

    # --- publishing ------------------------------------------------------------------------
    def publish(self, topic: str, body: str, tag: str = "") -> tuple[str, str]:
        """Publish and fan out; returns (MessageId, MessageBodyMD5)."""
        check_range("MessageTag length", len(tag), 0, MAX_TAG)
        md5 = hashlib.md5(body.encode("utf-8")).hexdigest().upper()
        now = self.now_ms()
        message_id = f"{uuid.uuid4().hex[:16].upper()}-1-{now:X}-{secrets.randbelow(10**9):09d}"
        with self._write() as db:
            row = self._topic_row(topic)
            check_range("MessageBody length", len(body.encode("utf-8")), 1,
                        row["maximum_message_size"])
            subscriptions = db.execute(
                "SELECT * FROM subscriptions WHERE topic = ? ORDER BY name", (topic,)
            ).fetchall()
            for sub in subscriptions:
                queue = queue_of(sub["endpoint"])
                if queue is None or (sub["filter_tag"] and sub["filter_tag"] != tag):
                    continue
                fields: dict[str, Any] = {
                    "TopicOwner": self.account_id, "TopicName": topic,
                    "Subscriber": self.account_id, "SubscriptionName": sub["name"],
                    "MessageId": message_id, "MessageMD5": md5,
                }
                if tag:
                    fields["MessageTag"] = tag
                fields.update({"Message": body, "PublishTime": now})
                # A missing target queue drops the notification, as the service does after
                # its retries run out.
                self._deliver(queue, notification(sub["notify_content_format"], fields))
            db.execute("UPDATE topics SET published = published + 1 WHERE name = ?", (topic,))
        return message_id, md5

    def topic_overview(self) -> list[dict[str, Any]]:
        with self._write(notify=False) as db:
            topics = db.execute("SELECT * FROM topics ORDER BY name").fetchall()
            subs = db.execute("SELECT * FROM subscriptions ORDER BY topic, name").fetchall()
        return [
            {"name": t["name"], "published": t["published"],
             "subscriptions": [
                 {"name": s["name"], "endpoint": s["endpoint"], "filter_tag": s["filter_tag"],
                  "notify_content_format": s["notify_content_format"]}
                 for s in subs if s["topic"] == t["name"]
             ]}
            for t in topics
        ]
