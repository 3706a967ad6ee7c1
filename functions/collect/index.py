"""Collector: follow-up messages and Cloud Assistant's TaskCompleted events.

Thin adapter for two triggers of one function (``shared.collector_events`` parses both):

* the follow-up queue (MNS, via EventBridge): each follow-up is ``shared.collect.handle``d.
  Transient cloud errors become a delayed follow-up; a message that can never be processed (not
  a follow-up, an invocation Cloud Assistant no longer knows, results the role may not write) is
  parked unchanged in the follow-up dead-letter queue with the reason logged, and acknowledged
  (``shared.deadletter``); anything else fails the invocation, so the message stays and is
  delivered again — nothing is acknowledged before it is stored. A late event (a TaskCompleted
  that came before its invocation's record) is looked at again; a notification job makes one
  attempt of a completion notification (``shared.notify.run``);
* the default event bus: ``ecs:CloudAssistant:TaskCompleted`` stores that instance's result at
  once (``shared.collect.on_task_completed``); a failure is retried by FC, and the follow-up
  watchdog stores it anyway.
"""

from __future__ import annotations

from typing import Any

from shared import notify
from shared.clients import Clients, default_clients
from shared.collect import handle, on_task_completed
from shared.collector_events import LateEvent, message_item, task_completed_events
from shared.deadletter import can_never_succeed, park
from shared.errors import AssistflowError
from shared.events import load_event, queue_messages


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients(context)
    data = load_event(event)
    events = task_completed_events(data)
    if events is not None:
        out = []
        for task in events:
            done = on_task_completed(task, clients)
            out.append({"InvokeId": task.data.get("invokeId"), "Ours": done is not None,
                        "Finished": bool(done and done.finished)})
        return {"events": out}
    collected: list[dict[str, Any]] = []
    for message in queue_messages(data):
        try:
            collected.append(_collect(message_item(message.body), clients))
        except AssistflowError as err:
            if not can_never_succeed(err):
                raise
            park(clients, message, {"MessageId": message.message_id, **err.to_dict()})
            collected.append({"MessageId": message.message_id, "Parked": err.to_dict()})
    return {"collected": collected}


def _collect(item: Any, clients: Clients) -> dict[str, Any]:
    if isinstance(item, LateEvent):
        on_task_completed(item.event, clients, tries=item.tries)
        return {"LateEvent": item.event.invoke_id, "Tries": item.tries}
    if isinstance(item, notify.NotifyJob):
        return {"Notification": item.invoke_id, "Attempt": item.attempt,
                "Outcome": notify.run(item, clients)}
    outcome = handle(item, clients)
    return {"InvokeId": item.invoke_id, "Stored": len(outcome.stored),
            "Pending": len(outcome.pending), "Finished": outcome.finished}
