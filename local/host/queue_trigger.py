"""FC 3.0 MNS-queue trigger (EventBridge event source): deliver queue messages to a function.

A poller long-polls the queue through the official MNS SDK and invokes the function once per
message with the CloudEvent EventBridge produces (research function-compute.md §2.3). The
message is deleted only when the invocation succeeds; otherwise it stays in the queue and comes
back after its visibility timeout — at-least-once, as on the cloud. How many times, and what
happens after that (dead-letter queue, discard, keep trying), is the trigger's
``runOptions`` — see ``local.host.delivery_policy``.

Deliveries are synchronous whatever ``asyncInvocationType`` says: the host waits for the
function's outcome to decide the message's fate either way.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from local.host.delivery_policy import DeliveryPolicy
from local.host.runtime import FunctionRuntime
from local.host.template import truthy

log = logging.getLogger("assistflow.host.queue")

WAIT_SECONDS = 1  # long-poll length; a send wakes the poll at once, so this only bounds stop()


@dataclass(frozen=True)
class MnsAccess:
    url: str
    access_key_id: str
    access_key_secret: str


def _iso(ms: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms % 1000):03d}Z"


def cloud_event(message: Any, *, queue: str, source: str, region: str, account_id: str,
                base64_decode: bool) -> dict[str, Any]:
    body = message.message_body
    if base64_decode:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            log.warning("message %s is not Base64 but the trigger sets IsBase64Decode; "
                        "delivering it unchanged", message.message_id)
    return {
        "id": message.message_id,
        "source": source,
        "specversion": "1.0",
        "type": "mns:Queue:SendMessage",
        "datacontenttype": "application/json;charset=utf-8",
        "subject": f"acs:mns:{region}:{account_id}:queues/{queue}",
        "time": _iso(float(message.enqueue_time)),
        "aliyunaccountid": account_id,
        "aliyunpublishtime": _iso(time.time() * 1000),
        "aliyunoriginalaccountid": account_id,
        "aliyuneventbusname": source,
        "aliyunregionid": region,
        "aliyunpublishaddr": "127.0.0.1",
        "data": {"requestId": message.message_id, "messageId": message.message_id,
                 "messageBody": body},
    }


class QueueTrigger:
    """Delivers one queue's messages to one function, up to ``concurrency`` at a time."""

    def __init__(self, name: str, runtime: FunctionRuntime, config: dict[str, Any],
                 access: MnsAccess, region: str, account_id: str, concurrency: int = 4,
                 label: str = "") -> None:
        params = (config.get("eventSourceConfig", {}).get("eventSourceParameters", {})
                  .get("sourceMNSParameters", {}))
        if not params.get("QueueName"):
            raise ValueError(f"trigger {name}: sourceMNSParameters.QueueName is required")
        self.name = name
        self.label = label
        self.runtime = runtime
        self.queue_name = str(params["QueueName"])
        try:
            self.base64_decode = truthy(params.get("IsBase64Decode"), default=True)
            self.enabled = truthy(config.get("triggerEnable"), default=True)
            self.policy = DeliveryPolicy.from_run_options(config.get("runOptions"))
        except ValueError as exc:
            raise ValueError(f"trigger {name}: {exc}") from None
        self.access = access
        self.region = region
        self.account_id = account_id
        self.source = f"MNS-{runtime.spec.name}-{name}"
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix=f"{label}queue-{name}")
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = threading.Lock()
        self.delivered = 0  # invocations that succeeded (message deleted)
        self.failed = 0  # invocations that failed (message left for redelivery or given up)
        self.dead_lettered = 0  # messages moved to the dead-letter queue
        self.discarded = 0  # messages dropped after their last try (errorsTolerance ALL)

    def _queue(self, name: str | None = None) -> Any:
        """A handle on ``name`` (default: the source queue) for this thread.

        An MNS ``Account`` is not thread-safe. Encoding is off both ways so a body is passed
        through byte for byte — including into the dead-letter queue.
        """
        name = name or self.queue_name
        handles: dict[str, Any] = self._local.__dict__.setdefault("queues", {})
        if name not in handles:
            from mns.account import Account

            account = Account(self.access.url, self.access.access_key_id,
                              self.access.access_key_secret)
            handles[name] = account.get_queue(name)
            handles[name].set_encoding(False)
        return handles[name]

    def start(self) -> None:
        if not self.enabled:
            log.info("trigger %s is disabled (triggerEnable: false)", self.name)
            return
        self._check_dead_letter_queue()
        self._thread = threading.Thread(target=self._poll, daemon=True,
                                        name=f"{self.label}queue-trigger-{self.name}")
        self._thread.start()

    def _check_dead_letter_queue(self) -> None:
        """Say so at start if the DLQ is missing, not only when the first message dies."""
        from mns.mns_exception import MNSExceptionBase, MNSServerException

        if self.policy.dead_letter_queue is None:
            return
        try:
            # A peek changes nothing; GetQueueAttributes would, through SDK 1.3.0, raise
            # DeprecationWarnings for fields the response no longer carries.
            self._queue(self.policy.dead_letter_queue).peek_message()
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":  # there, and empty
                return
            log.warning("trigger %s: dead-letter queue %s is not usable (%s); messages that "
                        "use up their deliveries will stay in %s until it exists", self.name,
                        self.policy.dead_letter_queue, exc, self.queue_name)
        except MNSExceptionBase as exc:
            log.warning("trigger %s: dead-letter queue %s is not usable (%s); messages that "
                        "use up their deliveries will stay in %s until it exists", self.name,
                        self.policy.dead_letter_queue, exc, self.queue_name)

    def _poll(self) -> None:
        from mns.mns_exception import MNSExceptionBase, MNSServerException

        while not self._stop.is_set():
            # All slots busy means every delivery is in an invocation; the timed wait only
            # lets stop() be noticed while they run.
            if not self._slots.acquire(timeout=0.5):
                continue
            free = 1
            while free < 16 and self._slots.acquire(blocking=False):
                free += 1
            try:
                messages = self._queue().batch_receive_message(free, WAIT_SECONDS)
            except MNSServerException as exc:
                messages = []
                if exc.type != "MessageNotExist":
                    log.warning("trigger %s: receive failed: %s", self.name, exc)
                    self._stop.wait(1)
            except MNSExceptionBase as exc:
                messages = []
                log.warning("trigger %s: receive failed: %s", self.name, exc)
                self._local.__dict__.pop("queues", None)  # reconnect next time
                self._stop.wait(1)
            for message in messages:
                self._pool.submit(self._deliver, message)
            for _ in range(free - len(messages)):
                self._slots.release()

    def _deliver(self, message: Any) -> None:
        try:
            count = int(message.dequeue_count)
            if self.policy.overdue(count):
                # Its earlier deliveries never reported back (host stopped mid-invocation,
                # visibility timeout shorter than the function's): its tries are used up.
                self._give_up(message, count, "it was received more often than allowed")
                return
            event = cloud_event(message, queue=self.queue_name, source=self.source,
                                region=self.region, account_id=self.account_id,
                                base64_decode=self.base64_decode)
            inv = self.runtime.invoke(json.dumps(event).encode())
            if inv.ok:
                self._count("delivered")
                self._ack(message)
                return
            if self._stop.is_set():
                return  # failed because the host is stopping: not the message's fault
            self._count("failed")
            error = inv.error or {}
            reason = f"{error.get('errorType')}: {error.get('errorMessage')}"
            if self.policy.exhausted(count):
                self._give_up(message, count, reason)
            else:
                log.warning("trigger %s: message %s failed on delivery %d (%s); it will be "
                            "delivered again after its visibility timeout", self.name,
                            message.message_id, count, reason)
        except Exception:
            log.exception("trigger %s: delivering %s failed", self.name, message.message_id)
        finally:
            self._slots.release()

    def _give_up(self, message: Any, count: int, reason: str) -> None:
        from mns.mns_exception import MNSExceptionBase
        from mns.queue import Message

        dlq = self.policy.dead_letter_queue
        if dlq is None:
            log.warning("trigger %s: discarding message %s after %d deliveries (%s); "
                        "errorsTolerance is ALL and there is no dead-letter queue", self.name,
                        message.message_id, count, reason)
            self._count("discarded")
            self._ack(message)
            return
        priority = int(getattr(message, "priority", -1) or -1)
        try:
            self._queue(dlq).send_message(Message(message.message_body,
                                                  priority=priority if priority > 0 else None))
        except MNSExceptionBase as exc:
            # Not deleted: it comes back, and the next receive retries the move.
            log.error("trigger %s: could not move message %s to dead-letter queue %s: %s",
                      self.name, message.message_id, dlq, exc)
            return
        log.warning("trigger %s: message %s moved to dead-letter queue %s after %d deliveries "
                    "(%s)", self.name, message.message_id, dlq, count, reason)
        self._count("dead_lettered")
        self._ack(message)

    def _count(self, counter: str) -> None:
        with self._counts:  # deliveries run on several pool threads
            setattr(self, counter, getattr(self, counter) + 1)

    def _ack(self, message: Any) -> None:
        from mns.mns_exception import MNSExceptionBase

        try:
            self._queue().delete_message(message.receipt_handle)
        except MNSExceptionBase as exc:
            # The handle expired (the function outlived the visibility timeout): the message
            # will come back, and the function's idempotent writes make that harmless.
            log.warning("trigger %s: could not delete %s: %s", self.name, message.message_id, exc)

    def begin_stop(self) -> None:
        """Receive nothing more; deliveries in flight end when the runtimes close."""
        self._stop.set()

    def stop(self) -> None:
        self.begin_stop()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS + 5)
            self._thread = None
        # Messages received but not yet handed to the function are just left: they come back
        # after their visibility timeout.
        self._pool.shutdown(wait=True, cancel_futures=True)
