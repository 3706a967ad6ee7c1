"""What the collector function receives, as typed items: the one parser of its inputs.

Two triggers feed the collector (``template.yml``):

* the default event bus (EventBridge): a batch of Cloud Assistant's
  ``ecs:CloudAssistant:TaskCompleted`` events, each a CloudEvent whose ``data`` names the
  invocation and the instance whose run just ended — a ``TaskCompleted``
  (https://www.alibabacloud.com/help/en/ecs/user-guide/subscribe-to-cloud-assistant-events);
* the follow-up queue (MNS, via EventBridge): each message is a ``FollowUp``, a
  ``LateEvent`` — a TaskCompleted that arrived before its invocation's record was written, sent
  back through the queue to be looked at again a little later (this module owns that
  envelope: ``{"late_event": <the event's data>, "tries": n}``) — or a ``NotifyJob``, one
  attempt of a completion notification (``{"notification": {…}}``, ``shared.notify``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.events import load_event, queue_messages
from shared.followup import FollowUp
from shared.notify import JOB_KEY, NotifyJob

TASK_COMPLETED = "ecs:CloudAssistant:TaskCompleted"
LATE_EVENT = "late_event"  # the envelope's key for the event's data


@dataclass(frozen=True)
class TaskCompleted:
    """One instance's run of one invocation ended (Cloud Assistant's event ``data``)."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def invoke_id(self) -> str:
        return str(self.data.get("invokeId", ""))

    @property
    def instance_id(self) -> str:
        return str(self.data.get("instanceId", ""))

    @property
    def repeats(self) -> int:
        """Which run of a periodic invocation ended (0 for a one-off, or when not given)."""
        return int(self.data.get("repeats") or 0)

    @property
    def has_repeats(self) -> bool:
        """Whether the event says which run ended (the documented sample does not)."""
        return self.data.get("repeats") not in (None, "")


@dataclass(frozen=True)
class LateEvent:
    """A TaskCompleted event looked at ``tries`` times before its invocation's record."""

    event: TaskCompleted
    tries: int

    def to_json(self) -> str:
        return json.dumps({LATE_EVENT: self.event.data, "tries": self.tries})


CollectorItem = TaskCompleted | LateEvent | FollowUp | NotifyJob


def collector_items(event: bytes | str | dict[str, Any] | list[Any]) -> list[CollectorItem]:
    """The items of one collector invocation, in order.

    Raises ``EventInvalidError`` for an event of neither trigger, ``FollowUpInvalidError`` for
    a queue message that is neither a follow-up nor a late event.
    """
    data = load_event(event)
    events = task_completed_events(data)
    if events is not None:
        return list(events)
    return [message_item(message.body) for message in queue_messages(data)]


def task_completed_events(data: Any) -> list[TaskCompleted] | None:
    """The TaskCompleted events of a default-bus delivery; None for anything else."""
    items = data if isinstance(data, list) else [data]
    if items and all(isinstance(i, dict) and i.get("type") == TASK_COMPLETED for i in items):
        return [TaskCompleted(dict(i.get("data") or {})) for i in items]
    return None


def message_item(body: str) -> LateEvent | FollowUp | NotifyJob:
    """One follow-up queue message; ``FollowUpInvalidError`` (or ``NotifyJobInvalidError``,
    for a notification job with bad fields) when it is none of the three kinds."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get(LATE_EVENT), dict):
        return LateEvent(TaskCompleted(data[LATE_EVENT]), int(data.get("tries", 1)))
    if isinstance(data, dict) and isinstance(data.get(JOB_KEY), dict):
        return NotifyJob.from_dict(data[JOB_KEY])
    return FollowUp.from_json(body)
