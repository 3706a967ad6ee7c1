"""What every emulator shares: the request pipeline, errors, the clock, faults and the control API.

Every emulator (``ecs/``, ``mns/``, ``oss/``) has the same modules with the same roles:

* ``app.py`` — the ``EmulatorApp`` subclass: turns a request into a ``Call`` (which action,
  its parameters), verifies its signature through ``signing.py``, renders results and errors
  in the service's wire format, and adds the service's own control paths;
* ``wire.py`` — the wire format's parsing and rendering helpers (JSON, XML, headers);
* ``signing.py`` — the service's signature scheme(s);
* ``operations.py`` — one function per API action, registered in ``OPERATIONS``: typed
  parameters in, a result out; no HTTP, no SQL;
* ``model.py`` — the state and its rules, on entity objects;
* ``store.py`` — persistence (an ``SqliteStore``), with named methods that return typed rows;
* ``errors.py`` — one ``ServiceError`` subclass per error code the service answers.

Beside them, a service keeps what only it has: ECS its agent (``executor.py``), fleet
(``inventory.py``), schedules (``frequency.py``, ``recurring.py``), pure rules (``rules.py``),
events (``events.py``) and — being the largest model — its entity classes in ``entities.py``;
MNS its topics (``topics.py``) and documented limits (``limits.py``); OSS its CRC-64
(``crc64.py``). What all of them use lives here, in ``faults.py`` (the fault table),
``meters.py`` (the clock and the call counts), ``sqlite.py`` (the store base),
``server.py`` (serving an app on loopback) and ``peers.py`` (the calls between the processes
of one emulator).

This module knows no service. ``EmulatorApp`` runs one pipeline for all of them (``begin``,
then ``StagedCall.finish``)::

    parse (app) -> count the call -> authenticate (app) -> the profile's latency
    -> intercept: the per-call hooks -> the operation (operations.py) -> render (app);
    any ServiceError -> render_error (app)

The latency (``profile_hooks.py``) is drawn once the action is known and waited by whoever
serves the call: a request thread sleeps (``EmulatorApp.__call__``), the one-thread server
(``LoopbackServer(one_thread=True)``) sets a timer and serves other calls meanwhile
(``EmulatorApp.stage``: the pipeline up to the latency, and the rest to run after it). A call
refused before (unroutable, a bad signature) is answered at once.

``intercept`` is the single place where something happens to *every* API call of every
service: ``EmulatorApp.hooks``, in the order ``[authorize, throttle, inject_fault]``:
``throttle`` is the profile's rate limits (``profile_hooks.py``);
``authorize`` is RAM: a call signed with a key bound to a role (a function's STS key,
``keyring.py``) must be allowed by that role's policies (``local.ram``), judged on the
(action, resource ARN) pairs the app's ``ram_request`` names and refused with the
service's own error from ``ram_denied``; ``inject_fault`` plays the fault table.

Control API (JSON, every emulator, under ``/_emulator/``, which no SDK ever requests):

* ``GET  health`` — ``{"service": ..., "status": "ok", "profile": ...}`` (the active profile)
* ``GET  state`` — a dump of the model's state
* ``POST reset`` — wipe the model's state (and the faults, call counts and rate windows)
* ``GET|POST|DELETE faults`` — list, add (``FaultRule`` fields) or clear faults
* ``GET|DELETE calls`` — API calls received per action (faulted and refused ones included),
  and ``cpu_ms``: the CPU milliseconds the pipeline spent on them per action (the request
  thread's own CPU clock: a profile's delay or a wait for a lock does not count); served by an
  ``EmulatorServer``, also ``server_cpu``: ``{"seconds", "requests"}`` of the threads
  serving its requests (HTTP included, ``local.server.CpuMeter``), and, in a process of its own
  (``local.emulators.serve``), ``process_cpu_s``: that whole process's CPU seconds so far.
  ``DELETE`` zeroes the counts and ``cpu_ms`` only
* ``POST clock`` — ``{"advance": seconds}`` moves the emulator's time forward

Served by several processes on one socket (``local.emulators.serve --processes``), an emulator
answers the control API as one: a worker hands every control call it receives to the primary
(``primary``: the primary's private URL), and the primary tells its workers (``workers``: their
private URLs) what changed — the clock, a reset, whether fault rules exist, zeroed counts —
under ``/_emulator/_peer/`` (``peers.py``), before it answers. ``calls`` adds up every
process's counts and CPU (``processes``: each one's pid, private URL — where it alone serves
the API too — and requests on the shared port). Fault rules live in the primary alone: while it has any, a
worker takes each call's rule there (the answer says whether any are left), so a rule that
fires N times fires N times in all. A service whose profile limits its rate is served by one
process (each would count its own window).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from local.emulators import peers
from local.emulators.faults import FaultRule, Faults
from local.emulators.keyring import KeyRing as KeyRing  # re-exported: emulators import it here
from local.emulators.meters import CallCounter as CallCounter  # re-exported, as Clock
from local.emulators.meters import Clock as Clock
from local.emulators.profile_hooks import CallPacing
from local.ram import Decision, RamRequest
from local.server import Staged

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from local.server import CpuMeter

log = logging.getLogger(__name__)

CONTROL_PREFIX = peers.PREFIX  # the control API: no SDK ever requests under it


# --- errors ----------------------------------------------------------------------------------
class ServiceError(Exception):
    """An API error as the service answers it: ``code``, HTTP ``status`` and ``message``.

    Each service has one root class (``EcsError``, ``MnsError``, ``OssError``, declared with
    ``root=True``) and one subclass per error code, which sets ``code``, ``status`` and a
    ``template`` for the message, formatted with the keyword arguments it is raised with::

        class QueueNotExist(MnsError):
            code, status = "QueueNotExist", 404
            template = "The queue name you provided is not exist: {name}."

        raise QueueNotExist(name="q")

    ``message`` replaces the template's text; ``code`` / ``status`` given to the constructor
    override the class's (fault injection raises any code, known or not, with
    ``root.from_code``). The keyword arguments stay in ``fields`` for renderers that show them
    (OSS puts them in the ``<Error>`` XML).
    """

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    template: ClassVar[str] = ""
    _by_code: ClassVar[dict[str, type[ServiceError]]] = {}

    def __init_subclass__(cls, root: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if root:
            cls._by_code = {}
        elif "code" in cls.__dict__:
            cls._by_code[cls.code] = cls

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 status: int | None = None, **fields: str) -> None:
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may answer another code
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.fields = fields
        self.message = message if message is not None else (
            self.template.format(**fields) if self.template else self.code)
        super().__init__(f"{self.code}: {self.message}")

    @classmethod
    def from_code(cls, code: str, message: str | None = None,
                  status: int | None = None) -> ServiceError:
        """An error of this service answering ``code``: its own class if it has one."""
        known = cls._by_code.get(code)
        if known is not None:
            return known(message or (None if known.template.count("{") == 0 else code),
                         status=status)
        return cls(message or code, code=code, status=status)


# --- the call and its operations -------------------------------------------------------------
@dataclass
class Call:
    """One API request on its way through the pipeline.

    ``parse`` sets ``action`` (the service's operation name: ``InvokeCommand``,
    ``SendMessage``, ``PutObject``) and ``params`` (whatever the service's operations take);
    ``authenticate`` sets ``access_key_id`` (``None``: an anonymous request).
    """

    request: Request
    request_id: str
    action: str = ""
    params: Any = None
    access_key_id: str | None = None


M = TypeVar("M")
Operation = Callable[[M, Call], Any]


class Operations(dict[str, Callable[[Any, Call], Any]], Generic[M]):
    """A service's API actions by name; ``@OPERATIONS.register("CreateQueue")`` adds one."""

    def register(self, action: str) -> Callable[[Operation[M]], Operation[M]]:
        def add(function: Operation[M]) -> Operation[M]:
            if action in self:
                raise ValueError(f"operation {action} registered twice")
            self[action] = function
            return function

        return add


def new_request_id() -> str:
    """32 upper-case hex digits, random (a uuid4's hex, without building the UUID)."""
    return os.urandom(16).hex().upper()


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False, sort_keys=True),
        status=status,
        content_type="application/json;charset=utf-8",
    )


