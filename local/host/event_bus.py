"""The local EventBridge default bus: cloud events in, matching eventbridge triggers invoked.

Alibaba Cloud services publish events (ECS: ``ecs:CloudAssistant:TaskCompleted``) to the
account's default bus; an FC ``eventbridge`` trigger whose ``eventSourceConfig.eventSourceType``
is ``Default`` receives those that match its ``eventRuleFilterPattern`` (FC 3.0
``EventBridgeTriggerConfig``,
https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/developer-reference/api-fc-2023-03-30-struct-eventbridgetriggerconfig).
The local ECS emulator publishes here, so the same template line subscribes a function on a
laptop and on the cloud — and the same pattern keeps other events away from it on both
(template.yml narrows TaskCompleted to its own commands by a ``data.commandName`` prefix).
The host invokes the function asynchronously, with FC's asynchronous retries, whatever the
trigger's ``asyncInvocationType`` says (its two references disagree on what ``true`` means).
Each matching event starts its invocation after the profile's EventBridge delivery time
(``TriggerContext.delivery_delay``; none under ``fast``).

Patterns follow EventBridge "Event patterns"
(https://www.alibabacloud.com/help/en/eventbridge/user-guide/event-patterns) for what a trigger
needs: a JSON object whose keys are event fields (nested objects for ``data``) and whose values
are lists of allowed values, where an item may also be ``{"prefix": …}``, ``{"suffix": …}`` or
``{"anything-but": …}``; every key must match (AND), any item of a list (OR); ``{}`` matches
every event. Other operators are refused when the trigger starts, not silently ignored.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from local.host.async_invoke import AsyncInvoker
from local.host.template import TriggerDecl
from local.host.trigger import DeliveryStats, Trigger, TriggerContext

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


def check_pattern(pattern: Any) -> None:
    """``ValueError`` naming the first part of ``pattern`` this bus does not evaluate."""
    if not isinstance(pattern, dict):
        raise ValueError("a pattern is a JSON object")
    for key, rule in pattern.items():
        if isinstance(rule, dict):
            check_pattern(rule)
        elif isinstance(rule, list):
            for item in rule:
                if isinstance(item, dict) and not (len(item) == 1 and set(item) <= _OPERATORS):
                    raise ValueError(f"unsupported pattern item {item!r} at {key!r} (supported: "
                                     f"exact values, {', '.join(sorted(_OPERATORS))})")
        else:
            raise ValueError(f"pattern field {key!r} must be a list or an object")


_OPERATORS = {"prefix", "suffix", "anything-but"}


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


class BusTrigger(Trigger):
    """One ``eventbridge`` trigger on the default bus: subscribed while it runs."""

    def __init__(self, name: str, function: str, config: dict[str, Any], bus: EventBus,
                 invoker: AsyncInvoker, delivery_delay: Callable[[], float] | None = None) -> None:
        super().__init__(name, function)
        raw = config.get("eventRuleFilterPattern") or "{}"
        try:
            self.pattern = json.loads(raw) if isinstance(raw, str) else dict(raw)
            check_pattern(self.pattern)  # reject unsupported syntax at start, not per event
        except (ValueError, TypeError) as exc:
            raise ValueError(f"trigger {name}: eventRuleFilterPattern: {exc}") from None
        self.enabled = config.get("triggerEnable", True) not in (False, "false", "False")
        self.stats = DeliveryStats()
        self._bus = bus
        self._invoker = invoker
        self._delivery_delay = delivery_delay or (lambda: 0.0)
        self._stopping = threading.Event()

    @classmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> BusTrigger:
        return cls(decl.name, decl.function, decl.config, context.bus, context.invoker,
                   context.delivery_delay)

    def offer(self, event: dict[str, Any], body: bytes) -> bool:
        """Invoke the function with ``event`` (its JSON ``body``) if it matches; True if so."""
        if not (self.enabled and matches(self.pattern, event)):
            return False
        if not self._stopping.is_set():
            try:
                self._invoker.submit(self.runtime, body, delay=self._delivery_delay())
            except RuntimeError:  # the invoker was told to stop first
                pass
            else:
                self.stats.record(delivered=1)
                return True
        log.info("dropped %s for %s: the host is stopping", event.get("type"), self.name)
        return False

    def start(self) -> None:
        self._bus.subscribe(self)

    def begin_stop(self) -> None:
        self._stopping.set()

    def stop(self) -> None:
        self.begin_stop()
        self._bus.unsubscribe(self)


class EventBus:
    """Routes each published event to every subscribed trigger whose pattern matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._triggers: list[BusTrigger] = []

    def subscribe(self, trigger: BusTrigger) -> None:
        with self._lock:
            self._triggers.append(trigger)
        if not trigger.enabled:
            log.info("trigger %s is disabled (triggerEnable: false)", trigger.name)

    def unsubscribe(self, trigger: BusTrigger) -> None:
        with self._lock:
            if trigger in self._triggers:
                self._triggers.remove(trigger)

    def publish(self, event: dict[str, Any]) -> int:
        """Deliver ``event`` asynchronously (FC retries failures); returns the match count."""
        body = json.dumps(event).encode()
        with self._lock:
            triggers = list(self._triggers)
        return sum(trigger.offer(event, body) for trigger in triggers)
