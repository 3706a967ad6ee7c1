"""Short, bounded retries of transient cloud errors inside one invocation.

Throttling, 5xx and network errors usually clear within a second; a few quick retries spare a
whole redelivery cycle (a visibility timeout, and a step towards the dead-letter queue). The
waits are short and bounded — at most about 0.7 s per call — because this is backoff on a
failing call, not waiting for instances: waiting for instances is what delayed follow-ups are
for, and nothing here ever sleeps for that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import CloudCallError

T = TypeVar("T")

ATTEMPTS = 3
BASE_DELAY = 0.1  # seconds; doubled per attempt, jittered ±50 %


def retrying(operation: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """``operation()``, tried again on a transient ``CloudCallError`` (the last one is raised)."""
    for attempt in range(attempts):
        try:
            return operation()
        except CloudCallError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            # Backoff on a failing call, bounded (see module docstring).
            time.sleep(BASE_DELAY * 2 ** attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")  # pragma: no cover
