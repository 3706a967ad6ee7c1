"""How the processes of one emulator talk (``local.emulators.serve --processes``): each serves
a private port, and these are the HTTP calls between them — a worker's ``forward`` of a control
call to the primary, and ``call`` of a ``/_emulator/_peer/`` path (the primary's news to its
workers, a worker's fault take, each one's counts). ``EmulatorApp`` answers them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from werkzeug.wrappers import Request, Response

PREFIX = "/_emulator/"  # every emulator's control API (local.emulators.base.CONTROL_PREFIX)
PEER = "_peer/"  # control paths the processes of one emulator use among themselves
TIMEOUT = 30.0  # seconds a process waits for another's answer


def call(url: str, name: str, body: Any = None) -> dict[str, Any]:
    """Another process of this emulator, at its private ``url``: GET (no ``body``) or POST
    ``/_emulator/_peer/<name>``; its JSON answer. ``OSError`` when it does not answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{PREFIX}{PEER}{name}", data=data,
                                     method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        found: dict[str, Any] = json.loads(answer.read())
        return found


def forward(url: str, request: Request) -> Response:
    """``request`` (a control call) answered by the process at ``url``, as it answers it."""
    target = f"{url}{request.full_path if request.query_string else request.path}"
    forwarded = urllib.request.Request(
        target, data=request.get_data() or None, method=request.method,
        headers={"Content-Type": request.content_type or "application/json"})
    try:
        with urllib.request.urlopen(forwarded, timeout=TIMEOUT) as answer:
            return Response(answer.read(), status=answer.status,
                            content_type=answer.headers.get("Content-Type"))
    except urllib.error.HTTPError as refused:  # its answer all the same (a 400, a 404)
        return Response(refused.read(), status=refused.code,
                        content_type=refused.headers.get("Content-Type"))
