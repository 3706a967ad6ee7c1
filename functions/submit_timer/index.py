"""Timer trigger: scheduled maintenance. The trigger's payload is the command request.

Thin adapter: the FC timer event is ``{"triggerTime", "triggerName", "payload"}``; trigger name
plus fire time is the idempotency key, so a timer that fires twice for the same tick runs its
command once. An invalid payload fails the invocation with every violation in the log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.clients import default_clients
from shared.errors import AssistflowError
from shared.events import timer_event
from shared.intake import accept

log = logging.getLogger("assistflow.submit_timer")


def handler(event: bytes, context: Any) -> dict[str, Any]:
    timer = timer_event(event)
    try:
        accepted = accept(timer.payload, default_clients(), source="timer",
                          idempotency_key=f"timer:{timer.trigger_name}:{timer.trigger_time}",
                          request_id=getattr(context, "request_id", ""))
    except AssistflowError as err:
        log.error("timer %s at %s refused (%s): %s", timer.trigger_name, timer.trigger_time,
                  err.code, json.dumps(err.to_dict(), ensure_ascii=False))
        raise
    return accepted.to_dict()
