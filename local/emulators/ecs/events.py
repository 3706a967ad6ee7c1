"""Cloud Assistant task events: what ECS publishes to EventBridge when a run ends.

Cloud Assistant emits ``ecs:CloudAssistant:TaskCompleted`` (source ``acs.ecs``) on the
account's default event bus each time a run on an instance reaches a final status, so
consumers need not poll. The shape follows Alibaba's documented sample (a CloudEvent whose
``data`` carries ``commandId``, ``commandName``, ``exitCode`` as a string, ``finishTime``,
``instanceId``, ``invocationStatus``); ``invokeId``, ``startTime``, ``repeatMode`` and
``repeats`` complete it so a run can be found again.

The emulator hands events to a sink (the local function host's event bus) from one background
thread, in order, so the agent never waits for a consumer.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.emulators.ecs.entities import CommandInvocation, Run

log = logging.getLogger(__name__)

SOURCE = "acs.ecs"
TASK_COMPLETED = "ecs:CloudAssistant:TaskCompleted"

Sink = Callable[[dict[str, Any]], object]


def task_completed(*, region: str, account_id: str, time: str, run: Run,
                   invocation: CommandInvocation) -> dict[str, Any]:
    """The event for one settled run of ``invocation``."""
    return {
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "specversion": "1.0",
        "subject": f"acs.ecs:{region}:{account_id}:{run.invoke_id}",
        "time": time,
        "type": TASK_COMPLETED,
        "datacontenttype": "application/json;charset=utf-8",
        "aliyunaccountid": account_id,
        "aliyunpublishtime": time,
        "aliyuneventbusname": "default",
        "aliyunregionid": region,
        "aliyunpublishaddr": "127.0.0.1",
        "data": {
            "commandId": invocation.command_id,
            "commandName": invocation.command_name,
            "exitCode": "" if run.exit_code is None else str(run.exit_code),
            "finishTime": run.finished_time,
            "instanceId": run.instance_id,
            "invocationStatus": run.status,
            "invokeId": run.invoke_id,
            "repeatMode": invocation.repeat_mode,
            "repeats": run.run,
            "startTime": run.start_time,
        },
    }


class EventPublisher:
    """Delivers events to ``sink`` (if one is set) from a single daemon thread, in order."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def publish(self, events: list[dict[str, Any]]) -> None:
        if self.sink is None or not events:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ecs-events", daemon=True)
                self._thread.start()
        for event in events:
            self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            sink = self.sink
            if sink is None:
                continue
            try:
                sink(event)
            except Exception:  # a consumer's failure is not the agent's problem
                log.exception("publishing %s failed", event.get("type"))

    def close(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=5)
                self._thread = None
