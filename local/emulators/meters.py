"""What every emulator measures itself by: its clock (which tests move forward) and the API calls
it received (``/_emulator/calls``). Re-exported by ``local.emulators.base``."""

from __future__ import annotations

import threading
import time
from collections import Counter


class Clock:
    """Wall-clock time plus an offset that tests move forward instead of sleeping.

    Every model reads time only through its clock, so a visibility timeout, a message delay or
    a periodic invocation can be driven by ``advance`` (the control API's ``/_emulator/clock``).
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._listeners: list[threading.Condition] = []

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            listeners = list(self._listeners)
        for cond in listeners:  # wake waiters whose deadline may now have passed
            with cond:
                cond.notify_all()

    def subscribe(self, cond: threading.Condition) -> None:
        with self._lock:
            self._listeners.append(cond)


class CallCounter:
    """API calls received per action, for tests and benchmarks (``/_emulator/calls``)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._cpu: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, action: str) -> None:
        with self._lock:
            self._counts[action] += 1

    def add_cpu(self, action: str, seconds: float) -> None:
        with self._lock:
            self._cpu[action] = self._cpu.get(action, 0.0) + seconds

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def cpu_ms(self) -> dict[str, float]:
        with self._lock:
            return {action: round(s * 1000, 3) for action, s in self._cpu.items()}

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._cpu.clear()
