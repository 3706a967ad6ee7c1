"""Reliability suite: counts of what was thrown at the system, printed at the end of the run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

COUNTS: Counter[str] = Counter()


@pytest.fixture
def tally() -> Counter[str]:
    """Add to the reliability counts (bodies fuzzed, faults injected, kills, restarts, …)."""
    return COUNTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS:
        terminalreporter.section("reliability")
        for name, value in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{name}: {value}")
