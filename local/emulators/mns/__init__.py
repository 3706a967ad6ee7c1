"""Local emulator of Alibaba Cloud MNS queues and topics for the unchanged ``mns`` SDK.

``model`` holds state and rules (SQLite under the state directory), ``topics`` the topic
half of the model, ``wire`` the HTTP API (signature, routing), ``xmlio`` the XML shapes and
``errors`` the service's error codes.
"""

from __future__ import annotations

from .wire import MnsApp

__all__ = ["MnsApp"]
