"""Clients for Cloud Assistant (ECS RPC), MNS and OSS, built from ``Settings``.

One module per service — ``cloud_assistant``, ``queues``, ``results`` — each the only place
that imports its SDK and maps its errors. The SDKs are imported only when a client is first
used, so a handler pays only for the SDKs it needs (oss2 alone costs ~0.3 s of import).

Every SDK error becomes a ``CloudCallError`` whose ``transient`` flag says whether trying again
later may help (throttling, 5xx, network) or not (bad instance id, bad parameter). The
functions and the ``assistflow`` command both go through these clients.
"""

from __future__ import annotations

from typing import Any

from shared.clients.cloud_assistant import CloudAssistant
from shared.clients.queues import Queues
from shared.clients.results import Results
from shared.config import Settings

__all__ = ["Clients", "CloudAssistant", "Queues", "Results", "default_clients"]


class Clients:
    """Everything a handler talks to, created lazily from one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ecs = CloudAssistant(settings)
        self.queues = Queues(settings)
        self.results = Results(settings)
        self._regions: dict[str, CloudAssistant] = {settings.region: self.ecs}

    def ecs_in(self, region: str) -> CloudAssistant:
        """Cloud Assistant of ``region`` (a request's ``RegionId``); the default otherwise."""
        region = region or self.settings.region
        if region not in self._regions:
            self._regions[region] = CloudAssistant(self.settings.for_region(region))
        return self._regions[region]


_cached: Clients | None = None


def default_clients(context: Any = None) -> Clients:
    """Clients for this invocation, reused while the function instance stays warm.

    The settings are read again on every call, with this invocation's credentials
    (``context.credentials``, else the ``ALIBABA_CLOUD_*`` variables FC refreshes: see
    ``shared.config``); the clients (and the SDK connections they hold) are rebuilt only when
    something changed, such as FC rotating the role's STS token.
    """
    global _cached
    settings = Settings.from_env(context=context)
    if _cached is None or _cached.settings != settings:
        _cached = Clients(settings)
    return _cached
