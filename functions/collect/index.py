"""Follow-up queue trigger: collect the results of one invocation per message.

Thin adapter: each message of the MNS-queue (EventBridge) event is a follow-up; the work is
``shared.collect.handle``. Transient cloud errors become a delayed follow-up; any other
exception fails the invocation, so the message stays and is delivered again — nothing is
acknowledged before it is stored.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.clients import default_clients
from shared.collect import handle
from shared.events import queue_messages
from shared.followup import FollowUp

log = logging.getLogger("assistflow.collect")


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients()
    done = []
    for message in queue_messages(event):
        followup = FollowUp.from_json(message.body)
        outcome = handle(followup, clients)
        done.append({"InvokeId": followup.invoke_id, "Stored": len(outcome.stored),
                     "Pending": len(outcome.pending), "Finished": outcome.finished})
    return {"collected": done}
