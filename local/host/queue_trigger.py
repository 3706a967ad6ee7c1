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
comes back — at-least-once, as on the cloud. When, how often, and what happens once the retries
are used up (dead-letter queue, discard, or a blocked stream) is the trigger's ``runOptions`` as
EventBridge documents them — see ``local.host.delivery_policy``.

``asyncInvocationType`` is read as FC 3.0's ``EventBridgeTriggerConfig`` reference reads it
today — ``true``: synchronous, ``false`` (the default): asynchronous
(https://www.alibabacloud.com/help/en/functioncompute/fc/developer-reference/api-fc-2023-03-30-struct-eventbridgetriggerconfig;
FC 2.0's reference read ``true`` as asynchronous) — and each invocation method behaves as FC's
MNS-queue-trigger page describes it: a synchronous trigger "waits for the function to return
before delivering the next event or batch", an asynchronous one "immediately moves to the next
one" while the function runs in the background:

* **synchronous**: one message at a time. The stream waits for the function's outcome to decide
  the message's fate, which is where ``runOptions`` apply (retries, then ``errorsTolerance``);
* **asynchronous**: FC accepts the event and runs it as any asynchronous invocation — the
  function's ``AsyncInvokeConfig`` retries, then its ``OnFailure`` destination
  (``local.host.async_invoke``) — up to ``ASYNC_IN_FLIGHT`` at a time (the function's instances
  bound how many run). The message stays hidden in the queue until that invocation has ended —
  where FC keeps an accepted event in its own durable queue — so one cut short by the host
  stopping comes back, as on the cloud it would still run; it is deleted once the invocation
  succeeded or was reported to its destination (or dropped, without one, as FC drops it).

Each delivery starts after the profile's EventBridge delivery time
(``TriggerContext.delivery_delay``; none under ``fast``). For an asynchronous trigger that time
is the stream's latency, not a resource: a message waits it out in a ``DelayLine`` (no thread,
no delivery slot), so the delivery slots are spent on invocations alone and the delay does not
cut the stream's throughput — while ``ASYNC_IN_FLIGHT`` messages are in invocations, as many
more may be in their delay. A synchronous trigger's next message starts its delivery time only
once the function returned.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local.host.async_invoke import AsyncInvoker, DestinationError
from local.host.delay_line import DelayLine
from local.host.delivery_policy import DeliveryPolicy
from local.host.template import TriggerDecl, truthy
from local.host.trigger import DeliveryStats, MnsAccess, Trigger, TriggerContext

log = logging.getLogger("assistflow.host.queue")

