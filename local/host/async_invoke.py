"""Asynchronous invocations: accepted at once, run in the background, retried on failure.

FC runs an async invocation (``x-fc-invocation-type: Async`` on the invoke API or an HTTP
trigger, every timer trigger, and an EventBridge trigger that invokes asynchronously) after
accepting it. When the function fails — an unhandled error or a timeout — FC retries it, 3 times
by default, keeping the request id ("Configure a retry mechanism", FC 3.0 user guide,
https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/error-handling-1-2);
the host does the same, with a doubling pause between attempts. A failure of the platform
itself (the host stopping) is not retried. ``submit(..., delay=s)`` starts it ``s`` seconds
later (the profile's EventBridge delivery time, ``local.host.delay_line``). FC "persists
the request in an internal queue" and processes it in the background ("Asynchronous
invocation", https://www.alibabacloud.com/help/en/functioncompute/fc/asynchronous-invocation);
here each function has its own queue, run as its instances free up, so a flood of one
function's events never makes another function's invocation wait behind it.

A function's ``AsyncInvokeConfig`` (``AsyncPolicy``) sets its retries
(``MaxAsyncRetryAttempts``), how old an event may grow before it is no longer tried
(``MaxAsyncEventAgeInSeconds``) and where an invocation that failed for good is reported:
``OnFailure`` with an MNS queue receives FC's invocation record (``destination_record``); with
no destination the event is dropped, as on FC ("Destinations for asynchronous invocations",
https://help.aliyun.com/zh/functioncompute/user-guide/result-callback).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from local.host.delay_line import DelayLine
from local.host.runtime import FunctionRuntime, Invocation

log = logging.getLogger("assistflow.host.async")

DEFAULT_RETRIES = 3  # FC's default MaxAsyncRetryAttempts
DEFAULT_MAX_AGE = 86400  # FC's default MaxAsyncEventAgeInSeconds (one day)
NOT_RETRIED = {"HostStopped"}

# (queue name, message body): how a destination record reaches an MNS queue
Sender = Callable[[str, bytes], None]


class DestinationError(RuntimeError):
    """An invocation's record could not be sent to its destination queue."""


@dataclass(frozen=True)
class AsyncPolicy:
    """One function's asynchronous configuration, as its ``AsyncInvokeConfig`` declares it."""

    retries: int = DEFAULT_RETRIES
    max_age: float = DEFAULT_MAX_AGE
    on_failure: str | None = None  # MNS queue name
    on_success: str | None = None


