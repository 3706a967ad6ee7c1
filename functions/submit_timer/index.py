"""Timer trigger: scheduled maintenance. The trigger's payload is the command request.

Thin adapter: the FC timer event is ``{"triggerTime", "triggerName", "payload"}``; trigger name
plus fire time is the idempotency key, so a timer that fires twice for the same tick runs its
command once. An invalid payload fails the invocation with every violation in the log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.errors import AssistflowError
from shared.events import TimerEvent
from shared.intake import Intake

log = logging.getLogger("assistflow.submit_timer")


def handler(event: bytes, context: Any) -> dict[str, Any]:
    timer = TimerEvent.parse(event)
    intake = Intake("timer", key=f"timer:{timer.trigger_name}:{timer.trigger_time}",
                    fc_request_id=getattr(context, "request_id", ""), context=context)
    try:
        accepted = intake.accept(timer.payload)
        accepted.raise_if_retryable()  # FC's asynchronous retry starts the rest
    except AssistflowError as err:
        log.error("timer %s at %s, %s refused: %s", timer.trigger_name, timer.trigger_time,
                  intake.label, json.dumps(intake.refusal(err), ensure_ascii=False))
        raise
    return accepted.to_dict()