WAIT_SECONDS = 1  # long-poll length; a send wakes the poll at once, so this only bounds stop()
ASYNC_IN_FLIGHT = 16  # asynchronous deliveries accepted and not yet ended, per trigger


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
    """Delivers one queue's messages to one function: one at a time when it invokes
    synchronously, up to ``ASYNC_IN_FLIGHT`` through ``invoker`` when asynchronously."""

    def __init__(self, name: str, function: str, config: dict[str, Any], access: MnsAccess,
                 region: str, account_id: str, invoker: AsyncInvoker, label: str = "",
                 delivery_delay: Callable[[], float] | None = None) -> None:
        super().__init__(name, function)
        params = (config.get("eventSourceConfig", {}).get("eventSourceParameters", {})
                  .get("sourceMNSParameters", {}))
        if not params.get("QueueName"):
            raise ValueError(f"trigger {name}: sourceMNSParameters.QueueName is required")
        self.label = label
        self.config = config
        self.queue_name = str(params["QueueName"])
        try:
            self.base64_decode = truthy(params.get("IsBase64Decode"), default=True)
            self.enabled = truthy(config.get("triggerEnable"), default=True)
            self.synchronous = truthy(config.get("asyncInvocationType"), default=False)
            self.policy = DeliveryPolicy.from_run_options(config.get("runOptions"))
        except ValueError as exc:
            raise ValueError(f"trigger {name}: {exc}") from None
        self.region = region
        self.account_id = account_id
        self.source = f"MNS-{function}-{name}"
        self.stats = DeliveryStats()
        self._delivery_delay = delivery_delay or (lambda: 0.0)
        self._invoker = invoker
        self._queues = QueueHandles(access)
        concurrency = 1 if self.synchronous else ASYNC_IN_FLIGHT
        # Messages received and not yet done with: in an invocation, or (with a delivery time,
        # asynchronously) in their delay too. A synchronous stream delivers nothing until the
        # function returned, so its next message's delivery time only starts then.
        delays = delivery_delay is not None and not getattr(delivery_delay, "zero", False)
        self._slots = threading.Semaphore(
            concurrency * (2 if delays and not self.synchronous else 1))
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix=f"{label}queue-{name}")
        self._later = DelayLine(f"{label}queue-{name}-delay")
        self._stop = threading.Event()
        # errorsTolerance NONE and a message out of retries: the stream delivers nothing more.
        self.blocked = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> QueueTrigger:
        return cls(decl.name, decl.function, decl.config, context.mns, context.region,
                   context.account_id, context.invoker, label=context.label,
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
        if not self.policy.tolerate_errors:
            log.warning("trigger %s: deadLetterQueue %s is set but errorsTolerance is NONE: "
                        "EventBridge uses a dead-letter queue only when errors are tolerated "
                        "(ALL); a message out of retries blocks the stream instead", self.name,
                        self.policy.dead_letter_queue)
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

        while not (self._stop.is_set() or self.blocked.is_set()):
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
                delay = self._delivery_delay()
                if delay <= 0:
                    self._start(message)
                    continue
                try:
                    self._later.call_later(delay, functools.partial(self._start, message))
                except RuntimeError:  # stopping: it comes back after its visibility timeout
                    self._slots.release()
            for _ in range(free - len(messages)):
                self._slots.release()

    def _start(self, message: Any) -> None:
        try:
            self._pool.submit(self._deliver, message)
        except RuntimeError:  # stopping: it comes back after its visibility timeout
            self._slots.release()

    def _deliver(self, message: Any) -> None:
        try:
            if self.blocked.is_set() or self._stop.is_set():
                return  # it stays in the queue (and comes back after its visibility timeout)
            count = int(message.dequeue_count)
            if self.policy.overdue(count):
                # Its earlier deliveries never reported back (host stopped mid-invocation,
                # visibility timeout shorter than the function's): its tries are used up.
                self._give_up(message, count, "it was received more often than allowed")
                return
            event = build_queue_event(message, queue=self.queue_name, source=self.source,
                                region=self.region, account_id=self.account_id,
                                base64_decode=self.base64_decode)
            body = json.dumps(event).encode()
            if not self.synchronous:
                self._run_async(message, body)
                return
            inv = self.runtime.invoke(body)
            if inv.ok:
                self.stats.record(delivered=1)
                self._ack(message)
                return
            if self._stop.is_set():
                return  # failed because the host is stopping: not the message's fault
            self.stats.record(failed=1)
            error = inv.error or {}
            reason = f"{error.get('errorType')}: {error.get('errorMessage')}"
            if self.policy.after_failure(count) == "retry":
                self._retry_later(message, count, reason)
            else:
                self._give_up(message, count, reason)
        except Exception:
            log.exception("trigger %s: delivering %s failed", self.name, message.message_id)
        finally:
            self._slots.release()

    def _run_async(self, message: Any, event: bytes) -> None:
        """FC has accepted the event: run it with the function's asynchronous retries and
        destination, keeping the message hidden meanwhile; delete it once that has ended."""
        from mns.mns_exception import MNSExceptionBase

        handle = [message.receipt_handle]

        def keep_hidden(pause: float) -> None:
            # Across FC's retry pause and the next attempt (the function's Timeout).
            seconds = int(pause + self.runtime.spec.timeout) + 10
            try:
                handle[0] = self._queue().change_message_visibility(
                    handle[0], seconds).receipt_handle
            except MNSExceptionBase as exc:  # expired: the message may be delivered again
                log.warning("trigger %s: could not keep %s hidden during its retries: %s",
                            self.name, message.message_id, exc)

        try:
            inv = self._invoker.run(self.runtime, event, before_retry=keep_hidden)
        except DestinationError as exc:
            # Not deleted: it comes back after its visibility timeout and is run again.
            log.error("trigger %s: %s; message %s stays in %s", self.name, exc,
                      message.message_id, self.queue_name)
            self.stats.record(failed=1)
            return
        if self._stop.is_set() and not inv.ok:
            return  # cut short by the host stopping: it comes back, as FC would still run it
        self.stats.record(delivered=int(inv.ok), failed=int(not inv.ok))
        message.receipt_handle = handle[0]
        self._ack(message)

    def _retry_later(self, message: Any, count: int, reason: str) -> None:
        """Hide the message for the policy's next retry interval, then it is received again."""
        from mns.mns_exception import MNSExceptionBase

        delay = self.policy.retry_delay(count)
        try:
            self._queue().change_message_visibility(message.receipt_handle, delay)
        except MNSExceptionBase as exc:
            # The handle expired (the invocation outlived the visibility timeout): the message
            # is visible again already and comes back at once.
            log.warning("trigger %s: could not delay the retry of %s: %s", self.name,
                        message.message_id, exc)
            return
        log.warning("trigger %s: message %s failed on delivery %d of %d (%s); %s retry in %d s",
                    self.name, message.message_id, count, self.policy.max_deliveries, reason,
                    self.policy.strategy, delay)

    def _give_up(self, message: Any, count: int, reason: str) -> None:
        outcome = self.policy.give_up()
        if outcome == "block":
            self._block(message, count, reason)
        elif outcome == "discard":
            log.warning("trigger %s: discarding message %s after %d deliveries (%s); "
                        "errorsTolerance is ALL and there is no dead-letter queue", self.name,
                        message.message_id, count, reason)
            self.stats.record(discarded=1)
            self._ack(message)
        else:
            self._dead_letter(message, count, reason)

    def _block(self, message: Any, count: int, reason: str) -> None:
        """``errorsTolerance: NONE``: the event stream stops; nothing more is delivered."""
        self.blocked.set()
        log.error("trigger %s: event stream BLOCKED: message %s failed %d deliveries (%s) and "
                  "errorsTolerance is NONE, so no further message of queue %s is delivered to "
                  "%s (EventBridge sets the stream's task to Ready). The message stays in the "
                  "queue; fix the function and start the host again to retry it, or set "
                  "errorsTolerance: ALL with a deadLetterQueue", self.name, message.message_id,
                  count, reason, self.queue_name, self.function)

    def _dead_letter(self, message: Any, count: int, reason: str) -> None:
        from mns.mns_exception import MNSExceptionBase
        from mns.queue import Message

        dlq = self.policy.dead_letter_queue
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
        self._later.stop()  # messages in their delay come back after their visibility timeout

    def stop(self) -> None:
        self.begin_stop()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS + 5)
            self._thread = None
        # Messages received but not yet handed to the function are just left: they come back
        # after their visibility timeout.
        self._pool.shutdown(wait=True, cancel_futures=True)
