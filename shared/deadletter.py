"""Parking a queue message that can never succeed: into its dead-letter queue, unchanged.

A queue function that meets a message it can never process — an invalid or not-allowed command
request, ineligible instances, a follow-up it cannot read, a target the role may not write —
sends the message's body, byte for byte, to the queue named by ``ASSISTFLOW_DEAD_LETTER_QUEUE``,
logs why, and then *succeeds*, so the message is acknowledged. It does not leave the message to
the platform's retries, because what those do depends on how the trigger invokes the function,
and the documentation disagrees on that (``asyncInvocationType``: ``true`` is asynchronous in
the FC 2.0 reference, synchronous in FC 3.0's current ``EventBridgeTriggerConfig`` reference):

* invoked synchronously, EventBridge retries a failure by the trigger's ``retryStrategy`` and
  then applies ``errorsTolerance`` — ``ALL`` dead-letters it, ``NONE`` blocks the whole stream
  (EventBridge "Retry policies and dead-letter queues",
  https://www.alibabacloud.com/help/en/eventbridge/user-guide/retry-and-dead-letter);
* invoked asynchronously, EventBridge's delivery succeeds as soon as FC accepts the event, and
  the failure meets FC's asynchronous retries, after which the event is dropped unless the
  function's asynchronous configuration names a failure destination ("Configure a retry
  mechanism" / "Destinations for asynchronous invocations", FC 3.0 user guide).

Parked by the function, a poison message ends the same way under both: in the dead-letter
queue, unchanged, with its reason in the function's log, and retried by nobody. Failures that
may pass (throttling, a 5xx, a network error: ``CloudCallError.transient``) and failures of the
deployment rather than the message (``ConfigError``, a bug) still fail the invocation, so the
platform retries them. Parking is at least once: a function that dies after parking and before
its invocation is acknowledged parks the message again on the redelivery.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.clients import Clients
from shared.errors import AssistflowError, CloudCallError, ConfigError
from shared.events import QueueMessage

log = logging.getLogger("assistflow.deadletter")


def can_never_succeed(err: BaseException) -> bool:
    """Is ``err`` about the message itself (a 4xx), so retrying it cannot help?"""
    if isinstance(err, CloudCallError) and err.transient:
        return False
    return isinstance(err, AssistflowError) and 400 <= err.status < 500


def park(clients: Clients, message: QueueMessage, reason: dict[str, Any]) -> None:
    """Send ``message`` unchanged to the dead-letter queue; ``reason`` goes to the log.

    Raises ``ConfigError`` when no dead-letter queue is configured and ``CloudCallError`` when
    the send fails: the invocation then fails and the platform keeps the message.
    """
    queue = clients.settings.dead_letter_queue
    if not queue:
        raise ConfigError("ASSISTFLOW_DEAD_LETTER_QUEUE is not set, so message "
                          f"{message.message_id} cannot be parked; the template sets it")
    clients.queues.send(queue, message.raw_body or message.body)
    log.error("message %s can never succeed; parked unchanged in %s: %s", message.message_id,
              queue, json.dumps(reason, ensure_ascii=False))
