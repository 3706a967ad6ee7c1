"""FC timer triggers: fire a function on its ``cronExpression`` with the FC timer event.

Schedules, as FC 3.0's ``TimerTriggerConfig`` (``alibabacloud-fc20230330``;
https://www.alibabacloud.com/help/en/functioncompute/api-fc-2023-03-30-struct-timertriggerconfig)
and the timer trigger guide (https://help.aliyun.com/document_detail/171746.html) describe them:

* ``@every <duration>`` — Go-style durations (``@every 2s``, ``@every 4m``, ``@every 1h30m``),
  counted from the moment the host starts, as FC counts from the trigger's creation;
* six-field cron, **seconds first** (``0 0 4 * * *`` = 04:00:00 every day), in UTC unless it
  starts with ``CRON_TZ=<zone>``. croniter reads a sixth field as seconds *last* unless told
  ``second_at_beginning=True``, so a five- or seven-field expression is refused here rather
  than silently shifted.

Semantics: every tick is an asynchronous invocation (``AsyncInvoker``), so a slow function never
delays the next tick; ticks that fall while the host is down, or while the machine sleeps, are
not replayed — the next tick is the next one after *now*. ``enable: false`` never fires.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from local.host.async_invoke import AsyncInvoker
from local.host.template import TriggerDecl, truthy
from local.host.trigger import Trigger, TriggerContext

log = logging.getLogger("assistflow.host.timer")

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as ``4m``, ``1h30m`` or ``2.5s``."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or total <= 0:
        raise ValueError(f"{text!r} is not a positive duration like 30s, 4m or 1h30m")
    return total


@dataclass(frozen=True)
class TimerSchedule:
    """When a timer fires: ``next_after(t)`` is the first fire time strictly after ``t``."""

    expression: str
    interval: float | None = None  # @every
    anchor: float = 0.0  # @every counts from here
    cron: str = ""
    zone: Any = timezone.utc

    @classmethod
    def parse(cls, expression: str, anchor: float | None = None) -> TimerSchedule:
        expr = expression.strip()
        if expr.startswith("@every"):
            return cls(expression, interval=parse_duration(expr[len("@every"):]),
                       anchor=time.time() if anchor is None else anchor)
        zone: Any = timezone.utc
        match = re.match(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$", expr)
        if match:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                zone = ZoneInfo(match.group(1))
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {match.group(1)!r} in {expression!r}") \
                    from None
            expr = match.group(2).strip()
        from croniter import croniter

        fields = expr.split()
        if len(fields) != 6:
            raise ValueError(f"{expression!r}: FC cron has six fields (seconds minutes hours "
                             "day-of-month month day-of-week, e.g. '0 0 4 * * *'), or use "
                             "'@every 4m'")
        if not croniter.is_valid(expr, second_at_beginning=True):
            raise ValueError(f"{expression!r} is not a valid cron expression")
        return cls(expression, cron=expr, zone=zone)

    def next_after(self, t: float) -> float:
        if self.interval is not None:
            steps = max(0, int((t - self.anchor) // self.interval) + 1)
            following = self.anchor + steps * self.interval
            return following if following > t else following + self.interval
        from croniter import croniter

        start = datetime.fromtimestamp(t, self.zone)
        return float(croniter(self.cron, start, second_at_beginning=True).get_next(float))


def build_timer_event(trigger_name: str, fire_time: float, payload: str) -> dict[str, Any]:
    """The FC timer event: ``payload`` stays the configured string (a JSON payload arrives
    encoded), as "Formats of event for different triggers" shows it:
    https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/formats-of-event-for-different-triggers-1
    """
    return {"triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fire_time)),
            "triggerName": trigger_name, "payload": payload}


class TimerTrigger(Trigger):
    """Fires one function on one schedule from its own thread."""

    def __init__(self, name: str, function: str, config: dict[str, Any],
                 invoker: AsyncInvoker, label: str = "") -> None:
        super().__init__(name, function)
        expression = config.get("cronExpression")
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError(f"timer trigger {name}: cronExpression is required")
        try:
            self.schedule = TimerSchedule.parse(expression)
        except ValueError as exc:
            raise ValueError(f"timer trigger {name}: {exc}") from None
        payload = config.get("payload", "")
        if not isinstance(payload, str):
            # FC's TimerTriggerConfig.payload is a string; a JSON payload is written encoded.
            raise ValueError(f"timer trigger {name}: payload must be a string (JSON-encode "
                             f"structured payloads), not {type(payload).__name__}")
        self.label = label
        self.payload = payload
        try:
            self.enabled = truthy(config.get("enable"), default=True)
        except ValueError as exc:
            raise ValueError(f"timer trigger {name}: enable: {exc}") from None
        self.invoker = invoker
        self.fired: list[str] = []  # request ids, in firing order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> TimerTrigger:
        return cls(decl.name, decl.function, decl.config, context.invoker, label=context.label)

    def start(self) -> None:
        if not self.enabled:
            log.info("timer %s is disabled (enable: false)", self.name)
            return
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{self.label}timer-{self.name}")
        self._thread.start()
        log.info("timer %s: %s -> %s", self.name, self.schedule.expression,
                 self.runtime.spec.name)

    def _run(self) -> None:
        due = self.schedule.next_after(time.time())
        while not self._stop.is_set():
            remaining = due - time.time()
            if remaining > 0:
                # Event.wait, not sleep: stop() ends the wait at once.
                self._stop.wait(remaining)
                continue
            self._fire(due)
            following = self.schedule.next_after(due)
            now = time.time()
            if following <= now:
                # Behind schedule (the machine slept, the clock jumped): like FC, missed
                # ticks are not replayed; carry on from now.
                log.warning("timer %s: skipped ticks due since %s", self.name,
                            time.strftime("%H:%M:%S", time.gmtime(following)))
                following = self.schedule.next_after(now)
            due = following

    def _fire(self, due: float) -> None:
        event = json.dumps(build_timer_event(self.name, due, self.payload)).encode()
        try:
            request_id = self.invoker.submit(self.runtime, event)
        except RuntimeError:  # the host is stopping
            return
        self.fired.append(request_id)
        log.info("timer %s fired %s (%s)", self.name, self.runtime.spec.name, request_id)

    def begin_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self.begin_stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
