"""An emulator served by a child process of its own (``python -m local.emulators.serve``).

``LocalCloud`` runs the OSS emulator this way: the local cloud's process (the other emulators
and the function host, on threads) and the OSS emulator then each have a GIL of their own, and
a fan-out that stores tens of thousands of objects is no longer bound by one core. For its
users nothing changes: the same ``url`` / ``host`` / ``port``, the same state files (the
child opens the same SQLite database and blob directory), the same ``/_emulator/`` control API
over HTTP.

What the parent must tell the child it tells it through the child's stdin (one JSON line per
command, one answer line on its stdout, ``local.emulators.serve``): the STS keys the function
host binds to the functions' roles. ``attach(keyring)`` makes every ``KeyRing.bind`` wait until
the child has accepted the key too, so no function ever sees its key refused because the news
came late. The secrets go through that pipe only.

``processes`` > 1 serves it from that many processes (``local.emulators.serve --processes``):
the child is the primary, which starts the others on the same socket and forwards each key to
them before it answers.

Lifetime: ``stop()`` closes the pipe, the child stops serving and exits (killed if it has not
within ``STOP_GRACE`` seconds); a parent that dies — ``kill -9`` included — closes the pipe too,
and the child also checks that its parent still lives, so no emulator is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from local.emulators.keyring import KeyRing
from local.emulators.serve import profile_argument
from local.profile import Profile
from local.ram import Identity
from local.server import listening_socket

log = logging.getLogger("assistflow.emulators")

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0  # seconds for the child to answer with its port
ANSWER_TIMEOUT = 30.0  # seconds for the child to accept a key
STOP_GRACE = 5.0  # seconds for the child to exit once its pipe is closed, before a SIGKILL


SHARED_SERVICES = ("oss",)  # emulators that can be served by several processes


def processes_for(service: str, profile: Profile) -> int:
    """How many processes serve ``service``'s emulator: two for the OSS emulator — the store
    a fan-out writes two objects per instance to; one process of Python runs on one core at a
    time — on a machine of two cores or more, unless the profile limits its rate (each
    process would count a window of its own); one for the others."""
    if service not in SHARED_SERVICES or profile.throttling.get(service) is not None:
        return 1
    return min(2, os.cpu_count() or 1)


class EmulatorProcessError(RuntimeError):
    """The child could not start, or stopped answering."""


class EmulatorProcess:
    """``service``'s emulator served by a child process; ``spawn()`` then ``wait_ready()`` (or
    ``start()`` for both). ``url`` and ``port`` are known once ``spawn()`` returns, and calls
    may be made at once: the parent goes on while the child imports."""

    host = "127.0.0.1"

    def __init__(self, service: str, state_dir: Path, *, port: int = 0,
                 region: str = "cn-hangzhou", account_id: str, profile: Profile,
                 processes: int = 1, sock: socket.socket | None = None,
                 worker_of: str = "") -> None:
        """``processes``: how many serve (a primary and its workers); ``sock`` and
        ``worker_of``: a primary's own (``local.emulators.serve``) — start a worker on the
        primary's listening socket, reporting to the primary's private URL."""
        self.service = service
        self.processes = processes
        self._sock = sock
        self.worker_of = worker_of
        self.state_dir = state_dir
        self.requested_port = port
        self.region = region
        self.account_id = account_id
        self.profile = profile
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        # The child's first line (it serves, or why not), then one answer per command; None:
        # the child ended.
        self._started: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()  # one command in flight: answers come in order
        self._keyring: KeyRing | None = None
        self.ready: dict[str, Any] = {}  # the child's first answer, once it serves

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def spawn(self) -> EmulatorProcess:
        """Listen on the port here (so ``url`` is known at once and a port in use fails here,
        as for an emulator served in this process), then start the child on that socket:
        calls made before it serves wait in the socket's backlog."""
        sock = self._sock or listening_socket(self.requested_port)
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        command = [sys.executable, "-m", "local.emulators.serve", self.service,
                   "--state-dir", str(self.state_dir), "--fd", str(sock.fileno()),
                   "--region", self.region, "--account-id", self.account_id,
                   *profile_argument(self.profile),
                   "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]
        if self.worker_of:
            command += ["--worker-of", self.worker_of]
        elif self.processes > 1:
            command += ["--processes", str(self.processes)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env=env, text=True, encoding="utf-8", bufsize=1,
                                          pass_fds=(sock.fileno(),))
        finally:
            if self._sock is None:
                sock.close()  # the child's alone: if it dies, calls are refused, not left waiting
        threading.Thread(target=self._read_answers, args=(self._proc.stdout,), daemon=True,
                         name=f"{self.service}-process-answers").start()
        return self

    def _read_answers(self, stream: IO[str]) -> None:
        into = self._started
        with stream:
            for line in stream:
                try:
                    into.put(json.loads(line))
                except ValueError:
                    log.warning("%s emulator process: an unreadable answer", self.service)
                    into.put({"error": "an unreadable answer"})
                into = self._answers
        self._started.put(None)  # the child ended
        self._answers.put(None)

    def _next_answer(self, timeout: float, doing: str,
                     answers: queue.Queue[dict[str, Any] | None] | None = None) -> dict[str, Any]:
        answers = answers or self._answers
        try:
            answer = answers.get(timeout=timeout)
        except queue.Empty:
            raise EmulatorProcessError(f"{self.service} emulator process: no answer within "
                                       f"{timeout:.0f} s while {doing}") from None
        if answer is None:
            answers.put(None)  # every later wait sees the end too
            code = self._proc.poll() if self._proc else None
            raise EmulatorProcessError(f"{self.service} emulator process ended (exit code "
                                       f"{code}) while {doing}")
        if "error" in answer:
            raise EmulatorProcessError(f"{self.service} emulator process, {doing}: "
                                       f"{answer['error']}")
        return answer

    def wait_ready(self, timeout: float = START_TIMEOUT) -> EmulatorProcess:
        """Returns once the child serves; raises if it could not start."""
        answer = self._next_answer(timeout, "starting", self._started)
        self._started.put(answer)  # a second wait_ready answers at once
        self.ready = answer
        if int(answer["port"]) != self.port:
            raise EmulatorProcessError(f"{self.service} emulator process serves port "
                                       f"{answer['port']}, not {self.port}")
        return self

    def start(self) -> EmulatorProcess:
        return self.spawn().wait_ready()

    def attach(self, keyring: KeyRing) -> None:
        """Accept every key ``keyring`` has bound, and from now on every key it binds."""
        for key, secret, token, identity in keyring.bound():
            self.bind(key, secret, token, identity)
        keyring.listeners.append(self.bind)
        self._keyring = keyring

    def bind(self, access_key_id: str, secret: str, token: str, identity: Identity) -> None:
        """``KeyRing.bind`` in the child; returns once it accepts the key."""
        self.command({"op": "bind", "key": access_key_id, "secret": secret, "token": token,
                      "identity": identity.to_json()}, f"binding {access_key_id}")

    def command(self, message: dict[str, Any], doing: str) -> dict[str, Any]:
        """One command to the child (a line on its stdin); its answer."""
        with self._lock:
            stdin = self._proc.stdin if self._proc else None
            if stdin is None or stdin.closed:
                raise EmulatorProcessError(f"{self.service} emulator process is not running")
            try:
                stdin.write(json.dumps(message) + "\n")
                stdin.flush()
            except OSError:
                raise EmulatorProcessError(f"{self.service} emulator process ended") from None
            # (while the child still imports, this waits for it: it reads commands once it
            # serves)
            return self._next_answer(START_TIMEOUT + ANSWER_TIMEOUT, doing)

    def stop(self) -> None:
        if self._keyring is not None:
            with contextlib.suppress(ValueError):
                self._keyring.listeners.remove(self.bind)
            self._keyring = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with self._lock, contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the child's signal to stop serving and exit
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("%s emulator process %s did not stop within %.0f s: killed",
                        self.service, proc.pid, STOP_GRACE)
            proc.kill()
            proc.wait()
