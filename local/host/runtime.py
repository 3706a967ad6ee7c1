"""Function instances as FC runs them: separate processes, one request at a time each.

A ``FunctionRuntime`` keeps up to ``max_instances`` worker processes for one function, starts
them on demand (a cold start), reuses idle ones (warm starts) and enforces the function's
``Timeout`` by killing the instance — the invocation fails with ``FunctionTimeout``, the host
and the other instances go on. Every invocation's duration is recorded: it is what FC would
bill, and what the benchmarks read. ``platform_delay`` (the profile's ``cold_start``) is FC's
own time to get a new instance ready: waited before the instance starts, so it delays the
invocation that caused the cold start but is not billed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("assistflow.host")

REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables a function instance inherits from the host; everything else comes from the template
# and FC's system variables (the developer's own ALIYUN_* keys must never leak into a function).
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    code_dir: Path
    timeout: int
    memory: int
    environment: dict[str, str]
    runtime: str = "python3.10"


@dataclass
class Invocation:
    """The outcome of one invocation."""

    request_id: str
    function: str
    ok: bool
    duration_ms: float
    result: Any = None  # the handler's return value (dict/list/str/bytes)
    error: dict[str, Any] | None = None
    cold: bool = False
    started_at: float = field(default_factory=time.time)


class WorkerDiedError(Exception):
    pass


class InstanceGoneError(WorkerDiedError):
    """The instance was dead before the request reached it: safe to run it elsewhere."""


class _Instance:
    """One worker process and the pipes to it."""

    _ids = itertools.count(1)

    def __init__(self, spec: FunctionSpec, env: dict[str, str], label: str = "") -> None:
        self.spec = spec
        self.number = next(self._ids)
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        env = {**env, "ASSISTFLOW_WORKER_IN": str(to_worker_r),
               "ASSISTFLOW_WORKER_OUT": str(from_worker_w),
               "FC_INSTANCE_ID": f"local-{spec.name}-{self.number}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.host.worker"], cwd=spec.code_dir, env=env,
            pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._to: IO[bytes] = os.fdopen(to_worker_w, "wb")
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._read_replies, args=(os.fdopen(from_worker_r, "rb"),),
                             daemon=True, name=f"{label}fn-{spec.name}-{self.number}-replies"),
            threading.Thread(target=self._pump_logs, daemon=True,
                             name=f"{label}fn-{spec.name}-{self.number}-logs"),
        ]
        for thread in self._threads:
            thread.start()
        try:
            ready = self._next_reply(START_TIMEOUT)
        except (TimeoutError, WorkerDiedError):
            self.kill()  # an instance that never became ready must not outlive the attempt
            raise
        self.import_ms = float(ready.get("import_ms", 0.0))

    def _read_replies(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._replies.put(json.loads(line))
        self._replies.put(None)  # EOF: the process is gone

    def _pump_logs(self) -> None:
        assert self.proc.stdout is not None
        fn_log = logging.getLogger(f"assistflow.fn.{self.spec.name}")
        for raw in self.proc.stdout:
            fn_log.info("%s", raw.decode("utf-8", errors="replace").rstrip())

    def _next_reply(self, timeout: float) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if reply is None:
            raise WorkerDiedError(f"instance exited with code {self.proc.wait()}")
        return reply

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            self._to.write(json.dumps(request).encode() + b"\n")
            self._to.flush()
        except (BrokenPipeError, ValueError):
            raise InstanceGoneError("instance is gone") from None
        return self._next_reply(timeout)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # kill -9 does not block
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self._to.close()
        # The pipes reach EOF once the process is gone, which ends both threads; the timeout
        # only matters if a grandchild the function started still holds its stdout.
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=1)


class FunctionRuntime:
    """All instances of one function."""

    def __init__(self, spec: FunctionSpec, system_env: dict[str, str], max_instances: int = 4,
                 record: Path | None = None, label: str = "",
                 platform_delay: Callable[[], float] | None = None) -> None:
        self.spec = spec
        self.max_instances = max_instances
        self._platform_delay = platform_delay or (lambda: 0.0)
        self._closing = threading.Event()
        self.label = label  # prefix of this runtime's thread names (tells hosts apart)
        self._env = self._environment(spec, system_env)
        self._slots = threading.BoundedSemaphore(max_instances)
        self._idle: list[_Instance] = []
        self._all: list[_Instance] = []
        self._lock = threading.Lock()
        self._record = record
        self._record_lock = threading.Lock()
        self._record_file: IO[str] | None = None  # opened on the first record, kept open
        self._closed = False
        self.invocations = 0
        self.billed_ms = 0.0

    @staticmethod
    def _environment(spec: FunctionSpec, system_env: dict[str, str]) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env["PYTHONPATH"] = str(REPO_ROOT)  # on FC, shared/ is packaged beside index.py
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # stdout is a pipe here, so Python would block-buffer the function's prints and they
        # would show up long after the invocation that made them.
        env["PYTHONUNBUFFERED"] = "1"
        env.update(spec.environment)
        env.update(system_env)
        env.update({
            "FC_FUNCTION_NAME": spec.name,
            "FC_FUNCTION_HANDLER": spec.handler,
            "FC_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "FC_TIMEOUT": str(spec.timeout),
            "FC_RUNTIME": spec.runtime,
            "FC_FUNC_CODE_PATH": str(spec.code_dir),
        })
        # The version variable changed name with the runtime's Debian release: FC_VER_ID up
        # to Debian 10, FC_FUNCTION_VERSION from Debian 11 (python3.12) on ("Environment
        # variables",
        # https://www.alibabacloud.com/help/en/functioncompute/fc/environment-variables).
        # The local host only runs the unpublished version.
        version_var = "FC_FUNCTION_VERSION" if spec.runtime == "python3.12" else "FC_VER_ID"
        env[version_var] = "LATEST"
        return env

    def invoke(self, event: bytes, request_id: str | None = None) -> Invocation:
        """Run one invocation and wait for its outcome (a failure is an outcome, not a raise)."""
        request_id = request_id or f"1-{uuid.uuid4()}"
        with self._slots:
            cold = False
            with self._lock:
                if self._closed:
                    return self._stopped(request_id)
                instance = self._idle.pop() if self._idle else None
                while instance is not None and not instance.alive:
                    # an idle instance that died (killed, OOM) is replaced, as FC does
                    if instance in self._all:
                        self._all.remove(instance)
                    instance = self._idle.pop() if self._idle else None
            started = time.perf_counter()
            try:
                if instance is None:
                    cold, instance = True, self._new_instance()
                    if instance is None:
                        return self._stopped(request_id)
                request = {"id": request_id, "request_id": request_id,
                           "event": base64.b64encode(event).decode()}
                try:
                    reply = instance.call(request, timeout=self.spec.timeout)
                except InstanceGoneError:  # died idle, before our request: use a new one
                    self._discard(instance)
                    cold, instance = True, self._new_instance()
                    if instance is None:
                        return self._stopped(request_id)
                    reply = instance.call(request, timeout=self.spec.timeout)
            except TimeoutError:
                self._discard(instance)
                elapsed = (time.perf_counter() - started) * 1000
                return self._done(Invocation(
                    request_id, self.spec.name, False, elapsed, cold=cold,
                    error={"errorType": "FunctionTimeout",
                           "errorMessage": f"Function timed out after {self.spec.timeout} "
                                           "seconds"}))
            except WorkerDiedError as exc:
                self._discard(instance)
                elapsed = (time.perf_counter() - started) * 1000
                return self._done(Invocation(
                    request_id, self.spec.name, False, elapsed, cold=cold,
                    error={"errorType": "InstanceCrashed", "errorMessage": str(exc)}))
            with self._lock:
                closed = self._closed
                if not closed:
                    self._idle.append(instance)
            if closed:  # close() emptied the lists while this call ran; do not leak it
                instance.kill()
        result = reply.get("result")
        return self._done(Invocation(
            request_id, self.spec.name, bool(reply["ok"]), float(reply["duration_ms"]),
            result=_decode_result(result) if result else None, error=reply.get("error"),
            cold=cold))

    def _stopped(self, request_id: str) -> Invocation:
        # Not recorded: nothing ran, so nothing would be billed.
        return Invocation(request_id, self.spec.name, False, 0.0,
                          error={"errorType": "HostStopped",
                                 "errorMessage": "the function host is stopping"})

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def environment(self) -> dict[str, str]:
        """The environment an instance of this function gets (template + FC system variables)."""
        return dict(self._env)

    def _new_instance(self) -> _Instance | None:
        """A freshly started instance (a cold start), or None if close() ran meanwhile."""
        pause = self._platform_delay()
        if pause > 0 and self._closing.wait(pause):
            return None
        instance = _Instance(self.spec, self._env, self.label)
        with self._lock:
            closed = self._closed
            if not closed:
                self._all.append(instance)
        if closed:
            instance.kill()
            return None
        return instance

    def _discard(self, instance: _Instance | None) -> None:
        if instance is None:
            return
        instance.kill()
        with self._lock:
            if instance in self._all:
                self._all.remove(instance)

    def _done(self, inv: Invocation) -> Invocation:
        with self._record_lock:
            self.invocations += 1
            self.billed_ms += inv.duration_ms
            if self._record is not None:
                line = json.dumps({
                    "function": inv.function, "request_id": inv.request_id, "ok": inv.ok,
                    "duration_ms": round(inv.duration_ms, 3), "cold": inv.cold,
                    "at": round(inv.started_at, 3),
                    "error": (inv.error or {}).get("errorType"),
                }) + "\n"
                if self._closed:  # an invocation that ended while the host stopped
                    with open(self._record, "a") as fh:
                        fh.write(line)
                else:
                    # Kept open: opening and closing the file per invocation cost more than
                    # the record. Each line is flushed at once, so a killed host loses none.
                    if self._record_file is None:
                        self._record_file = open(self._record, "a")  # noqa: SIM115 (close())
                    self._record_file.write(line)
                    self._record_file.flush()
        level = logging.INFO if inv.ok else logging.WARNING
        log.log(level, "%s %s %s in %.1f ms%s", inv.function, inv.request_id,
                "ok" if inv.ok else f"FAILED ({(inv.error or {}).get('errorType')})",
                inv.duration_ms, " (cold)" if inv.cold else "")
        return inv

    def pids(self) -> list[int]:
        with self._lock:
            return [i.proc.pid for i in self._all if i.alive]

    def close(self) -> None:
        """Kill every instance; invocations in flight fail, later ones are refused."""
        self._closing.set()
        with self._lock:
            self._closed = True
            instances, self._all, self._idle = list(self._all), [], []
        for instance in instances:
            instance.kill()
        with self._record_lock:
            if self._record_file is not None:
                self._record_file.close()
                self._record_file = None


def _decode_result(result: dict[str, Any]) -> Any:
    if result["kind"] == "bytes":
        return base64.b64decode(result["value"])
    return result["value"]
