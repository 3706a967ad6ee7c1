"""Build an emulator app, and serve one in a process of its own.

``build_app`` is the one way an emulator app of the local cloud is made: its state directory,
region and account, and the active profile's latency and rate limits (``CallPacing``, every
local key counted under the one local account). ``LocalCloud`` builds the emulators it serves
in its own process with it, and so does this module's entry point for one served alone::

    python -m local.emulators.serve oss --state-dir DIR --port 0 --region cn-hangzhou \\
        --account-id 1234567890123456 --profile fast [--profile-seed N] [--log-level INFO]

(``--fd N`` instead of ``--port``: serve on a socket the parent already listens on.)

A process of its own has a GIL of its own: the emulator's CPU no longer competes with the
function host's and the other emulators' (``local.emulators.process`` starts it and talks to
it). The child

* loads the owner keys of the state directory (``keys.json``, ``load_or_create_keys``);
* serves on 127.0.0.1:``port`` (0: a free one), or on the inherited socket ``fd``, and
  writes one JSON line to its stdout,
  ``{"port": P, "pid": N}`` (or ``{"error": "..."}`` and exits 1);
* then reads commands, one JSON line each, from its stdin and answers each with one line:
  ``{"op": "bind", "key": ..., "secret": ..., "token": ..., "identity": {...}}`` binds a
  function's STS key to its role (``KeyRing.bind``, ``Identity.from_json``) and answers
  ``{"ok": true}`` once the key is accepted. The pipe is the parent's alone: STS secrets never
  reach a socket, a file or a log;
* with ``--processes N`` (N > 1), serves from N processes on the one socket: this one, the
  primary, starts N - 1 workers (``--worker-of``: this module again, ``EmulatorProcess``) on its
  socket before it serves, and forwards each command to them before it answers; every process
  opens the same state and ``share()``s it. Each also serves a private port of its own, where
  the processes talk (``local.emulators.base``, ``peers``: a worker hands every control call
  to the primary, the primary tells the workers what changed). A worker writes
  ``{"port": P, "pid": N, "private": URL}``;
* stops serving and exits when its stdin ends — the parent closed it (``stop()``) or died,
  ``kill -9`` included — or when its parent process is no longer its parent. Ctrl-C in a
  terminal reaches the whole process group: the child ignores SIGINT and waits for its parent
  to close the pipe, so nothing it serves goes away under a cloud that is still stopping.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from local.emulators.profile_hooks import CallPacing
from local.profile import Profile

if TYPE_CHECKING:
    from local.emulators.base import EmulatorApp, KeyRing

log = logging.getLogger("assistflow.emulators.serve")

# service -> "module:class" of its app; imported on use, so a child imports only its own.
APPS = {
    "ecs": "local.emulators.ecs:EcsApp",
    "mns": "local.emulators.mns:MnsApp",
    "oss": "local.emulators.oss:OssApp",
}
PARENT_POLL = 1.0  # seconds between two checks that the parent still lives


def build_app(service: str, keyring: KeyRing, state_dir: Path, *, region: str,
              account_id: str, profile: Profile) -> EmulatorApp:
    """The ``service`` emulator on ``state_dir``, paced by ``profile``."""
    module, _, name = APPS[service].partition(":")
    cls = getattr(importlib.import_module(module), name)
    app: EmulatorApp = cls(keyring, state_dir, region=region, account_id=account_id)
    # Every local key belongs to the one local account: ECS counts its rates per account.
    app.pacing = CallPacing(profile, app.service, account_of=lambda _key: account_id)
    return app


def profile_argument(profile: Profile) -> list[str]:
    """The command-line arguments that make the child load the same ``profile``."""
    spec = str(profile.source) if profile.source else profile.name
    seed = [] if profile.seed is None else ["--profile-seed", str(profile.seed)]
    return ["--profile", spec, *seed]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.emulators.serve",
                                     description="Serve one emulator of the local cloud.")
    parser.add_argument("service", choices=sorted(APPS))
    parser.add_argument("--state-dir", required=True, type=Path)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=0, help="127.0.0.1's port (0: a free one)")
    where.add_argument("--fd", type=int, default=None,
                       help="a socket already listening, inherited from the parent")
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument("--account-id", required=True)
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--profile-seed", type=int, default=None)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--processes", type=int, default=1,
                        help="serve from this many processes (a primary and its workers)")
    parser.add_argument("--worker-of", default="",
                        help="serve as a worker of the primary at this private URL")
    return parser


def _answer(out: TextIO, data: dict[str, Any]) -> None:
    out.write(json.dumps(data) + "\n")
    out.flush()


def _command(keyring: KeyRing, line: str) -> dict[str, Any]:
    from local.ram import Identity

    try:
        message = json.loads(line)
        if message.get("op") != "bind":
            return {"error": f"unknown op {message.get('op')!r}"}
        keyring.bind(str(message["key"]), str(message["secret"]), str(message["token"]),
                     Identity.from_json(message["identity"]))
        return {"ok": True}
    except (ValueError, KeyError, TypeError) as exc:  # never echo the line: it holds secrets
        return {"error": f"{type(exc).__name__}: {exc}"}


def _watch_parent(parent: int) -> None:
    """Exit once ``parent`` is no longer this process's parent (it died; we were adopted)."""
    while os.getppid() == parent:
        threading.Event().wait(PARENT_POLL)
    os._exit(0)  # nothing to save: every write went to SQLite already


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("werkzeug", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    # Answers go to the real stdout alone; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True,
                     name="parent-watch").start()
    from local.emulators.server import EmulatorServer
    from local.server import LoopbackServer, listening_socket
    from local.state import load_or_create_keys

    several = args.processes > 1 or bool(args.worker_of)
    workers: list[Any] = []
    server = private = None
    try:
        keyring = load_or_create_keys(args.state_dir).keyring()
        profile = Profile.load(args.profile, args.profile_seed)
        app = build_app(args.service, keyring, args.state_dir, region=args.region,
                        account_id=args.account_id, profile=profile)
        app.own_process = True
        fd = args.fd
        if several:
            app.share()
            private = LoopbackServer(app, 0, f"{args.service}-private",
                                     one_thread=app.one_thread)
            private.start()
            app.private_url = private.url
            app.primary = args.worker_of
            if not args.worker_of:
                if fd is None:  # the workers need a socket to share: this one's
                    fd = listening_socket(args.port).detach()
                workers = _start_workers(args, profile, fd, private.url)
                app.workers = [str(w.ready["private"]) for w in workers]
        server = EmulatorServer(app, args.port, fd=fd).start()
        if fd is not None:
            os.close(fd)  # the server has its own duplicate
    except Exception as exc:
        _stop(server, private, workers)
        _answer(out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    ready: dict[str, Any] = {"port": server.port, "pid": os.getpid()}
    if private is not None:
        ready["private"] = private.url
    _answer(out, ready)
    try:
        for line in sys.stdin:
            _answer(out, _forwarded(workers, line) or _command(keyring, line))
    finally:
        _stop(server, private, workers)
    return 0


def _start_workers(args: argparse.Namespace, profile: Profile, fd: int,
                   private_url: str) -> list[Any]:
    """The other ``args.processes - 1`` processes, serving socket ``fd``; each draws its own
    latencies (a seeded profile: seed + its number)."""
    import socket

    from local.emulators.process import EmulatorProcess

    sock = socket.socket(fileno=os.dup(fd))
    workers = []
    try:
        for number in range(1, args.processes):
            seeded = profile.with_seed(None if profile.seed is None else profile.seed + number)
            workers.append(EmulatorProcess(
                args.service, args.state_dir, region=args.region, account_id=args.account_id,
                profile=seeded, sock=sock, worker_of=private_url).spawn())
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    finally:
        sock.close()
    return workers


def _forwarded(workers: list[Any], line: str) -> dict[str, Any] | None:
    """A command for every worker first; the first refusal, or None when all took it."""
    from local.emulators.process import EmulatorProcessError

    for worker in workers:
        try:
            worker.command(json.loads(line), "forwarding a command")
        except (EmulatorProcessError, ValueError) as exc:
            return {"error": f"worker {worker.pid}: {exc}"}
    return None


def _stop(server: Any, private: Any, workers: list[Any]) -> None:
    for serving in (server, private):
        if serving is not None:
            serving.stop()
    for worker in workers:
        worker.stop()


if __name__ == "__main__":
    sys.exit(main())
