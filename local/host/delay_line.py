"""Run callables later, each at its own time, from one thread: EventBridge's delivery delay.

Under the ``realistic`` profile an event reaches its function a few hundred milliseconds after
it was published (``local.profile``, ``eventbridge.delivery``). Thousands of events may be in
flight at once (one TaskCompleted per instance), so they wait in a heap, not in a thread
each: one thread sleeps until the next is due and hands it on (to the async invoker's pool).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("assistflow.host.delay")


class DelayLine:
    """``call_later(seconds, fn)``; ``stop()`` drops what is not due yet and ends the thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def call_later(self, seconds: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the delay line is stopping")
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._order), fn))
            if self._thread is None:  # started on first use: the fast profile never needs it
                self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # one failed hand-over must not stop the others
                log.exception("%s: a delayed call failed", self.name)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            dropped = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if dropped:
            log.info("%s: dropped %d delayed call(s): the host is stopping", self.name, dropped)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
