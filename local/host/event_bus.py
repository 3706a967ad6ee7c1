"""The local EventBridge default bus: cloud events in, matching eventbridge triggers invoked.

Alibaba Cloud services publish events (ECS: ``ecs:CloudAssistant:TaskCompleted``) to the
account's default bus; an FC ``eventbridge`` trigger whose ``eventSourceConfig.eventSourceType``
is ``Default`` receives those that match its ``eventRuleFilterPattern``. The local ECS emulator
publishes here, so the same template line subscribes a function on a laptop and on the cloud.

Patterns follow EventBridge's syntax for what a trigger needs: a JSON object whose keys are
event fields (nested objects for ``data``) and whose values are lists of allowed values, where
an item may also be ``{"prefix": …}``, ``{"suffix": …}`` or ``{"anything-but": …}``. ``{}``
matches every event.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from local.host.async_invoke import AsyncInvoker
from local.host.runtime import FunctionRuntime

log = logging.getLogger("assistflow.host.events")


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Does ``event`` match the EventBridge ``pattern``?"""
    for key, rule in pattern.items():
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(rule, dict):
            if not isinstance(value, dict) or not matches(rule, value):
                return False
        elif isinstance(rule, list):
            if not any(_item_matches(item, value) for item in rule):
                return False
        else:
            raise ValueError(f"pattern field {key!r} must be a list or an object")
    return True


def _item_matches(item: Any, value: Any) -> bool:
    if not isinstance(item, dict):
        return bool(item == value)
    if "prefix" in item:
        return isinstance(value, str) and value.startswith(item["prefix"])
    if "suffix" in item:
        return isinstance(value, str) and value.endswith(item["suffix"])
    if "anything-but" in item:
        excluded = item["anything-but"]
        excluded = excluded if isinstance(excluded, list) else [excluded]
        return value is not None and value not in excluded
    raise ValueError(f"unsupported pattern item {item!r}")


class BusTrigger:
    """One ``eventbridge`` trigger on the default bus."""

    def __init__(self, name: str, runtime: FunctionRuntime, config: dict[str, Any]) -> None:
        raw = config.get("eventRuleFilterPattern") or "{}"
        try:
            self.pattern = json.loads(raw) if isinstance(raw, str) else dict(raw)
            matches(self.pattern, {})  # reject unsupported syntax at start, not per event
        except (ValueError, TypeError) as exc:
            raise ValueError(f"trigger {name}: eventRuleFilterPattern: {exc}") from None
        self.name = name
        self.runtime = runtime
        self.enabled = config.get("triggerEnable", True) not in (False, "false", "False")
        self.delivered = 0


class EventBus:
    """Routes each published event to every enabled trigger whose pattern matches."""

    def __init__(self, invoker: AsyncInvoker) -> None:
        self._invoker = invoker
        self.triggers: list[BusTrigger] = []

    def subscribe(self, trigger: BusTrigger) -> None:
        self.triggers.append(trigger)
        if not trigger.enabled:
            log.info("trigger %s is disabled (triggerEnable: false)", trigger.name)

    def publish(self, event: dict[str, Any]) -> int:
        """Deliver ``event`` asynchronously (FC retries failures); returns the match count."""
        body = json.dumps(event).encode()
        matched = 0
        for trigger in self.triggers:
            if trigger.enabled and matches(trigger.pattern, event):
                try:
                    self._invoker.submit(trigger.runtime, body)
                except RuntimeError:  # the host is stopping: the event is not delivered
                    log.info("dropped %s for %s: the host is stopping", event.get("type"),
                             trigger.name)
                    continue
                trigger.delivered += 1
                matched += 1
        return matched
