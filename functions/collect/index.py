"""Collector: follow-up messages and Cloud Assistant's TaskCompleted events.

Thin adapter for two triggers of one function:

* the follow-up queue (MNS, via EventBridge): each message is a follow-up; the work is
  ``shared.collect.handle``. Transient cloud errors become a delayed follow-up; any other
  exception fails the invocation, so the message stays and is delivered again — nothing is
  acknowledged before it is stored;
* the default event bus: ``ecs:CloudAssistant:TaskCompleted`` stores that instance's result at
  once (``shared.collect.on_task_completed``); a failure is retried by FC, and the follow-up
  watchdog stores it anyway.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.clients import default_clients
from shared.collect import LATE_EVENT, handle, on_task_completed
from shared.events import EventInvalidError, queue_messages
from shared.followup import FollowUp

log = logging.getLogger("assistflow.collect")

TASK_COMPLETED = "ecs:CloudAssistant:TaskCompleted"


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients()
    try:
        data = json.loads(event)
    except ValueError as exc:
        raise EventInvalidError(f"the event is not JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if items and all(isinstance(i, dict) and i.get("type") == TASK_COMPLETED for i in items):
        done = []
        for item in items:
            outcome = on_task_completed(item.get("data") or {}, clients)
            done.append({"InvokeId": (item.get("data") or {}).get("invokeId"),
                         "Ours": outcome is not None,
                         "Finished": bool(outcome and outcome.finished)})
        return {"events": done}
    collected = []
    for message in queue_messages(items):
        late = _late_event(message.body)
        if late is not None:  # an event that came before its invocation's record
            on_task_completed(late[0], clients, tries=late[1])
            continue
        followup = FollowUp.from_json(message.body)
        outcome = handle(followup, clients)
        collected.append({"InvokeId": followup.invoke_id, "Stored": len(outcome.stored),
                          "Pending": len(outcome.pending), "Finished": outcome.finished})
    return {"collected": collected}


def _late_event(body: str) -> tuple[dict[str, Any], int] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get(LATE_EVENT), dict):
        return data[LATE_EVENT], int(data.get("tries", 1))
    return None
