"""Rate control: how many instances run at once, and how many may fail before no more start.

Pure: no cloud calls. A request's ``RateControl`` is ``{"MaxConcurrency": N | "N%",
"MaxErrors": N | "N%"}`` with the semantics of AWS Systems Manager's SendCommand
(https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html):

* ``MaxConcurrency`` — the most instances that run the command at the same time. assistflow
  runs **waves** of at most that many instances: wave k+1 starts only once every instance of
  wave k is collected (event-driven: by the collector that stores the wave's last summary).
  A wave of more than 100 instances is several InvokeCommand batches.
* ``MaxErrors`` — the errors allowed: "When the command fails one more time beyond the value
  of MaxErrors, the systems stops sending the command to additional targets" (SendCommand's
  MaxErrors; the Automation reference's example: 10 % of 50 targets stops on the sixth
  error). Instances already running finish. ``0`` stops after the first error. Without
  ``MaxErrors`` every wave starts whatever fails (SSM's default is 0 for SendCommand; here
  the default keeps a request without it running to the end, as a request without
  ``RateControl`` does).
* A percentage is of the request's target count (after pre-flight left out the ineligible
  ones). SSM does not state how a fraction is rounded; assistflow rounds **down**, as AWS
  documents for its other percentage of targets (CloudFormation StackSets'
  ``MaxConcurrentPercentage``: "rounds down to the next whole number ... except in cases where
  rounding down would result is zero", https://docs.aws.amazon.com/AWSCloudFormation/latest/
  APIReference/API_StackSetOperationPreferences.html) — so concurrency is at least 1, and an
  error budget of 10 % of 15 targets is 1.

What counts as an error: ``Failed``, ``Timeout``, ``Error``, ``Invalid``, ``Aborted`` (Cloud
Assistant's failed statuses) and our ``CollectorTimeout``. Not errors: ``Success``,
``Cancelled`` / ``Terminated`` (stopped by someone, as Cloud Assistant's own aggregation
treats them), ``Skipped`` (never ran: pre-flight left it out) and ``NotStarted`` (never ran:
the error budget was spent).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ERROR_STATUSES = frozenset({"Failed", "Timeout", "Error", "Invalid", "Aborted",
                            "CollectorTimeout"})
NOT_STARTED = "NotStarted"  # our status: never started (MaxErrors exceeded)
MAX_ERRORS_EXCEEDED = "MaxErrorsExceeded"
_PERCENT = re.compile(r"^([0-9]{1,3})%$")


@dataclass(frozen=True)
class RateControl:
    """The request's ``RateControl`` as sent: an int, a "N%" string, or None (not given)."""

    max_concurrency: int | str | None = None
    max_errors: int | str | None = None

    def concurrency(self, targets: int) -> int:
        """Instances per wave for ``targets`` instances (all of them without a limit)."""
        if self.max_concurrency is None:
            return max(targets, 1)
        return max(1, resolve(self.max_concurrency, targets))

    def error_budget(self, targets: int) -> int | None:
        """Errors allowed (None: no limit)."""
        return None if self.max_errors is None else resolve(self.max_errors, targets)

    def to_json(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {}
        if self.max_concurrency is not None:
            out["MaxConcurrency"] = self.max_concurrency
        if self.max_errors is not None:
            out["MaxErrors"] = self.max_errors
        return out


def resolve(value: int | str, targets: int) -> int:
    """``value`` (N or "N%") as a number of instances out of ``targets``, rounded down."""
    if isinstance(value, int):
        return value
    match = _PERCENT.match(value)
    if match is None:
        return int(value)
    return math.floor(targets * int(match.group(1)) / 100)


def waves(instance_ids: tuple[str, ...], per_wave: int) -> list[tuple[str, ...]]:
    """The instances in waves of at most ``per_wave``, in request order."""
    size = max(1, per_wave)
    return [instance_ids[i:i + size] for i in range(0, len(instance_ids), size)]


def exceeded(errors: int, budget: int | None) -> bool:
    """SSM: the command stops being sent once errors exceed MaxErrors (the MaxErrors+1-th)."""
    return budget is not None and errors > budget


def is_error(status: str) -> bool:
    return status in ERROR_STATUSES
