"""Fault injection: "the next N calls of action X answer code C / status S after delay D".

The table every emulator consults once per API call (``EmulatorApp.inject_fault``, the first
of its per-call hooks) and fills through the control API (``/_emulator/faults``) or, in
tests, directly (``app.faults.add(FaultRule(...))``).
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FaultRule:
    """"The next ``count`` calls of ``action`` answer ``code`` / ``status`` after ``delay`` s.

    ``action`` is the service's operation name (``InvokeCommand``, ``SendMessage``,
    ``PutObject``) or ``*`` for every operation. ``code`` empty with a ``delay`` only slows
    the call down; ``probability`` below 1 makes the rule fire on a random fraction of calls
    (``count`` then counts only the calls it fired on; ``count`` 0 means unlimited).
    """

    action: str = "*"
    count: int = 1
    code: str = ""
    status: int = 500
    message: str = ""
    delay: float = 0.0
    probability: float = 1.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}; known: {sorted(known)}")
        rule = cls(**data)
        if rule.count < 0 or not 0 < rule.probability <= 1 or rule.delay < 0:
            raise ValueError("count must be >= 0, probability in (0, 1], delay >= 0")
        return rule


@dataclass
class Faults:
    """Thread-safe fault table, consulted once per API call by ``EmulatorApp.intercept``."""

    rules: list[FaultRule] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)  # action -> faults injected so far
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random | None = field(default=None, repr=False)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, action: str) -> FaultRule | None:
        """The rule that applies to this call of ``action``, consuming one of its uses."""
        rng = self._rng or random
        with self._lock:
            for rule in self.rules:
                if rule.action not in ("*", action):
                    continue
                if rule.probability < 1 and rng.random() >= rule.probability:
                    continue
                if rule.count:
                    rule.count -= 1
                    if rule.count == 0:
                        self.rules.remove(rule)
                self.fired[action] = self.fired.get(action, 0) + 1
                return rule
        return None

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self.rules]
