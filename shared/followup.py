"""The follow-up message, and the invocation record it extends.

An ``InvocationRecord`` is what the deployment knows of one invocation it made: where its
results go, who asked (request id, source), whom to notify, which instances it runs on. A
``FollowUp`` is that record plus the collector's progress (attempt, retries, periodic runs
stored), sent through the follow-up queue: small JSON, safe to deliver twice (the collector's
writes are idempotent). Each time instances are still running, the collector sends a new
follow-up with only those instances in ``pending``, ``attempt`` + 1, and a longer delay.

```json
{"version": 1, "invoke_id": "t-…", "command_id": "c-…", "region": "cn-hangzhou",
 "pending": ["i-…"], "attempt": 1, "deadline": 1764130000.0, "bucket": "…",
 "prefix": "results", "request_id": "r-…", "adhoc": true, "source": "http",
 "submitted_at": 1764129900.0}
```

The record is stored (``shared.record``) as the invocation's first follow-up, in this same
format, so one parser reads both.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from shared.errors import AssistflowError

VERSION = 1
FIRST_DELAY = 1  # seconds before the first look; most commands finish in well under that
MAX_DELAY = 30
# With Cloud Assistant's TaskCompleted events subscribed, results arrive by event and the
# follow-ups only watch for lost events: a slower schedule.
WATCHDOG_FIRST_DELAY = 60
WATCHDOG_MAX_DELAY = 600
COMMAND_EXCERPT = 1024  # characters of the script a record carries for the report
DEADLINE_MARGIN = 120  # seconds past the command's Timeout before the collector gives up


class FollowUpInvalidError(AssistflowError):
    code = "InvalidFollowUp"
    status = 400


@dataclass(frozen=True)
class InvocationRecord:
    """One invocation the deployment made, as the collector needs to store its results."""

    invoke_id: str
    command_id: str
    region: str
    pending: tuple[str, ...]  # instances not stored yet; in the record, all of the batch's
    deadline: float  # when the collector stops waiting (Timeout + DEADLINE_MARGIN)
    bucket: str
    prefix: str
    request_id: str  # the logical request's r-… id
    # the command was created for this request (CreateCommand) and is deleted once its
    # invocations are finished; false for saved commands and RunCommand's, which delete
    # themselves (the name is kept: follow-ups in flight carry it)
    adhoc: bool
    source: str
    submitted_at: float
    version: int = VERSION
    periodic: bool = False  # RepeatMode other than Once: runs keep coming until stopped
    notify: dict[str, str] | None = None  # {"Url"|"Queue"|"Topic": target} on completion
    skipped: tuple[tuple[str, str], ...] = ()  # (instance id, reason) left out by pre-flight
    skipped_count: int = 0  # all skipped, even if the list was cut to fit a message
    watchdog: bool = False  # completion events do the storing; looks are a safety net
    batches: int = 1  # InvokeCommand calls made for the request (one follow-up stream each)
    # the batch's open marker (shared.ledger), removed with the summary; "" in follow-ups from
    # before request records
    marker: str = ""
    # what report.html shows of the command (shared.reporting): its Name and Type, and the
    # beginning of the script (COMMAND_EXCERPT characters; "" for a saved command) — carried
    # here so the collector needs no DescribeInvocations call for them
    command_name: str = ""
    command_type: str = ""
    command_excerpt: str = ""
    # every invocation of this command is collected by follow-ups: it was created for one
    # request whose batches are all too large for events (``shared.handoff.for_batch``), so
    # its TaskCompleted events need no record read (``shared.record.followed_command``)
    events_unused: bool = False


@dataclass(frozen=True)
class FollowUp(InvocationRecord):
    """An invocation record plus the collector's progress on it."""

    attempt: int = 1  # the look this follow-up asks for
    runs: tuple[tuple[str, int], ...] = ()  # periodic: last run stored per instance
    retries: int = 0  # consecutive looks that failed on a transient cloud error

    def to_json(self) -> str:
        data = asdict(self)
        data["pending"] = list(self.pending)
        data["skipped"] = [list(pair) for pair in self.skipped]
        data["runs"] = [list(pair) for pair in self.runs]
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> FollowUp:
        try:
            data: Any = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FollowUpInvalidError(f"follow-up is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise FollowUpInvalidError(f"follow-up version must be {VERSION}")
        try:
            data["pending"] = tuple(data["pending"])
            data["skipped"] = tuple((str(i), str(r)) for i, r in data.get("skipped", ()))
            data["runs"] = tuple((str(i), int(n)) for i, n in data.get("runs", ()))
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise FollowUpInvalidError(f"follow-up is missing or has unknown fields: {exc}") from None

    def next(self, pending: tuple[str, ...]) -> FollowUp:
        return replace(self, pending=pending, attempt=self.attempt + 1, retries=0)

    def retry(self) -> FollowUp:
        """The same look again, after a transient error."""
        return replace(self, retries=self.retries + 1)


def first_delay(watchdog: bool) -> int:
    return WATCHDOG_FIRST_DELAY if watchdog else FIRST_DELAY


def delay_for(attempt: int, rng: random.Random | None = None, watchdog: bool = False) -> int:
    """Seconds to wait before look number ``attempt + 1``: 1, 2, 4 … capped, ±20 % jitter
    (as a watchdog: 60, 120, 240 … capped at 600).

    Jitter keeps thousands of follow-ups of one fan-out from arriving in the same second.
    """
    first, cap = ((WATCHDOG_FIRST_DELAY, WATCHDOG_MAX_DELAY) if watchdog
                  else (FIRST_DELAY, MAX_DELAY))
    base = min(cap, first * 2 ** max(0, attempt - 1))
    jitter = (rng or random).uniform(0.8, 1.2)
    return max(1, min(cap, round(base * jitter)))
