"""MNS state and rules, without HTTP or SQL: queues and their messages; topics in ``topics.py``.

``MnsStore`` keeps everything in one SQLite file, so a restarted emulator sees the same queues
and messages, invisible and delayed ones included, with their times. Long-polling receivers
wait on a condition built on the store's lock: every write that can make a message receivable
(or remove the queue) notifies it, and it is subscribed to the clock, so ``Clock.advance``
wakes receivers as well. Notifying inside a transaction is safe: a woken receiver runs only
once the writer has committed and released the lock.

Times: queue/topic create and modify times are epoch seconds, message times epoch
milliseconds, as on the wire. All of them come from the injected clock.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import wire
from .errors import MessageNotExist, MnsError, QueueAlreadyExist, QueueNotExist, ReceiptHandleError
from .limits import (
    DEFAULT_PRIORITY,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    PRIORITY_RANGE,
    QUEUE_DEFAULTS,
    QUEUE_RANGES,
    check_attributes,
    check_range,
    creation_attributes,
)
from .topics import Topics

if TYPE_CHECKING:
    from local.emulators.base import Clock

    from .store import MnsStore


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
    """A message in a queue, with the times and counters the API reports.

    Receipt handles: every receive issues a new handle, and a handle is valid only while it is
    the message's latest one and its NextVisibleTime has not passed (ReceiveMessage,
    https://www.alibabacloud.com/help/en/mns/developer-reference/receivemessage). The docs
    disagree on the code for a handle that is no longer valid; the emulator answers
    ReceiptHandleError 400, which the DeleteMessage error table lists
    (https://www.alibabacloud.com/help/en/mns/developer-reference/deletemessage), for every
    invalid handle on DeleteMessage (stale, expired, already deleted, malformed), and on
    ChangeMessageVisibility MessageNotExist 404 for an expired-but-latest handle, which its
    error table lists
    (https://alibabacloud.com/help/en/mns/developer-reference/changemessagevisibility).
    """

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

    def received(self, now_ms: int, visibility_timeout: int) -> StoredMessage:
        """This message handed to a receiver: a new handle, hidden for ``visibility_timeout`` s."""
        return replace(
            self, first_dequeue_time=self.first_dequeue_time or now_ms,
            next_visible_time=now_ms + visibility_timeout * 1000,
            dequeue_count=self.dequeue_count + 1, receipt_handle=wire.new_receipt_handle(),
        )

    def change_visibility(self, now_ms: int, timeout: int) -> StoredMessage:
        """Hidden for ``timeout`` s from now, under a new handle; its handle must not be expired."""
        if self.next_visible_time <= now_ms:
            raise MessageNotExist()
        return replace(self, next_visible_time=now_ms + timeout * 1000,
                       receipt_handle=wire.new_receipt_handle())

    def check_deletable(self, now_ms: int) -> None:
        """Only a receiver whose handle has not expired may delete the message."""
        if self.next_visible_time <= now_ms:
            raise ReceiptHandleError(handle=str(self.receipt_handle))


@dataclass(frozen=True)
class Queue:
    """A queue: its attributes (every one of ``QUEUE_DEFAULTS``, by MNS name) and times."""

    name: str
    create_time: int
    last_modify_time: int
    attributes: dict[str, int]

    def check(self, message: NewMessage) -> None:
        """The message fits this queue: body size, and delay and priority in range."""
        size = len(message.body.encode("utf-8"))
        check_range("MessageBody length", size, 1, self.attributes["MaximumMessageSize"])
        if message.delay_seconds is not None:
            check_range("DelaySeconds", message.delay_seconds, *QUEUE_RANGES["DelaySeconds"])
        if message.priority is not None:
            check_range("Priority", message.priority, *PRIORITY_RANGE)

    def enqueued(self, message: NewMessage, now_ms: int) -> StoredMessage:
        """``message`` as this queue stores it, with the queue's defaults applied."""
        delay = (self.attributes["DelaySeconds"] if message.delay_seconds is None
                 else message.delay_seconds)
        return StoredMessage(
            wire.new_message_id(now_ms), message.body, wire.body_md5(message.body),
            DEFAULT_PRIORITY if message.priority is None else message.priority, now_ms, None,
            now_ms + delay * 1000, 0, None, message.group_id, message.properties,
        )

    def retention_cutoff(self, now_ms: int) -> int:
        """Messages enqueued at or before this time (ms) have outlived the retention period."""
        return now_ms - self.attributes["MessageRetentionPeriod"] * 1000


@dataclass(frozen=True)
class QueueStats:
    """A queue with its message counts, as GetQueueAttributes reports it."""

    queue: Queue
    active: int = 0
    inactive: int = 0
    delayed: int = 0


class MnsModel:
    """The whole MNS account: thread-safe, persistent, clock-driven."""

    def __init__(self, store: MnsStore, clock: Clock, account_id: str) -> None:
        self.store = store
        self.clock = clock
        self.account_id = account_id
        self.topics = Topics(store, clock, account_id, deliver=self._deliver)
        self._receivable = threading.Condition(store.lock)  # long-polling receivers wait here
        self._closed = False
        clock.subscribe(self._receivable)

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def _wake_receivers(self) -> None:
        with self._receivable:
            self._receivable.notify_all()

    def close(self) -> None:
        with self._receivable:
            self._closed = True
            self._receivable.notify_all()
            self.store.close()

    def reset(self) -> None:
        self.store.wipe()
        self._wake_receivers()

    # --- queues ----------------------------------------------------------------------------
    def _queue(self, name: str) -> Queue:
        queue = self.store.queue(name)
        if queue is None:
            raise QueueNotExist(name=name)
        return queue

    def create_queue(self, name: str, attrs: dict[str, int]) -> bool:
        """Create ``name``; False if it already exists with the same attributes."""
        wanted = creation_attributes("queue", name, attrs, QUEUE_DEFAULTS, QUEUE_RANGES)
        with self.store.transaction():
            existing = self.store.queue(name)
            if existing is not None:
                if existing.attributes != wanted:
                    raise QueueAlreadyExist(name=name)
                return False
            now = int(self.clock.now())
            self.store.insert_queue(Queue(name, now, now, wanted))
            return True

    def set_queue_attributes(self, name: str, attrs: dict[str, int]) -> None:
        check_attributes(attrs, QUEUE_RANGES, "queue")
        with self.store.transaction():
            self._queue(name)
            self.store.update_queue(name, attrs, int(self.clock.now()))
            self._wake_receivers()  # a new PollingWaitSeconds or visibility applies

    def delete_queue(self, name: str) -> None:
        with self.store.transaction():
            self._queue(name)
            self.store.delete_queue(name)
            self._wake_receivers()  # its receivers answer QueueNotExist now

    def get_queue(self, name: str) -> QueueStats:
        with self.store.transaction():
            return self._stats(self._queue(name))

    def _stats(self, queue: Queue) -> QueueStats:
        now = self._purge_expired(queue)
        counts = Counter(m.state(now) for m in self.store.messages(queue.name))
        return QueueStats(queue, counts["active"], counts["inactive"], counts["delayed"])

    def list_queues(self, prefix: str = "", marker: str = "", limit: int = 1000,
                    ) -> tuple[list[QueueStats], str]:
        """Queues by name from ``marker`` on; the second value is the next page's marker."""
        with self.store.transaction():
            page, next_marker = self.store.queues(prefix, marker, limit)
            return [self._stats(queue) for queue in page], next_marker

    # --- messages --------------------------------------------------------------------------
    def _purge_expired(self, queue: Queue) -> int:
        """Drop the messages past the queue's retention period; the time (ms) it used."""
        now = self.now_ms()
        self.store.delete_messages_enqueued_until(queue.name, queue.retention_cutoff(now))
        return now

    def _enqueue(self, queue: Queue, message: NewMessage) -> StoredMessage:
        stored = queue.enqueued(message, self.now_ms())
        self.store.insert_message(queue.name, stored)
        self._wake_receivers()
        return stored

    def _deliver(self, queue: str, body: str) -> bool:
        """Push a topic notification into ``queue`` (inside the publisher's transaction)."""
        target = self.store.queue(queue)
        if target is None:
            return False
        self._enqueue(target, NewMessage(body))
        return True

    def send_message(self, queue: str, message: NewMessage) -> StoredMessage:
        with self.store.transaction():
            target = self._queue(queue)
            target.check(message)
            return self._enqueue(target, message)

    def send_batch(self, queue: str, messages: list[NewMessage],
                   ) -> list[StoredMessage | MnsError]:
        """Send each message; a message that breaks a rule yields its error, the rest go in."""
        check_range("the number of Messages", len(messages), 1, MAX_BATCH)
        total = sum(len(m.body.encode("utf-8")) for m in messages)
        check_range("the total size of Messages", total, 1, MAX_BATCH_BYTES)
        results: list[StoredMessage | MnsError] = []
        with self.store.transaction():
            target = self._queue(queue)
            for message in messages:
                try:
                    target.check(message)
                except MnsError as exc:
                    results.append(exc)
                    continue
                results.append(self._enqueue(target, message))
        return results

    def receive(self, queue: str, count: int, wait_seconds: int | None) -> list[StoredMessage]:
        """Receive up to ``count`` messages, long-polling up to the wait; none → MessageNotExist."""
        check_range("numOfMessages", count, 1, MAX_BATCH)
        if wait_seconds is not None:
            check_range("waitseconds", wait_seconds, *QUEUE_RANGES["PollingWaitSeconds"])
        with self._receivable:
            target = self._queue(queue)
            wait = target.attributes["PollingWaitSeconds"] if wait_seconds is None else wait_seconds
            deadline = self.clock.now() + wait
            while True:
                if self._closed:
                    raise MessageNotExist()
                with self.store.transaction():
                    taken = self._take_visible(self._queue(queue), count)
                if taken:
                    return taken
                now = self.clock.now()
                if now >= deadline:
                    raise MessageNotExist()
                # Sleep until the deadline or until the next invisible/delayed message is due;
                # sends and clock advances notify the condition earlier.
                due = self.store.next_visible_time(queue)
                timeout = deadline - now
                if due is not None:
                    timeout = min(timeout, max(due / 1000 - now, 0.005))
                self._receivable.wait(timeout)

    def _take_visible(self, queue: Queue, count: int) -> list[StoredMessage]:
        now = self._purge_expired(queue)
        visibility = queue.attributes["VisibilityTimeout"]
        taken = [message.received(now, visibility)
                 for message in self.store.messages(queue.name, visible_at=now, limit=count)]
        for message in taken:
            self.store.update_message(message)
        return taken

    def peek(self, queue: str, count: int) -> list[StoredMessage]:
        """The next ``count`` receivable messages, changing nothing."""
        check_range("numOfMessages", count, 1, MAX_BATCH)
        with self.store.transaction():
            now = self._purge_expired(self._queue(queue))
            found = self.store.messages(queue, visible_at=now, limit=count)
        if not found:
            raise MessageNotExist()
        return found

    def _by_handle(self, queue: str, handle: str) -> StoredMessage:
        found = self.store.messages(queue, handle=handle, limit=1)
        if not found:
            raise ReceiptHandleError(handle=handle)
        return found[0]

    def _delete_one(self, queue: str, handle: str) -> None:
        message = self._by_handle(queue, handle)
        message.check_deletable(self.now_ms())
        self.store.delete_message(message.message_id)

    def delete_message(self, queue: str, handle: str) -> None:
        with self.store.transaction():
            self._queue(queue)
            self._delete_one(queue, handle)

    def delete_batch(self, queue: str, handles: list[str]) -> list[tuple[str, MnsError]]:
        """Delete each handle's message; returns the handles that failed, with their errors."""
        check_range("the number of ReceiptHandles", len(handles), 1, MAX_BATCH)
        failed = []
        with self.store.transaction():
            self._queue(queue)
            for handle in handles:
                try:
                    self._delete_one(queue, handle)
                except MnsError as exc:
                    failed.append((handle, exc))
        return failed

    def change_visibility(self, queue: str, handle: str, timeout: int) -> StoredMessage:
        check_range("VisibilityTimeout", timeout, *QUEUE_RANGES["VisibilityTimeout"])
        with self.store.transaction():
            self._queue(queue)
            message = self._by_handle(queue, handle).change_visibility(self.now_ms(), timeout)
            self.store.update_message(message)
            self._wake_receivers()  # it may now be due sooner than a receiver computed
        return message

    # --- account ---------------------------------------------------------------------------
    def get_logging_bucket(self) -> str:
        return self.store.account_value("LoggingBucket") or ""

    def set_logging_bucket(self, bucket: str) -> None:
        self.store.set_account_value("LoggingBucket", bucket)

    # --- inspection (control API) ----------------------------------------------------------
    def queue_overview(self) -> list[dict[str, Any]]:
        queues, _ = self.list_queues(limit=1_000_000)
        return [
            {"name": q.queue.name, "active": q.active, "inactive": q.inactive,
             "delayed": q.delayed, "attributes": q.queue.attributes,
             "create_time": q.queue.create_time}
            for q in queues
        ]

    def queue_messages(self, queue: str) -> list[dict[str, Any]]:
        with self.store.transaction():
            now = self._purge_expired(self._queue(queue))
            return [
                {"message_id": m.message_id, "body": m.body, "state": m.state(now),
                 "priority": m.priority, "enqueue_time": m.enqueue_time,
                 "first_dequeue_time": m.first_dequeue_time,
                 "next_visible_time": m.next_visible_time, "dequeue_count": m.dequeue_count}
                for m in self.store.messages(queue)
            ]

    def dump(self) -> dict[str, Any]:
        queues = self.queue_overview()
        for queue in queues:
            queue["messages"] = self.queue_messages(queue["name"])
        return {"queues": queues, "topics": self.topics.overview(),
                "logging_bucket": self.get_logging_bucket()}
