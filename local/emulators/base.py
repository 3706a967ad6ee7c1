"""What every emulator shares: the server, the clock, fault injection and the control API.

Each emulator is a WSGI app (``EmulatorApp`` subclass) whose wire layer turns requests into
calls on a model and renders the answers in the real service's format. This module knows no
service: it serves the app on 127.0.0.1, answers the reserved control paths under
``/_emulator/`` (which no SDK ever requests) and gives the wire layer a clock and a fault
table.

Control API (JSON, every emulator):

* ``GET  /_emulator/health`` — ``{"service": ..., "status": "ok"}``
* ``GET  /_emulator/state`` — a dump of the model's state (``EmulatorApp.dump_state``)
* ``POST /_emulator/reset`` — wipe the model's state
* ``GET|POST|DELETE /_emulator/faults`` — list, add (``FaultRule`` fields) or clear faults
* ``POST /_emulator/clock`` — ``{"advance": seconds}`` moves the emulator's time forward
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_emulator/"


class Clock:
    """Wall-clock time plus an offset that tests move forward instead of sleeping.

    Every model reads time only through its clock, so a visibility timeout, a message delay or
    a periodic invocation can be driven by ``advance`` (the control API's ``/_emulator/clock``).
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._listeners: list[threading.Condition] = []

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            listeners = list(self._listeners)
        for cond in listeners:  # wake waiters whose deadline may now have passed
            with cond:
                cond.notify_all()

    def subscribe(self, cond: threading.Condition) -> None:
        with self._lock:
            self._listeners.append(cond)


@dataclass
class FaultRule:
    """"The next ``count`` calls of ``action`` answer ``code`` / ``status`` after ``delay`` s.

    ``action`` is the service's operation name (``InvokeCommand``, ``SendMessage``,
    ``PutObject``) or ``*`` for every operation. ``code`` empty with a ``delay`` only slows
    the call down; ``probability`` below 1 makes the rule fire on a random fraction of calls
    (``count`` then counts only the calls it fired on; ``count`` 0 means unlimited).
    """

    action: str = "*"
    count: int = 1
    code: str = ""
    status: int = 500
    message: str = ""
    delay: float = 0.0
    probability: float = 1.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}; known: {sorted(known)}")
        rule = cls(**data)
        if rule.count < 0 or not 0 < rule.probability <= 1 or rule.delay < 0:
            raise ValueError("count must be >= 0, probability in (0, 1], delay >= 0")
        return rule


@dataclass
class Faults:
    """Thread-safe fault table consulted by the wire layer once per API call."""

    rules: list[FaultRule] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)  # action -> faults injected so far
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: Any = field(default=None, repr=False)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, action: str) -> FaultRule | None:
        """The rule that applies to this call of ``action``, consuming one of its uses."""
        import random

        rng = self._rng or random
        with self._lock:
            for rule in self.rules:
                if rule.action not in ("*", action):
                    continue
                if rule.probability < 1 and rng.random() >= rule.probability:
                    continue
                if rule.count:
                    rule.count -= 1
                    if rule.count == 0:
                        self.rules.remove(rule)
                self.fired[action] = self.fired.get(action, 0) + 1
                return rule
        return None

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self.rules]


@dataclass(frozen=True)
class KeyRing:
    """The access keys an emulator accepts: id -> (secret, STS token or None).

    A pair registered with a token is an STS pair: requests signed with it must carry that
    token (``SecurityToken`` / ``security-token`` / ``x-oss-security-token``), as on the cloud.
    """

    keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def secret_for(self, access_key_id: str) -> str | None:
        entry = self.keys.get(access_key_id)
        return entry[0] if entry else None

    def token_ok(self, access_key_id: str, token: str | None) -> bool:
        entry = self.keys.get(access_key_id)
        if entry is None:
            return False
        expected = entry[1]
        return (not token) if expected is None else token == expected


def new_request_id() -> str:
    return uuid.uuid4().hex.upper()


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False, sort_keys=True),
        status=status,
        content_type="application/json;charset=utf-8",
    )


class EmulatorApp:
    """Base WSGI app: control API under ``/_emulator/``, everything else to ``dispatch``."""

    service = "emulator"

    def __init__(self, keyring: KeyRing, clock: Clock | None = None) -> None:
        self.keyring = keyring
        self.clock = clock or Clock()
        self.faults = Faults()
        self.base_url = ""  # set by EmulatorServer once the port is known

    # --- to be provided by each emulator -------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def dump_state(self) -> dict[str, Any]:
        return {}

    def reset_state(self) -> None:
        """Wipe the model (control API ``reset``)."""

    def close(self) -> None:
        """Release resources (database handles, worker threads)."""

    # --- plumbing -------------------------------------------------------------------------
    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith(CONTROL_PREFIX):
            response = self._control(request)
        else:
            try:
                response = self.dispatch(request)
            except Exception:  # an emulator bug must surface as a 500, not a dropped socket
                log.exception("%s: unhandled error for %s %s", self.service, request.method,
                              request.full_path)
                response = Response("internal emulator error", status=500)
        return response(environ, start_response)

    def _control(self, request: Request) -> Response:
        name = request.path[len(CONTROL_PREFIX):].strip("/")
        try:
            body = request.get_json(silent=True) or {}
            if name == "health":
                return json_response({"service": self.service, "status": "ok"})
            if name == "state" and request.method == "GET":
                return json_response(self.dump_state())
            if name == "reset" and request.method == "POST":
                self.reset_state()
                self.faults.clear()
                return json_response({"reset": True})
            if name == "faults":
                if request.method == "POST":
                    rules = body if isinstance(body, list) else [body]
                    for item in rules:
                        self.faults.add(FaultRule.from_json(item))
                elif request.method == "DELETE":
                    self.faults.clear()
                return json_response({"faults": self.faults.listing(),
                                      "fired": dict(self.faults.fired)})
            if name == "clock" and request.method == "POST":
                self.clock.advance(float(body.get("advance", 0)))
                return json_response({"now": self.clock.now()})
            return self.control_extra(name, request, body)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)

    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        """Service-specific control paths (peek at queues, …); 404 by default."""
        return json_response({"error": f"no control endpoint {name!r}"}, status=404)


RAW_HEADERS = "emulator.raw_headers"


def raw_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """Request headers by lower-case name, exactly as sent.

    The WSGI environ cannot carry a header whose name contains ``_`` (werkzeug drops them),
    but ``x-oss-meta-my_key`` is legal and signed, so the handler keeps the raw list.
    """
    pairs = environ.get(RAW_HEADERS)
    if pairs is None:
        pairs = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
        pairs += [(k.replace("_", "-"), environ[k]) for k in ("CONTENT_TYPE", "CONTENT_LENGTH")
                  if k in environ]
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


class _Handler(WSGIRequestHandler):
    # HTTP/1.1 without TCP_NODELAY stalls each response ~40 ms on delayed ACKs
    # (research/local-emulation.md §8).
    disable_nagle_algorithm = True

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        environ[RAW_HEADERS] = list(self.headers.items())
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the query string: RPC requests carry SecurityToken and Signature there.
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


class EmulatorServer:
    """Serves an app on 127.0.0.1 in a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, app: EmulatorApp, port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_Handler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        app.base_url = self.url
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{self.app.service}-server", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self.app.close()
