"""Local emulator of Alibaba Cloud MNS queues and topics for the unchanged ``mns`` SDK.

The layout every emulator shares (``local/emulators/base.py``): ``app`` the WSGI app (parse,
authenticate, render), ``wire`` the request parsing and XML, ``signing`` the MNS signature,
``operations`` one function per API action, ``model`` queues and messages and their rules,
``topics`` the topics and subscriptions the model holds, ``store`` the SQLite persistence,
``errors`` one class per error code, ``limits`` the documented ranges and their checks.
"""

from __future__ import annotations

from .app import MnsApp

__all__ = ["MnsApp"]
