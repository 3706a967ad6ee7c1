"""An emulator served on loopback: the same app in a pytest fixture and under ``assistflow up``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from local.http11 import raw_headers
from local.server import LoopbackServer

if TYPE_CHECKING:
    from local.emulators.base import EmulatorApp

__all__ = ["EmulatorServer", "raw_headers"]


class EmulatorServer(LoopbackServer):
    """Serves an emulator app on 127.0.0.1; ``port=0`` picks a free port.

    Tells the app its base URL once the port is known, and closes the app (its database and
    worker threads) when the server stops.
    """

    def __init__(self, app: EmulatorApp, port: int = 0, fd: int | None = None) -> None:
        super().__init__(app, port, f"{app.service}-server", fd, one_thread=app.one_thread)
        self.app = app
        app.base_url = self.url
        app.server_cpu = self.cpu  # /_emulator/calls reports it

    def start(self) -> EmulatorServer:  # type: ignore[override]
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.app.close()
