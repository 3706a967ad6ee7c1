"""Retries of transient cloud errors inside one invocation: bounded, jittered and few.

Waiting is billed. Nothing in ``shared`` waits for *work* (instances finishing are watched by
delayed follow-up messages); what remains is backoff between attempts of a call that failed
with throttling, a 5xx or a network error. Each invocation has a small budget of it
(``Patience``: seconds in total, however many calls it makes, concurrently or not):

* the collector can re-queue its follow-up with a delay, so it never waits on throttling — a
  rate limit is not outwaited in a fraction of a second — and gives a blip (a 5xx, a dropped
  connection) only ``COLLECT_PATIENCE``: a look writes two objects per instance, and one failed
  PUT among twenty should not cost the whole look;
* a submit must answer its webhook now, so it may also back off on throttling, within
  ``SUBMIT_PATIENCE``; past that, the error is answered (503 with ``Retry-After``) and the
  sender, the queue or the timer retries with the same idempotency key.

Backoff is exponential with full jitter (``random.uniform(0, base * 2**attempt)``) so that
calls throttled together do not come back together; throttling starts from a longer base, as
aliyunsdkcore's own throttling backoff does (500 ms doubling,
aliyun-python-sdk-core 2.16.1 ``aliyunsdkcore/retry/backoff_strategy.py``). The SDK's own
retries are switched off (``shared.clients.cloud_assistant``) so that this module is the only
place that waits.

The wait itself is ``threading.Event.wait`` on the invocation's ``Patience``, not a plain
sleep, because it must end early: when a sibling call of the same pool fails for good
(``shared.parallel``), the request is lost anyway and its other calls stop retrying at once.
It is still billed time, and it is bounded by the budget.

ECS throttles per API, per region and per account, per minute: a call throttled in minute T is
refused until minute T+1 (https://www.alibabacloud.com/help/doc-detail/437902.htm). Short
in-process retries cannot outwait that, so a throttled call that exhausts the budget is
retried later instead: ``retry_after`` is the time to the next minute plus jitter.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from shared.errors import CloudCallError

T = TypeVar("T")

ATTEMPTS = 3
BASE_DELAY = 0.1  # seconds, doubled per attempt, full jitter
THROTTLE_BASE_DELAY = 0.5
DEFAULT_PATIENCE = 2.0  # seconds of backoff per call outside a function (the CLI, tests)
SUBMIT_PATIENCE = 1.0  # seconds of backoff per submit invocation, all calls together
COLLECT_PATIENCE = 0.5  # per collector invocation, for blips only: throttling re-queues
MINUTE_JITTER = (1.0, 10.0)  # seconds added past the next minute, spread over throttled callers


class Patience:
    """How much of one invocation's time its calls may spend backing off, all together.

    Counted in wall-clock time during which at least one call is waiting: calls that back off
    side by side (``shared.parallel``) cost the invocation that time once, not once each.
    ``throttling``: whether a throttled call may wait too (else it fails at once, for the
    caller to re-queue). ``child()`` shares the budget but can be stopped on its own (one
    pool of calls); ``stop()`` makes every wait of this one (and its children) give up at once.
    """

    def __init__(self, budget: float, parent: Patience | None = None,
                 throttling: bool = True) -> None:
        self._parent = parent
        self._budget = budget
        self.throttling: bool = parent.throttling if parent is not None else throttling
        self._spent = 0.0
        self._waiting = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def child(self) -> Patience:
        return Patience(0.0, parent=self)

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set() or (self._parent is not None and self._parent.stopped)

    @property
    def left(self) -> float:
        if self._parent is not None:
            return self._parent.left
        with self._lock:
            return max(0.0, self._budget - self._used())

    def _used(self) -> float:
        ongoing = time.monotonic() - self._since if self._waiting else 0.0
        return self._spent + ongoing

    def _enter(self, seconds: float) -> float:
        if self._parent is not None:
            return self._parent._enter(seconds)
        with self._lock:
            grant = max(0.0, min(seconds, self._budget - self._used()))
            if grant > 0:
                if not self._waiting:
                    self._since = time.monotonic()
                self._waiting += 1
            return grant

    def _leave(self) -> None:
        if self._parent is not None:
            self._parent._leave()
            return
        with self._lock:
            self._waiting -= 1
            if not self._waiting:
                self._spent += time.monotonic() - self._since

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` of the budget; False (at once) if it is spent or stopped."""
        if self.stopped:
            return False
        grant = self._enter(seconds)
        if grant <= 0:
            return False
        try:
            # Billed backoff, bounded by the budget; ends early when stopped (module docstring).
            return not self._stopped.wait(grant) and not self.stopped
        finally:
            self._leave()


_current: contextvars.ContextVar[Patience | None] = contextvars.ContextVar(
    "assistflow_patience", default=None)


def current() -> Patience:
    """The running invocation's patience (a fresh default one outside any ``patience`` block)."""
    found = _current.get()
    return found if found is not None else Patience(DEFAULT_PATIENCE)


@contextmanager
def patience(budget: float | Patience, throttling: bool = True) -> Iterator[Patience]:
    """Run the block with ``budget`` seconds of backoff (or that ``Patience``) for its calls;
    ``throttling`` False: a throttled call is not waited on (see ``Patience``)."""
    value = budget if isinstance(budget, Patience) else Patience(budget, throttling=throttling)
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)


def backoff(attempt: int, throttled: bool, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: exponential, full jitter."""
    base = THROTTLE_BASE_DELAY if throttled else BASE_DELAY
    return (rng or random).uniform(0, base * 2 ** attempt)


def retrying(operation: Callable[[], T], attempts: int = ATTEMPTS,
             failed: CloudCallError | None = None) -> T:
    """``operation()``, tried again on a transient ``CloudCallError`` while attempts and the
    invocation's patience last (the last error is raised). ``failed``: the error of a first
    attempt made elsewhere; it counts as one of ``attempts``."""
    for attempt in range(attempts):
        try:
            if failed is not None and attempt == 0:
                raise failed
            return operation()
        except CloudCallError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            budget = current()
            if exc.throttled and not budget.throttling:
                raise
            if not budget.wait(backoff(attempt, exc.throttled)):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def retry_after(error: CloudCallError, now: float | None = None,
                rng: random.Random | None = None) -> int:
    """Whole seconds after which trying ``error``'s call again may work: past the next minute
    for throttling (ECS counts per minute), a second for other transient errors."""
    if not error.throttled:
        return 1
    now = time.time() if now is None else now
    return int(60 - now % 60 + (rng or random).uniform(*MINUTE_JITTER)) + 1
