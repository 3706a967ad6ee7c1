"""What an MNS-queue trigger does with a message its function keeps failing on.

The pinned MNS SDK (1.3.0) has no queue dead-letter policy, and on Alibaba Cloud the queue
trigger's retries and dead-letter queue belong to the EventBridge event stream behind it, so
the host implements them from the trigger's own ``TriggerConfig.runOptions`` — the FC 3.0 API
shape (``alibabacloud-fc20230330`` ``RunOptions``/``RetryStrategy``/``DeadLetterQueue``)::

    runOptions:
      retryStrategy:
        PushRetryStrategy: BACKOFF_RETRY     # 3 retries (default) | EXPONENTIAL_DECAY_RETRY: 176
        MaximumRetryAttempts: 2              # optional, see below
      deadLetterQueue:
        Arn: acs:mns:<region>:<account>:/queues/<name>   # e.g. Fn::GetAtt [Dlq, ARN]
      errorsTolerance: ALL                   # NONE (default) | ALL

Retry counts follow EventBridge ("Retry policies and dead-letter queues",
https://www.alibabacloud.com/help/en/eventbridge/user-guide/retry-and-dead-letter):
``BACKOFF_RETRY`` retries a failed event up to 3 times, ``EXPONENTIAL_DECAY_RETRY`` up to 176
times. A message may thus be
delivered ``1 + retries`` times. ``MaximumRetryAttempts`` is EventBridge's own (and FC 2.0's
``RetryStrategy``) name for an explicit count; the FC 3.0 SDK model does not carry it, so a
template checked by a round trip through that model should use ``PushRetryStrategy`` alone.

The count is the message's ``DequeueCount`` as MNS reports it, so it survives host restarts
and counts deliveries whose invocation never reported back (a crash, a timeout longer than the
visibility timeout). Between deliveries the message waits out its queue's VisibilityTimeout —
the MNS behaviour — not EventBridge's 10–20 s backoff.

When the deliveries are used up:

* with ``deadLetterQueue``: the message is sent to that queue **with its body unchanged** (as
  EventBridge forwards dead letters "as they are") and only then deleted from its own queue;
  configuring a DLQ is taken as tolerating errors, whatever ``errorsTolerance`` says;
* ``errorsTolerance: ALL`` without a DLQ: the message is deleted (discarded), with a warning;
* otherwise (no ``runOptions``: the template's default): the message is never dropped — it keeps
  coming back after each visibility timeout until its retention period ends. EventBridge's
  default tolerance ``NONE`` blocks the stream rather than lose the event; redelivering is the
  local equivalent that loses nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RETRIES = {"BACKOFF_RETRY": 3, "EXPONENTIAL_DECAY_RETRY": 176}
_MNS_QUEUE_ARN = re.compile(r"^acs:mns:[^:]*:[^:]*:/?queues/([^/]+)/?$")


@dataclass(frozen=True)
class DeliveryPolicy:
    """``max_deliveries`` None = redeliver until retention; else give up after that many."""

    max_deliveries: int | None = None
    dead_letter_queue: str | None = None
    strategy: str = "BACKOFF_RETRY"

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
        if tolerance not in ("NONE", "ALL"):
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
        gives_up = dlq is not None or tolerance == "ALL"
        return cls(max_deliveries=1 + retries if gives_up else None, dead_letter_queue=dlq,
                   strategy=strategy)

    def exhausted(self, dequeue_count: int) -> bool:
        """After a failed delivery number ``dequeue_count``: no more tries are left."""
        return self.max_deliveries is not None and dequeue_count >= self.max_deliveries

    def overdue(self, dequeue_count: int) -> bool:
        """Received more often than allowed (earlier deliveries never reported back)."""
        return self.max_deliveries is not None and dequeue_count > self.max_deliveries
