"""What every trigger of the function host is: one interface, built from its template declaration.

A trigger kind is a ``Trigger`` subclass with a ``create(decl, context)`` factory, listed once in
``local.host.host.TRIGGER_KINDS`` under its kind (``TriggerDecl.kind``: the FC 3.0
``TriggerType``, refined by the event source for ``eventbridge`` triggers). The host drives every
trigger through the same steps:

1. ``create(decl, context)`` checks the ``TriggerConfig`` (a ``ValueError`` naming the trigger
   if it is wrong) and takes what the trigger owns from then on (an HTTP trigger binds its port);
2. ``attributes()`` are published to the template, so ``Fn::GetAtt`` of them (an HTTP trigger's
   ``UrlInternet``) resolves in the functions' environment and the outputs;
3. ``attach(runtime)`` once the functions exist, then ``start()``;
4. ``begin_stop()`` accepts nothing new, the host closes the runtimes (invocations in flight
   fail), and ``stop()`` joins every thread the trigger started. Both may be called on a trigger
   that never started, and more than once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local.host.async_invoke import AsyncInvoker
    from local.host.event_bus import EventBus
    from local.host.runtime import FunctionRuntime
    from local.host.template import TriggerDecl


@dataclass(frozen=True)
class MnsAccess:
    """Where the MNS service is, and the keys the host's pollers use there."""

    url: str
    access_key_id: str
    access_key_secret: str = field(repr=False)


@dataclass(frozen=True)
class TriggerContext:
    """What the host offers a trigger kind's factory; each takes only what it needs.

    ``label`` prefixes the name of every thread a trigger starts (it tells hosts apart and lets
    ``FunctionHost.threads()`` prove that ``stop()`` ended them); ``http_ports`` fixes the port
    of an HTTP trigger by trigger name (0 or absent: a free port); ``delivery_delay`` draws how
    long EventBridge takes to bring an event to a function (the profile's; 0 under ``fast``).
    """

    region: str
    account_id: str
    label: str
    invoker: AsyncInvoker
    bus: EventBus
    mns: MnsAccess
    http_ports: Mapping[str, int] = field(default_factory=dict)
    delivery_delay: Callable[[], float] = field(default=lambda: 0.0)


@dataclass
class DeliveryStats:
    """What became of the deliveries of one trigger; safe to update from several threads."""

    delivered: int = 0  # invocations accepted (async) or that succeeded (queue: message deleted)
    failed: int = 0  # invocations that failed (the message is left for redelivery or given up)
    dead_lettered: int = 0  # messages moved to the dead-letter queue
    discarded: int = 0  # messages dropped after their last try (errorsTolerance ALL)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, *, delivered: int = 0, failed: int = 0, dead_lettered: int = 0,
               discarded: int = 0) -> None:
        with self._lock:
            self.delivered += delivered
            self.failed += failed
            self.dead_lettered += dead_lettered
            self.discarded += discarded


class Trigger(ABC):
    """One trigger of one function, as the host runs it (see the module docstring)."""

    def __init__(self, name: str, function: str) -> None:
        self.name = name
        self.function = function  # the FunctionName it invokes
        self._runtime: FunctionRuntime | None = None

    @classmethod
    @abstractmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> Trigger:
        """The trigger ``decl`` declares; ``ValueError`` names what is wrong with its config."""

    @property
    def runtime(self) -> FunctionRuntime:
        """The function this trigger invokes (attached by the host before ``start()``)."""
        if self._runtime is None:
            raise RuntimeError(f"trigger {self.name}: no function attached yet")
        return self._runtime

    def attach(self, runtime: FunctionRuntime) -> None:
        self._runtime = runtime

    def attributes(self) -> dict[str, str]:
        """The ``Fn::GetAtt`` attributes of this trigger's resource that only exist locally once
        it is built (an HTTP trigger's URLs and id); none by default."""
        return {}

    @abstractmethod
    def start(self) -> None:
        """Begin delivering events to the function."""

    @abstractmethod
    def begin_stop(self) -> None:
        """Accept nothing new; deliveries in flight end when the host closes the runtimes."""

    @abstractmethod
    def stop(self) -> None:
        """Return once every thread this trigger started has ended."""


TriggerFactory = Callable[["TriggerDecl", TriggerContext], Trigger]
