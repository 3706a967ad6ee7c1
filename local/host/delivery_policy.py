"""What an MNS-queue trigger does when its function fails: EventBridge's retry and fault tolerance.

On Alibaba Cloud an FC 3.0 queue trigger is an EventBridge event stream (MNS source, FC sink),
configured by the trigger's ``TriggerConfig.runOptions`` — FC 3.0's ``RunOptions``
(``alibabacloud-fc20230330``; https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/developer-reference/api-fc-2023-03-30-struct-runoptions)::

    runOptions:
      retryStrategy:
        PushRetryStrategy: BACKOFF_RETRY     # (default) | EXPONENTIAL_DECAY_RETRY
        MaximumRetryAttempts: 2              # optional, see below
      errorsTolerance: ALL                   # NONE (default) | ALL
      deadLetterQueue:
        Arn: acs:mns:<region>:<account>:/queues/<name>   # e.g. Fn::GetAtt [Dlq, ARN.WithSlash]

EventBridge "Retry policies and dead-letter queues"
(https://www.alibabacloud.com/help/en/eventbridge/user-guide/retry-and-dead-letter) defines
what they mean, and this module follows it:

* **retry policy** — ``BACKOFF_RETRY``: up to 3 retries, each after a random 10–20 s;
  ``EXPONENTIAL_DECAY_RETRY``: up to 176 retries over about a day, after 1, 2, 4, … 256 s and
  then 512 s for the remaining 167. ``MaximumRetryAttempts`` (EventBridge's own
  ``RetryStrategy`` field, and FC 2.0's) overrides the count; the FC 3.0 SDK model drops it, so
  a template checked against that model should not use it.
* **fault tolerance** once the retries are used up — ``errorsTolerance: ALL`` ("fault tolerance
  allowed"): the event goes to the dead-letter queue if one is configured, else it is
  discarded, and the stream goes on; ``NONE`` ("prohibited", the default — RunOptions: "The
  default value is NONE"): **the stream is blocked** and its task's status becomes Ready — no
  further event of that source reaches the function. A dead-letter queue does not change
  that: it is used only when errors are tolerated.

How the host keeps to it. A message stays in its MNS queue until the function succeeded (or it
is dead-lettered / discarded). After a failed delivery with retries left, the trigger sets the
message's visibility (``ChangeMessageVisibility``) to the policy's next retry interval, so the
documented schedule is kept and — because MNS counts each receive in ``DequeueCount`` — the
attempt count survives host restarts and deliveries that never reported back. The emulator's
clock (``/_emulator/clock``) compresses the schedule for tests; the durations themselves are the
documented ones. Not documented, and chosen here: while one event waits for its retry, the
stream's other events keep flowing; a stream blocked under ``NONE`` stays blocked until the
trigger is started again (the host restarted — as restarting the event stream on the cloud),
which retries the blocking event once before blocking again.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal

RETRIES = {"BACKOFF_RETRY": 3, "EXPONENTIAL_DECAY_RETRY": 176}
BACKOFF_INTERVAL = (10, 20)  # seconds, random, between BACKOFF_RETRY attempts
DECAY_CEILING = 512  # seconds: EXPONENTIAL_DECAY_RETRY's longest interval
TOLERANCES = ("NONE", "ALL")
_MNS_QUEUE_ARN = re.compile(r"^acs:mns:[^:]*:[^:]*:/?queues/([^/]+)/?$")

Outcome = Literal["retry", "dead-letter", "discard", "block"]


@dataclass(frozen=True)
class DeliveryPolicy:
    """One trigger's ``runOptions``: how often a failing event is retried, and then what."""

    strategy: str = "BACKOFF_RETRY"
    retries: int = RETRIES["BACKOFF_RETRY"]
    tolerate_errors: bool = False  # errorsTolerance ALL
    dead_letter_queue: str | None = None

    @classmethod
    def from_run_options(cls, run_options: dict[str, Any] | None) -> DeliveryPolicy:
        """The policy ``runOptions`` describes; ``ValueError`` names a bad value."""
        options = run_options or {}
        retry = options.get("retryStrategy") or {}
        strategy = str(retry.get("PushRetryStrategy") or "BACKOFF_RETRY")
        if strategy not in RETRIES:
            raise ValueError(f"runOptions.retryStrategy.PushRetryStrategy {strategy!r} is not "
                             f"one of {sorted(RETRIES)}")
        retries = RETRIES[strategy]
        if retry.get("MaximumRetryAttempts") is not None:
            retries = int(retry["MaximumRetryAttempts"])
            if retries < 0:
                raise ValueError("runOptions.retryStrategy.MaximumRetryAttempts must be >= 0")
        tolerance = str(options.get("errorsTolerance") or "NONE").upper()
        if tolerance not in TOLERANCES:
            raise ValueError(f"runOptions.errorsTolerance {tolerance!r} is not NONE or ALL")
        dlq = None
        arn = (options.get("deadLetterQueue") or {}).get("Arn")
        if arn:
            match = _MNS_QUEUE_ARN.match(str(arn))
            if match is None:
                raise ValueError(f"runOptions.deadLetterQueue.Arn {arn!r}: only MNS queues "
                                 "(acs:mns:<region>:<account>:/queues/<name>) are emulated "
                                 "locally")
            dlq = match.group(1)
        return cls(strategy=strategy, retries=retries, tolerate_errors=tolerance == "ALL",
                   dead_letter_queue=dlq)

    @property
    def max_deliveries(self) -> int:
        """The first delivery plus every retry."""
        return 1 + self.retries

    def after_failure(self, delivery: int) -> Outcome:
        """What follows the failure of delivery number ``delivery`` (1 = the first)."""
        if delivery < self.max_deliveries:
            return "retry"
        return self.give_up()

    def give_up(self) -> Outcome:
        """The fault-tolerance outcome once the retries are used up."""
        if not self.tolerate_errors:
            return "block"
        return "dead-letter" if self.dead_letter_queue else "discard"

    def overdue(self, delivery: int) -> bool:
        """Received more often than allowed (earlier deliveries never reported back), with
        errors tolerated: it is given up on without another try. Under ``NONE`` it is tried
        once more instead — a restarted stream retries the event that blocked it."""
        return self.tolerate_errors and delivery > self.max_deliveries

    def retry_delay(self, retry: int, rng: random.Random | None = None) -> int:
        """Seconds before retry number ``retry`` (1 = the first retry)."""
        if self.strategy == "EXPONENTIAL_DECAY_RETRY":
            return int(min(2 ** max(retry - 1, 0), DECAY_CEILING))
        return (rng or random).randint(*BACKOFF_INTERVAL)
