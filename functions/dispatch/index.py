"""Dispatch queue (MNS, via EventBridge): invoke one batch of a fanned-out request.

Thin adapter: each message is a ``shared.fanout.DispatchJob``; ``shared.dispatch_batch.run``
invokes its batch and hands it to the collector. A transient error (throttling, a 5xx), after
the invocation's patience of jittered backoff (``shared.retry``), fails the invocation, so the
trigger delivers the job again (its ``runOptions``); a job that can never succeed (unreadable,
its request gone) is parked unchanged in the dispatch dead-letter queue and acknowledged
(``shared.deadletter``). A batch refused for good is recorded in its request, not parked.
"""

from __future__ import annotations

from typing import Any

from shared.clients import default_clients
from shared.deadletter import can_never_succeed, park
from shared.dispatch_batch import run
from shared.errors import AssistflowError
from shared.events import queue_messages
from shared.fanout import DispatchJob
from shared.retry import SUBMIT_PATIENCE, patience


def handler(event: bytes, context: Any) -> dict[str, Any]:
    clients = default_clients(context)
    done: list[dict[str, Any]] = []
    for message in queue_messages(event):
        try:
            with patience(SUBMIT_PATIENCE):
                done.append(run(DispatchJob.from_body(message.body), clients))
        except AssistflowError as err:
            if not can_never_succeed(err):
                raise
            park(clients, message, {"MessageId": message.message_id, **err.to_dict()})
            done.append({"MessageId": message.message_id, "Parked": err.to_dict()})
    return {"dispatched": done}