def destination_record(runtime: FunctionRuntime, event: bytes, inv: Invocation, attempts: int,
                       condition: str, region: str, account_id: str) -> bytes:
    """What FC sends a destination about one asynchronous invocation, in the shape of the
    example in FC 3.0's "Destinations for asynchronous invocations"
    (https://help.aliyun.com/zh/functioncompute/user-guide/result-callback): ``condition`` is the
    invocation's error code, ``approximateInvokeCount`` its attempts, ``requestPayload`` the
    event as it was given, ``functionError`` the error's type and ``responsePayload`` what the
    function answered (its error, for a failure)."""
    name = runtime.spec.name
    error = inv.error or {}
    record = {
        "timestamp": int(time.time() * 1000),
        "requestContext": {
            "requestId": inv.request_id,
            "functionArn": f"acs:fc:{region}:{account_id}:functions/{name}",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event.decode("utf-8", "replace"),
        "responseContext": {"statusCode": 200, "functionError": error.get("errorType", "")},
        "responsePayload": json.dumps(error) if error else json.dumps(inv.result),
    }
    return json.dumps(record, ensure_ascii=False).encode()


@dataclass(frozen=True)
class _Accepted:
    """An accepted asynchronous invocation, waiting for its function (``attempt``: how many
    of its attempts failed before)."""

    runtime: FunctionRuntime
    event: bytes
    request_id: str
    on_done: Callable[[Invocation], None] | None
    accepted: float
    attempt: int = 0


class AsyncInvoker:
    """Runs invocations on a bounded pool; ``stop()`` cancels what has not started.

    ``submit`` queues an invocation behind its function's others; as many run at once as the
    function has instances (``FunctionRuntime.max_instances``), each a thread of the pool
    that takes the function's next one when its last ended. A failed attempt to be retried
    waits its pause in the delay line, then at the end of its function's queue. ``run`` (a
    queue trigger's delivery) runs one invocation and its retries in the calling thread.

    ``policies`` maps a function name to its ``AsyncPolicy`` (others get ``retries`` and no
    destination); ``send`` delivers a destination record to an MNS queue. ``workers``: the
    pool's threads, made as they are needed; a function's queue holds one while it has work,
    so there are enough for every function's instances (a template's few functions, 4 each).
    """

    def __init__(self, retries: int = DEFAULT_RETRIES, retry_delay: float = 1.0,
                 workers: int = 64, label: str = "", *,
                 policies: dict[str, AsyncPolicy] | None = None, send: Sender | None = None,
                 region: str = "", account_id: str = "") -> None:
        self.retries = retries
        self.retry_delay = retry_delay
        self.policies = dict(policies or {})
        self._send = send
        self._region, self._account_id = region, account_id
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{label}fc-async")
        self._lock = threading.Lock()
        self._later = DelayLine(f"{label}fc-async-delay")
        self.accepted = 0
        # Each function's accepted invocations, and how many of its instances take them: no
        # more than it has, so no pool thread waits for one of its instances (each wake-up a
        # contended hand-over, ~0.1 ms per invocation with 16 threads and 4 instances).
        self._queues: dict[str, deque[_Accepted]] = {}
        self._draining: dict[str, int] = {}
        self._workers = workers

    def policy(self, function: str) -> AsyncPolicy:
        return self.policies.get(function) or AsyncPolicy(retries=self.retries)

    def submit(self, runtime: FunctionRuntime, event: bytes, request_id: str | None = None,
               on_done: Callable[[Invocation], None] | None = None, delay: float = 0.0) -> str:
        """Queue one invocation (starting ``delay`` s from now); its request id, at once."""
        request_id = request_id or f"1-{uuid.uuid4()}"
        item = _Accepted(runtime, event, request_id, on_done, time.monotonic())
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("the function host is stopping")
            self.accepted += 1
            if delay > 0:
                self._later.call_later(delay, lambda: self._enqueue(item))
            else:
                self._enqueue_locked(item)
        return request_id

    def _enqueue(self, item: _Accepted) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._enqueue_locked(item)

    def _enqueue_locked(self, item: _Accepted) -> None:
        """Queue ``item`` behind its function's others; start a drainer of that queue while
        fewer run than the function has instances."""
        name = item.runtime.spec.name
        self._queues.setdefault(name, deque()).append(item)
        running = self._draining.get(name, 0)
        limit = min(self._workers, item.runtime.max_instances)
        if running < limit:
            self._draining[name] = running + 1
            self._pool.submit(self._drain, name)

    def _drain(self, name: str) -> None:
        """Run the function's queued invocations, one at a time, until its queue is empty."""
        while True:
            with self._lock:
                queue = self._queues.get(name)
                if not queue or self._stop.is_set():
                    self._draining[name] -= 1
                    return
                item = queue.popleft()
            try:
                self._attempt(item)
            except Exception:  # a bug here must not cost the function one of its lanes
                log.exception("%s %s: asynchronous invocation broke", name, item.request_id)

    def _attempt(self, item: _Accepted) -> None:
        """One attempt of a queued invocation. A failure to be retried comes back to the end
        of its function's queue once its pause is over (it holds no thread meanwhile, as FC
        holds no instance for it); the last attempt's outcome goes to its destination and to
        ``on_done``."""
        policy = self.policy(item.runtime.spec.name)
        inv = item.runtime.invoke(item.event, item.request_id)
        delay = self._retry_delay(inv, item.attempt, policy, item.accepted)
        if delay is not None:
            with self._lock:
                if not self._stop.is_set():
                    again = replace(item, attempt=item.attempt + 1)
                    self._later.call_later(delay, lambda: self._enqueue(again))
            return
        try:
            self._settle(item.runtime, item.event, inv, item.attempt, policy)
        except DestinationError as exc:
            log.error("%s", exc)  # nothing holds the event any more: it is lost, and said so
            return
        if item.on_done is not None:
            try:
                item.on_done(inv)
            except Exception:  # a broken observer must not take the pool thread down
                log.exception("async completion callback failed")

    def _retry_delay(self, inv: Invocation, attempt: int, policy: AsyncPolicy,
                     accepted: float) -> float | None:
        """The pause before retrying attempt number ``attempt`` (from 0) that ended as
        ``inv`` (logged); None when it is not retried (it succeeded, the platform stopped, the
        retries are spent, or the event would be too old)."""
        error_type = (inv.error or {}).get("errorType")
        if inv.ok or error_type in NOT_RETRIED or attempt >= policy.retries:
            return None
        # FC documents no interval for retrying a function error (only throttling's: from
        # 0.5 s, doubling); the host doubles from ``retry_delay``.
        delay = self.retry_delay * 2 ** attempt
        if time.monotonic() + delay - accepted > policy.max_age:
            return None  # too old to be tried again (MaxAsyncEventAgeInSeconds)
        log.info("%s %s failed (%s); async retry %d of %d in %.1f s", inv.function,
                 inv.request_id, error_type, attempt + 1, policy.retries, delay)
        return delay

    def run(self, runtime: FunctionRuntime, event: bytes, request_id: str | None = None, *,
            accepted: float | None = None,
            before_retry: Callable[[float], None] | None = None) -> Invocation:
        """Run one accepted asynchronous invocation to its end in the calling thread: the first
        attempt, the policy's retries, then its destination. ``before_retry(pause)`` is told
        of each pause before a retry. The last attempt's outcome is returned;
        ``DestinationError`` when it failed for good and its record could not be sent."""
        request_id = request_id or f"1-{uuid.uuid4()}"
        accepted = time.monotonic() if accepted is None else accepted
        policy = self.policy(runtime.spec.name)
        attempt = 0
        while True:
            inv = runtime.invoke(event, request_id)
            delay = self._retry_delay(inv, attempt, policy, accepted)
            if delay is None:
                break
            attempt += 1
            if before_retry is not None:
                before_retry(delay)
            if self._stop.wait(delay):
                return inv  # the host is stopping: not the event's fault, not reported
        self._settle(runtime, event, inv, attempt, policy)
        return inv

    def _settle(self, runtime: FunctionRuntime, event: bytes, inv: Invocation, attempt: int,
                policy: AsyncPolicy) -> None:
        """The last attempt (number ``attempt``, from 0) ended as ``inv``: its destination."""
        error_type = (inv.error or {}).get("errorType")
        if inv.ok:
            if policy.on_success:
                self._report(policy.on_success, runtime, event, inv, attempt + 1, "")
        elif error_type not in NOT_RETRIED:
            log.warning("%s %s: async invocation failed after %d attempt(s): %s",
                        runtime.spec.name, inv.request_id, attempt + 1,
                        (inv.error or {}).get("errorMessage"))
            if policy.on_failure:
                self._report(policy.on_failure, runtime, event, inv, attempt + 1,
                             "UnhandledInvocationError")
            else:
                log.warning("%s %s: no OnFailure destination, so the event is dropped",
                            runtime.spec.name, inv.request_id)

    def _report(self, queue: str, runtime: FunctionRuntime, event: bytes, inv: Invocation,
                attempts: int, condition: str) -> None:
        if self._send is None:
            raise DestinationError(f"{runtime.spec.name} {inv.request_id}: destination {queue} "
                                   "cannot be reached (the host has no MNS access)")
        body = destination_record(runtime, event, inv, attempts, condition, self._region,
                                  self._account_id)
        try:
            self._send(queue, body)
        except Exception as exc:
            raise DestinationError(f"{runtime.spec.name} {inv.request_id}: could not send the "
                                   f"invocation record to {queue}: {exc}") from exc
        log.warning("%s %s: invocation record sent to destination queue %s", runtime.spec.name,
                    inv.request_id, queue)

    def begin_stop(self) -> None:
        """Accept nothing more and end retry pauses; running invocations end with the runtimes."""
        with self._lock:
            self._stop.set()
        self._later.stop()  # deliveries not due yet are dropped, like queued ones

    def stop(self) -> None:
        self.begin_stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
