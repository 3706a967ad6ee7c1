"""MNS-queue trigger: other systems drop command requests into the request queue.

Thin adapter: each message of the EventBridge event is one command request (JSON text, or its
Base64 as the MNS SDK sends by default). The MNS message id is the idempotency key, so a
redelivered message runs its command once. A request that can never succeed (invalid, not
allowed, ineligible, refused by Cloud Assistant) is parked in the request dead-letter queue,
unchanged, with every violation in the log, and the message is acknowledged — never left to
platform retries (``shared.deadletter`` says why). A failure that may pass (throttling, a 5xx)
fails the invocation, so the trigger delivers the message again.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.clients import default_clients
from shared.deadletter import can_never_succeed, park
from shared.errors import AssistflowError
from shared.events import queue_messages
from shared.intake import Intake

log = logging.getLogger("assistflow.submit_queue")


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients(context)
    accepted = []
    parked = []
    for message in queue_messages(event):
        intake = Intake("queue", key=f"mns:{message.message_id}", clients=clients,
                        fc_request_id=getattr(context, "request_id", ""), context=context)
        try:
            result = intake.accept(message.body)
            result.raise_if_retryable()  # the redelivery starts the rest
        except AssistflowError as err:
            if not can_never_succeed(err):
                log.warning("message %s, %s failed, to be retried: %s", message.message_id,
                            intake.label, err)
                raise
            park(clients, message, intake.refusal(err))
            parked.append({"MessageId": message.message_id, **intake.refusal(err)})
            continue
        accepted.append({"MessageId": message.message_id, **result.to_dict()})
    return {"accepted": accepted, "parked": parked}
