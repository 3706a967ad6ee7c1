"""FC 3.0 MNS-queue trigger (EventBridge event source): deliver queue messages to a function.

A poller long-polls the queue through the official MNS SDK and invokes the function once per
message with the CloudEvent EventBridge produces in event mode: ``type``
``mns:Queue:SendMessage``, ``source`` and event bus ``MNS-<function>-<trigger>``, the message
in ``data`` (``requestId``, ``messageId``, ``messageBody``, Base64-decoded unless
``IsBase64Decode`` is false). Sources: "Simple Message Queue (formerly MNS) queue triggers"
(https://www.alibabacloud.com/help/en/functioncompute/fc/mns-queue-triggers) and FC 3.0's
``SourceMNSParameters`` (``alibabacloud-fc20230330``;
https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/developer-reference/api-fc-2023-03-30-struct-sourcemnsparameters).

The message is deleted only when the invocation succeeds; otherwise it stays in the queue and
comes back after its visibility timeout — at-least-once, as on the cloud. How many times, and
what happens after that (dead-letter queue, discard, keep trying), is the trigger's
``runOptions`` — see ``local.host.delivery_policy``.

Deliveries are synchronous whatever ``asyncInvocationType`` says: the host waits for the
function's outcome to decide the message's fate either way. Each starts after the profile's
EventBridge delivery time (``TriggerContext.delivery_delay``; none under ``fast``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local.host.delivery_policy import DeliveryPolicy
from local.host.template import TriggerDecl, truthy
from local.host.trigger import DeliveryStats, MnsAccess, Trigger, TriggerContext

log = logging.getLogger("assistflow.host.queue")

WAIT_SECONDS = 1  # long-poll length; a send wakes the poll at once, so this only bounds stop()


def _iso(ms: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms % 1000):03d}Z"


def build_queue_event(message: Any, *, queue: str, source: str, region: str, account_id: str,
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


class QueueHandles(threading.local):
    """The calling thread's MNS queue handles, by queue name.

    An MNS ``Account`` is not thread-safe, so the poller and each delivery thread get their
    own. Encoding is off both ways so a body is passed through byte for byte — including into
    the dead-letter queue.
    """

    def __init__(self, access: MnsAccess) -> None:
        # threading.local runs __init__ again, with these arguments, in every thread.
        self._access = access
        self._queues: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        queue = self._queues.get(name)
        if queue is None:
            from mns.account import Account

            account = Account(self._access.url, self._access.access_key_id,
                              self._access.access_key_secret)
            queue = self._queues[name] = account.get_queue(name)
            queue.set_encoding(False)
        return queue

    def forget(self) -> None:
        """Drop this thread's handles: the next ``get`` connects again."""
        self._queues = {}


class QueueTrigger(Trigger):
    """Delivers one queue's messages to one function, up to ``concurrency`` at a time."""

    def __init__(self, name: str, function: str, config: dict[str, Any], access: MnsAccess,
                 region: str, account_id: str, concurrency: int = 4, label: str = "",
                 delivery_delay: Callable[[], float] | None = None) -> None:
        super().__init__(name, function)
        params = (config.get("eventSourceConfig", {}).get("eventSourceParameters", {})
                  .get("sourceMNSParameters", {}))
        if not params.get("QueueName"):
            raise ValueError(f"trigger {name}: sourceMNSParameters.QueueName is required")
        self.label = label
        self.queue_name = str(params["QueueName"])
        try:
            self.base64_decode = truthy(params.get("IsBase64Decode"), default=True)
            self.enabled = truthy(config.get("triggerEnable"), default=True)
            self.policy = DeliveryPolicy.from_run_options(config.get("runOptions"))
        except ValueError as exc:
            raise ValueError(f"trigger {name}: {exc}") from None
        self.region = region
        self.account_id = account_id
        self.source = f"MNS-{function}-{name}"
        self.stats = DeliveryStats()
        self._delivery_delay = delivery_delay or (lambda: 0.0)
        self._queues = QueueHandles(access)
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix=f"{label}queue-{name}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> QueueTrigger:
        return cls(decl.name, decl.function, decl.config, context.mns, context.region,
                   context.account_id, label=context.label,
                   delivery_delay=context.delivery_delay)

    def _queue(self, name: str | None = None) -> Any:
        """This thread's handle on ``name`` (default: the source queue)."""
        return self._queues.get(name or self.queue_name)

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
        except MNSExceptionBase as exc:
            if isinstance(exc, MNSServerException) and exc.type == "MessageNotExist":
                return  # there, and empty
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
                self._queues.forget()  # reconnect next time
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
            delay = self._delivery_delay()
            if delay > 0 and self._stop.wait(delay):
                return  # stopping: the message comes back after its visibility timeout
            event = build_queue_event(message, queue=self.queue_name, source=self.source,
                                region=self.region, account_id=self.account_id,
                                base64_decode=self.base64_decode)
            inv = self.runtime.invoke(json.dumps(event).encode())
            if inv.ok:
                self.stats.record(delivered=1)
                self._ack(message)
                return
            if self._stop.is_set():
                return  # failed because the host is stopping: not the message's fault
            self.stats.record(failed=1)
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
            self.stats.record(discarded=1)
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
        self.stats.record(dead_lettered=1)
        self._ack(message)

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
