"""FC 3.0 MNS-queue trigger (EventBridge event source): deliver queue messages to a function.

A poller long-polls the queue through the official MNS SDK and invokes the function once per
message with the CloudEvent EventBridge produces (research function-compute.md §2.3). The
message is deleted only when the invocation succeeds; otherwise it stays in the queue and comes
back after its visibility timeout — at-least-once, as on the cloud.
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

from local.host.runtime import FunctionRuntime

log = logging.getLogger("assistflow.host.queue")

WAIT_SECONDS = 2  # long-poll length; a send wakes the poll at once, so this only bounds stop()


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
                 access: MnsAccess, region: str, account_id: str, concurrency: int = 4) -> None:
        params = (config.get("eventSourceConfig", {}).get("eventSourceParameters", {})
                  .get("sourceMNSParameters", {}))
        if not params.get("QueueName"):
            raise ValueError(f"trigger {name}: sourceMNSParameters.QueueName is required")
        self.name = name
        self.runtime = runtime
        self.queue_name = str(params["QueueName"])
        self.base64_decode = bool(params.get("IsBase64Decode", True))
        self.enabled = bool(config.get("triggerEnable", True))
        self.access = access
        self.region = region
        self.account_id = account_id
        self.source = f"MNS-{runtime.spec.name}-{name}"
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix=f"queue-{name}")
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0

    def _queue(self) -> Any:
        """A queue handle for this thread (an MNS ``Account`` is not thread-safe)."""
        if not hasattr(self._local, "queue"):
            from mns.account import Account

            account = Account(self.access.url, self.access.access_key_id,
                              self.access.access_key_secret)
            self._local.queue = account.get_queue(self.queue_name)
            self._local.queue.set_encoding(False)
        return self._local.queue

    def start(self) -> None:
        if not self.enabled:
            log.info("trigger %s is disabled (triggerEnable: false)", self.name)
            return
        self._thread = threading.Thread(target=self._poll, daemon=True,
                                        name=f"queue-trigger-{self.name}")
        self._thread.start()

    def _poll(self) -> None:
        from mns.mns_exception import MNSExceptionBase, MNSServerException

        while not self._stop.is_set():
            self._slots.acquire()
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
                self._local.__dict__.pop("queue", None)  # reconnect next time
                self._stop.wait(1)
            for message in messages:
                self._pool.submit(self._deliver, message)
            for _ in range(free - len(messages)):
                self._slots.release()

    def _deliver(self, message: Any) -> None:
        try:
            event = cloud_event(message, queue=self.queue_name, source=self.source,
                                region=self.region, account_id=self.account_id,
                                base64_decode=self.base64_decode)
            inv = self.runtime.invoke(json.dumps(event).encode())
            if inv.ok:
                self.delivered += 1
                self._ack(message)
            else:
                log.warning("trigger %s: message %s failed (%s); it will be delivered again "
                            "after its visibility timeout", self.name, message.message_id,
                            (inv.error or {}).get("errorMessage"))
        except Exception:
            log.exception("trigger %s: delivering %s failed", self.name, message.message_id)
        finally:
            self._slots.release()

    def _ack(self, message: Any) -> None:
        from mns.mns_exception import MNSExceptionBase

        try:
            self._queue().delete_message(message.receipt_handle)
        except MNSExceptionBase as exc:
            # The handle expired (the function outlived the visibility timeout): the message
            # will come back, and the function's idempotent writes make that harmless.
            log.warning("trigger %s: could not delete %s: %s", self.name, message.message_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS + 5)
        self._pool.shutdown(wait=True, cancel_futures=False)
