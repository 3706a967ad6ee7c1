"""Collector: follow-up messages and Cloud Assistant's TaskCompleted events.

Thin adapter for two triggers of one function (``shared.collector_events`` parses both):

* the follow-up queue (MNS, via EventBridge): each follow-up is ``shared.collect.handle``d.
  Transient cloud errors become a delayed follow-up; any other exception fails the invocation,
  so the message stays and is delivered again — nothing is acknowledged before it is stored. A
  late event (a TaskCompleted that came before its invocation's record) is looked at again;
* the default event bus: ``ecs:CloudAssistant:TaskCompleted`` stores that instance's result at
  once (``shared.collect.on_task_completed``); a failure is retried by FC, and the follow-up
  watchdog stores it anyway.
"""

from __future__ import annotations

from typing import Any

from shared.clients import default_clients
from shared.collect import handle, on_task_completed
from shared.collector_events import LateEvent, TaskCompleted, collector_items


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients(context)
    events: list[dict[str, Any]] = []
    collected: list[dict[str, Any]] = []
    for item in collector_items(event):
        if isinstance(item, TaskCompleted):
            done = on_task_completed(item, clients)
            events.append({"InvokeId": item.data.get("invokeId"), "Ours": done is not None,
                           "Finished": bool(done and done.finished)})
        elif isinstance(item, LateEvent):
            on_task_completed(item.event, clients, tries=item.tries)
        else:
            outcome = handle(item, clients)
            collected.append({"InvokeId": item.invoke_id, "Stored": len(outcome.stored),
                              "Pending": len(outcome.pending), "Finished": outcome.finished})
    return {"events": events} if events else {"collected": collected}