Hook = Callable[[Call], None]


class StagedCall:
    """A call through the pipeline up to its latency (``EmulatorApp.begin``): whoever serves
    it waits ``latency`` seconds, then ``finish()`` answers it. ``response`` is already set
    for a call refused before its latency; ``waits``: the rest may block on something other
    than the CPU (a fault rule's stall, a question to the primary)."""

    def __init__(self, app: EmulatorApp, call: Call, latency: float,
                 response: Response | None = None) -> None:
        self.app = app
        self.call = call
        self.latency = latency
        self.response = response
        self.waits = False
        self.cpu = 0.0  # the pipeline's CPU seconds so far

    def finish(self) -> Response:
        if self.response is not None:
            return self.response
        begin = time.thread_time()
        try:
            return self.app._rest(self.call)
        finally:
            self.app.calls.add_cpu(self.call.action, self.cpu + time.thread_time() - begin)


def _answering(respond: Callable[[], Response]) -> WSGIApplication:
    """A WSGI app answering with what ``respond()`` returns."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return respond()(environ, start_response)

    return app


class EmulatorApp:
    """Base WSGI app: the control API under ``/_emulator/``, every API call through one pipeline.

    A service sets ``service``, ``error`` (its root ``ServiceError`` class), ``operations``
    and ``self.model`` (whose ``dump()``, ``reset()`` and ``close()`` back the control API),
    and implements ``parse``, ``authenticate``, ``render`` and ``render_error``.
    """

    service: ClassVar[str] = "emulator"
    error: ClassVar[type[ServiceError]] = ServiceError
    operations: ClassVar[Operations[Any]] = Operations()
    # Served from one thread (``LoopbackServer(one_thread=True)``): no operation waits for
    # anything but the CPU and its latency (a long poll would stall every other call).
    one_thread: ClassVar[bool] = False
    model: Any

    def __init__(self, keyring: KeyRing, clock: Clock | None = None) -> None:
        self.keyring = keyring
        self.clock = clock or Clock()
        self.faults = Faults()
        self.calls = CallCounter()
        self.pacing = CallPacing()  # the profile's latency and rate limits; none until set
        # Run in order on every authenticated API call, before its operation; a hook refuses
        # the call by raising a ServiceError (or slows it down by sleeping).
        self.hooks: list[Hook] = [self.authorize, self.throttle, self.inject_fault]
        self.base_url = ""  # set by EmulatorServer once the port is known
        self.server_cpu: CpuMeter | None = None  # its server's meter, set by EmulatorServer
        self.own_process = False  # served alone in its process (local.emulators.serve)
        self.private_url = ""  # served by several processes: this one's own URL
        self.primary = ""  # a worker's: the primary's private URL (it answers control calls)
        self.workers: list[str] = []  # the primary's: its workers' private URLs
        self.faults_at_primary = False  # a worker's: the primary holds fault rules

    # --- what each service provides ------------------------------------------------------
    def parse(self, call: Call) -> None:
        """Set ``call.action`` (a key of ``operations``) and ``call.params`` from the request;
        raise the service's error for a request it cannot route."""
        raise NotImplementedError

    def authenticate(self, call: Call) -> None:
        """Verify the request's signature; set ``call.access_key_id``."""
        raise NotImplementedError

    def render(self, call: Call, result: Any) -> Response:
        """The wire answer for an operation's result."""
        raise NotImplementedError

    def render_error(self, call: Call, error: ServiceError) -> Response:
        """The wire answer for an error (``call.action`` may be empty)."""
        raise NotImplementedError

    def ram_request(self, call: Call) -> RamRequest:
        """The RAM action(s) and resource ARN(s) of ``call``, as the service's RAM
        authorization reference names them (``ecs:InvokeCommand`` on the command and each
        instance, ``oss:GetObject`` for a HeadObject, …)."""
        raise NotImplementedError

    def ram_denied(self, call: Call, decision: Decision) -> ServiceError:
        """The service's own error for a call the caller's RAM policies refuse."""
        raise NotImplementedError

    def finish_call(self, call: Call) -> None:
        """After every API request, answered or refused (OSS drains unread body bytes)."""

    def share(self) -> None:
        """Other processes serve this state too (``local.emulators.serve --processes``)."""
        raise NotImplementedError(f"the {self.service} emulator is served by one process")

    # --- the pipeline --------------------------------------------------------------------
    def begin(self, request: Request) -> StagedCall:
        """The pipeline up to the call's latency: parse, count, authenticate, and draw the
        profile's latency for the action; ``finish()`` does the rest. A call refused before
        (it cannot be routed, its signature is wrong) is answered at once, with no latency."""
        begin = time.thread_time()
        call = Call(request, new_request_id())
        try:
            self.parse(call)
            self.calls.add(call.action)
            self.authenticate(call)
        except (ServiceError, HTTPException) as exc:
            response = self._refusal(call, exc)
            self.finish_call(call)
            self.calls.add_cpu(call.action, time.thread_time() - begin)
            return StagedCall(self, call, 0.0, response)
        except BaseException:
            self.finish_call(call)
            raise
        staged = StagedCall(self, call, self.pacing.latency(call.action))
        staged.cpu = time.thread_time() - begin
        # a fault rule may stall the call (a real sleep) or ask the primary for its rule
        staged.waits = self.faults_at_primary or bool(self.faults.rules)
        return staged

    def _rest(self, call: Call) -> Response:
        """The pipeline after the latency: the hooks, the operation, its rendering."""
        try:
            try:
                self.intercept(call)
                response = self.render(call, self.operations[call.action](self.model, call))
            finally:
                self.finish_call(call)
        except (ServiceError, HTTPException) as exc:
            response = self._refusal(call, exc)
        return response

    def _refusal(self, call: Call, exc: ServiceError | HTTPException) -> Response:
        if isinstance(exc, ServiceError):
            return self.render_error(call, exc)
        # werkzeug could not read the request (a truncated body)
        return self.render_error(call, self.error.from_code(
            "InvalidRequest", exc.description, exc.code or 400))

    def intercept(self, call: Call) -> None:
        """The per-call hook: every hook in ``self.hooks``, in order."""
        for hook in self.hooks:
            hook(call)

    def throttle(self, call: Call) -> None:
        """Over the profile's per-account, per-action rate: the service's throttling error."""
        over = self.pacing.over_limit(call, self.clock.now())
        if over is not None:
            raise self.error.from_code(over.code, over.message, over.status)

    def authorize(self, call: Call) -> None:
        """RAM: a key bound to a role may do only what the role's policies allow. Owners' keys
        and anonymous calls (which the bucket ACL already judged) pass untouched."""
        identity = self.keyring.identity(call.access_key_id)
        if identity is None:
            return
        decision = identity.evaluate(self.ram_request(call))
        if not decision.allowed:
            log.info("%s: RAM refused %s for %s: %s", self.service, call.action, identity.arn,
                     decision.describe())
            raise self.ram_denied(call, decision)

    def inject_fault(self, call: Call) -> None:
        if not self.primary:
            rule = self.faults.take(call.action)
        elif self.faults_at_primary:  # a worker: the rules and their counts are the primary's
            answer = peers.call(self.primary, "take", {"action": call.action})
            self.faults_at_primary = bool(answer.get("more", True))
            rule = None if answer["rule"] is None else FaultRule.from_json(answer["rule"])
        else:
            rule = None
        if rule is None:
            return
        if rule.delay:
            time.sleep(rule.delay)  # a real stall: the client's timeout is what is under test
        if rule.code:
            raise self.error.from_code(rule.code, rule.message or None, rule.status)

    # --- control API ---------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.model.dump()
        return state

    def reset_state(self) -> None:
        self.model.reset()

    def close(self) -> None:
        """Release resources (database handles, worker threads)."""
        self.model.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        staged = self.stage(environ)
        if staged.latency > 0:
            self.pacing.sleep(staged.latency)
        return staged.rest(environ, start_response)

    def stage(self, environ: WSGIEnvironment) -> Staged:
        """The request up to its latency (``local.server.Staged``): a server that waits for
        the latency itself (``LoopbackServer(one_thread=True)``) calls this instead of the
        app. Control calls, which may ask the other processes, run where they may wait."""
        request = Request(environ)
        if request.path.startswith(CONTROL_PREFIX):
            return Staged(0.0, _answering(lambda: self._control(request)), waits=True)
        try:
            call = self.begin(request)
        except Exception:  # an emulator bug must surface as a 500, not a dropped socket
            answer = self._bug(request)
            return Staged(0.0, _answering(lambda: answer))

        def rest() -> Response:
            try:
                return call.finish()
            except Exception:
                return self._bug(request)

        return Staged(call.latency, _answering(rest), call.waits)

    def _bug(self, request: Request) -> Response:
        """The answer to a request the emulator failed on, the failure logged (called in the
        ``except`` block that caught it)."""
        log.exception("%s: unhandled error for %s %s", self.service, request.method,
                      request.path)
        return Response("internal emulator error", status=500)

    def _control(self, request: Request) -> Response:
        name = request.path[len(CONTROL_PREFIX):].strip("/")
        try:
            body = request.get_json(silent=True) or {}
            if name.startswith(peers.PEER):
                return self._peer(name[len(peers.PEER):], request.method, body)
            if self.primary:  # a worker: the primary answers for every process
                return peers.forward(self.primary, request)
            if name == "health":
                return json_response({"service": self.service, "status": "ok",
                                      "profile": self.pacing.profile_name})
            if name == "state" and request.method == "GET":
                return json_response(self.dump_state())
            if name == "reset" and request.method == "POST":
                self.reset_state()
                self.faults.clear()
                self.calls.clear()
                self.pacing.reset()
                self._tell_workers({"reset": True})
                return json_response({"reset": True})
            if name == "faults":
                if request.method == "POST":
                    rules = body if isinstance(body, list) else [body]
                    for item in [FaultRule.from_json(item) for item in rules]:
                        self.faults.add(item)
                elif request.method == "DELETE":
                    self.faults.clear()
                self._tell_workers({"faults": bool(self.faults.listing())})
                return json_response({"faults": self.faults.listing(),
                                      "fired": dict(self.faults.fired)})
            if name == "calls":
                if request.method == "DELETE":
                    self.calls.clear()
                    self._tell_workers({"clear_calls": True})
                return json_response(self._calls_answer(self._ask_workers("calls")))
            if name == "clock" and request.method == "POST":
                seconds = float(body.get("advance", 0))
                self.clock.advance(seconds)
                self._tell_workers({"advance": seconds})
                return json_response({"now": self.clock.now()})
            return self.control_extra(name, request, body)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
        except OSError as exc:  # another process of this emulator did not answer
            log.error("%s: a process of this emulator did not answer: %s", self.service, exc)
            return json_response({"error": f"a process of this emulator did not answer: {exc}"},
                                 status=500)

    def _peer(self, name: str, method: str, body: Any) -> Response:
        """What the processes of one emulator say to each other (never an SDK's call)."""
        if name == "take" and method == "POST" and not self.primary:
            rule = self.faults.take(str(body.get("action", "")))
            return json_response({"rule": None if rule is None else asdict(rule),
                                  "more": bool(self.faults.listing())})
        if name == "sync" and method == "POST" and self.primary:
            if body.get("reset"):
                self.calls.clear()
                self.pacing.reset()
                self.faults_at_primary = False
            if "faults" in body:
                self.faults_at_primary = bool(body["faults"])
            if body.get("clear_calls"):
                self.calls.clear()
            if body.get("advance"):
                self.clock.advance(float(body["advance"]))
            return json_response({"ok": True})
        if name == "calls" and method == "GET":
            return json_response(self._calls_answer())
        return json_response({"error": f"no control endpoint {peers.PEER + name!r}"}, status=404)

    def _tell_workers(self, news: dict[str, Any]) -> None:
        for url in self.workers:
            peers.call(url, "sync", news)

    def _ask_workers(self, name: str) -> list[dict[str, Any]]:
        return [peers.call(url, name) for url in self.workers]

    def _calls_answer(self, others: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """This process's counts and CPU, plus ``others``' (its workers', on a primary)."""
        calls: Counter[str] = Counter(self.calls.snapshot())
        cpu: Counter[str] = Counter(self.calls.cpu_ms())
        for other in others:
            calls.update(other["calls"])
            cpu.update(other["cpu_ms"])
        answer: dict[str, Any] = {
            "calls": dict(calls), "cpu_ms": {a: round(ms, 3) for a, ms in cpu.items()}}
        if self.server_cpu is not None:
            answer["server_cpu"] = {
                "seconds": round(self.server_cpu.seconds
                                 + sum(o["server_cpu"]["seconds"] for o in others), 3),
                "requests": self.server_cpu.requests
                + sum(o["server_cpu"]["requests"] for o in others)}
        if self.own_process:
            times = os.times()  # this process alone, every thread (/proc/self/stat's utime, stime)
            answer["process_cpu_s"] = round(
                times.user + times.system + sum(o["process_cpu_s"] for o in others), 3)
            answer["processes"] = [
                {"pid": os.getpid(), "url": self.private_url,
                 "requests": self.server_cpu.requests if self.server_cpu else 0},
                *(p for o in others for p in o["processes"])]
        return answer

    def control_extra(self, name: str, request: Request, body: Any) -> Response:
        """Service-specific control paths (peek at queues, …); 404 by default."""
        return json_response({"error": f"no control endpoint {name!r}"}, status=404)
