"""Asynchronous invocations: accepted at once, run in the background, retried on failure.

FC runs an async invocation (``x-fc-invocation-type: Async`` on the invoke API or an HTTP
trigger, and every timer trigger) after answering 202. When the function fails — an unhandled
error or a timeout — FC retries it, 3 times by default, keeping the request id ("Configure a
retry mechanism", FC 3.0 user guide,
https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/error-handling-1-2);
the host does the same, with a doubling pause between attempts. A failure of the platform
itself (the host stopping) is not retried. ``submit(..., delay=s)`` starts it ``s`` seconds
later (the profile's EventBridge delivery time, ``local.host.delay_line``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from local.host.delay_line import DelayLine
from local.host.runtime import FunctionRuntime, Invocation

log = logging.getLogger("assistflow.host.async")

DEFAULT_RETRIES = 3  # FC's default MaxAsyncRetryAttempts
NOT_RETRIED = {"HostStopped"}


class AsyncInvoker:
    """Runs invocations on a bounded pool; ``stop()`` cancels what has not started."""

    def __init__(self, retries: int = DEFAULT_RETRIES, retry_delay: float = 1.0,
                 workers: int = 16, label: str = "") -> None:
        self.retries = retries
        self.retry_delay = retry_delay
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{label}fc-async")
        self._lock = threading.Lock()
        self._later = DelayLine(f"{label}fc-async-delay")
        self.accepted = 0

    def submit(self, runtime: FunctionRuntime, event: bytes, request_id: str | None = None,
               on_done: Callable[[Invocation], None] | None = None, delay: float = 0.0) -> str:
        """Queue one invocation (starting ``delay`` s from now); its request id, at once."""
        request_id = request_id or f"1-{uuid.uuid4()}"
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("the function host is stopping")
            self.accepted += 1
            if delay > 0:
                self._later.call_later(delay, lambda: self._start(runtime, event, request_id,
                                                                  on_done))
            else:
                self._pool.submit(self._run, runtime, event, request_id, on_done)
        return request_id

    def _start(self, runtime: FunctionRuntime, event: bytes, request_id: str,
               on_done: Callable[[Invocation], None] | None) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._pool.submit(self._run, runtime, event, request_id, on_done)

    def _run(self, runtime: FunctionRuntime, event: bytes, request_id: str,
             on_done: Callable[[Invocation], None] | None) -> None:
        attempt = 0
        while True:
            inv = runtime.invoke(event, request_id)
            error_type = (inv.error or {}).get("errorType")
            if inv.ok or error_type in NOT_RETRIED or attempt >= self.retries:
                break
            delay = self.retry_delay * 2 ** attempt
            attempt += 1
            log.info("%s %s failed (%s); async retry %d of %d in %.1f s", runtime.spec.name,
                     request_id, error_type, attempt, self.retries, delay)
            if self._stop.wait(delay):
                break
        if not inv.ok and error_type not in NOT_RETRIED:
            log.warning("%s %s: async invocation failed after %d attempt(s): %s",
                        runtime.spec.name, request_id, attempt + 1,
                        (inv.error or {}).get("errorMessage"))
        if on_done is not None:
            try:
                on_done(inv)
            except Exception:  # a broken observer must not take the pool thread down
                log.exception("async completion callback failed")

    def begin_stop(self) -> None:
        """Accept nothing more and end retry pauses; running invocations end with the runtimes."""
        with self._lock:
            self._stop.set()
        self._later.stop()  # deliveries not due yet are dropped, like queued ones

    def stop(self) -> None:
        self.begin_stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
