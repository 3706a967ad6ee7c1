"""MNS-queue trigger: other systems drop command requests into the request queue.

Thin adapter: each message of the EventBridge event is one command request (JSON text, or its
Base64 as the MNS SDK sends by default). The MNS message id is the idempotency key, so a
redelivered message runs its command once. A request that can never succeed (invalid, not
allowed, ineligible) fails the invocation: the message is not deleted and, after the trigger's
retries, lands in the dead-letter queue for inspection — never silently dropped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.clients import default_clients
from shared.errors import AssistflowError
from shared.events import queue_messages
from shared.intake import Intake

log = logging.getLogger("assistflow.submit_queue")


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients(context)
    accepted = []
    for message in queue_messages(event):
        intake = Intake("queue", key=f"mns:{message.message_id}", clients=clients,
                        fc_request_id=getattr(context, "request_id", ""))
        try:
            result = intake.accept(message.body)
        except AssistflowError as err:
            log.error("message %s, %s refused: %s", message.message_id, intake.label,
                      json.dumps(intake.refusal(err), ensure_ascii=False))
            raise
        accepted.append({"MessageId": message.message_id, **result.to_dict()})
    return {"accepted": accepted}
