"""Where a process instance's script runs: an instance root it cannot leave.

A real instance's script sees its own disk as ``/`` and nothing of the machine the emulator
runs on. Locally, each instance has a directory that plays its ``/`` (``Agent.sandbox``), and
a script must not reach past it — not the local cloud's state directory (``endpoints.json``
and ``keys.json`` hold the webhook secret and the access keys), not the checkout, not the
user's home. Two ways to run it, chosen once per process (``ASSISTFLOW_SANDBOX``: ``auto``,
the default, ``namespaces`` or ``none``):

* ``namespaces`` (Linux, when ``unshare`` from util-linux can create a user namespace here —
  as root, or as a user where unprivileged user namespaces are allowed): ``sandbox_init.py``
  makes the instance root ``/`` of a new mount namespace (``pivot_root``; the host's tree is
  detached), with the system directories and a few ``/etc`` files read-only, its own ``/dev``,
  ``/proc`` (a new PID namespace: only the run's own processes), ``/tmp`` and ``/run``. The
  script runs with no capabilities, as the request's ``Username``: the emulator's user is
  mapped to that account's uid and gid in a new user namespace (``root``, the default, is uid
  0 there: root over the instance root, nothing outside it), with its own System V IPC. The
  network and the hostname are the host's: a script reaches what listens on the host's
  loopback, the local cloud's own ports included (their ``/_emulator/`` control API takes no
  key), as it reaches the Internet.
* ``none`` (elsewhere, or when the probe fails; logged once, as a warning): ``/bin/sh`` runs as
  the emulator's user with the instance root as its working directory and nothing else
  isolated — the script can read whatever that user can, the state directory included.

In both, ``WorkingDir`` is resolved inside the instance root as the kernel would resolve it
for a process whose root is that directory (``..`` stops at ``/``; a symlink's absolute
target starts from the instance root): ``/../../..`` is the instance's ``/``, and a directory
that does not exist there is Cloud Assistant's ``DirectoryNotExists``. An unknown
``Username`` is ``AccountNotExists`` (accounts are the host's ``/etc/passwd``, which the
sandbox shows read-only); with ``none`` a known one still runs as the emulator's user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

log = logging.getLogger(__name__)

INIT = Path(__file__).with_name("sandbox_init.py")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MODES = ("auto", "namespaces", "none")


class SandboxError(Exception):
    """Cloud Assistant's per-instance refusal of a run: ``code`` and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_in_root(root: Path, path: str) -> Path | None:
    """The host path of directory ``path`` as a process whose ``/`` is ``root`` would find it
    (``..`` never above ``root``, absolute symlinks from ``root``); None if it is not a
    directory there."""
    parts = [p for p in PurePosixPath("/" + path).parts[1:]]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        if here.is_symlink():
            hops += 1
            if hops > 40:  # ELOOP
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
            continue
        if not here.is_dir():
            return None
        done.append(part)
    return root.joinpath(*done)


@dataclass(frozen=True)
class Account:
    """Whom the script runs as: the request's ``Username`` (default root)."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def named(cls, username: str) -> Account:
        name = username or "root"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if name == "root":
                return cls("root", 0, 0, "/root")
            raise SandboxError("AccountNotExists",
                               f"the user {name} does not exist on the instance") from None
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/")


class Run:
    """A started script: wait for its exit code, or kill it (per ``TerminationMode``)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def wait(self, timeout: float) -> int:
        """The script's exit code; ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        return self.proc.wait(timeout=timeout)

    def kill(self, termination_mode: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            if termination_mode == "Process":
                os.kill(self.proc.pid, signal.SIGKILL)
            else:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def reap(self) -> int:
        """The exit code once killed."""
        return self.proc.wait()

    def close(self) -> bool:
        """Done with the run; True if what the script started still runs (a namespace lives
        on until its last process ends, as on an instance)."""
        return False


class NamespaceRun(Run):
    """``unshare`` → ``sandbox_init.py`` (PID 1) → the script; the init reports on a pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], status: int) -> None:
        super().__init__(proc)
        self._status = os.fdopen(status, "rb", buffering=0)
        self._buffer = b""
        self._killed = False
        self.init_pid = 0  # the init's PID on the host, once it said so

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if line is None:  # the init ended before the script's exit was reported
                code = self.proc.wait()
                if self._killed:
                    return code
                raise SandboxError("ExecutionException",
                                   f"the sandbox ended unexpectedly (code {code})")
            word, _, rest = line.partition(" ")
            if word == "pid":
                self.init_pid = int(rest)
            elif word == "exit":
                return int(rest)
            elif word == "error":
                what, _, detail = rest.partition(" ")
                raise SandboxError("DirectoryNotExists" if what == "cwd" else
                                   "ExecutionException", f"the sandbox failed: {detail}")
            elif word == "missing":
                log.debug("sandbox without %s", rest)

    def _line(self, deadline: float) -> str | None:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._status], [], [], left)[0]:
                raise subprocess.TimeoutExpired("sandbox", 0)
            chunk = self._status.read(4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def kill(self, termination_mode: str) -> None:
        self._killed = True
        if self.proc.poll() is not None:
            return  # unshare outlives everything in its namespace: nothing is left to kill
        if termination_mode == "Process" and self.init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGUSR1)  # the init kills the script alone
            return
        super().kill("ProcessTree")  # the init (PID 1) goes: so does all in the namespace

    def reap(self) -> int:
        try:
            return self.wait(timeout=10)  # the script's exit, as the init reports it
        except subprocess.TimeoutExpired:
            super().kill("ProcessTree")
            return self.proc.wait()

    def close(self) -> bool:
        self._status.close()
        return self.proc.poll() is None


@dataclass(frozen=True)
class Prepared:
    """A run that may start: its working directory (host path) and account."""

    cwd: Path
    account: Account


class Sandbox:
    """Starts scripts in the instance roots, the chosen way (see the module docstring)."""

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode or os.environ.get("ASSISTFLOW_SANDBOX", "auto") or "auto"
        if self.mode not in MODES:
            raise ValueError(f"ASSISTFLOW_SANDBOX is {self.mode!r}; use one of {MODES}")
        self._tools: dict[str, str] = {}
        self._probed = threading.Lock()
        self._isolated: bool | None = None

    @staticmethod
    def prepare(root: Path, working_dir: str, username: str) -> Prepared:
        """What Cloud Assistant checks on the instance before a run: ``SandboxError`` with
        ``DirectoryNotExists`` or ``AccountNotExists``."""
        cwd = resolve_in_root(root, working_dir)
        if cwd is None:
            raise SandboxError("DirectoryNotExists",
                               f"the working directory {working_dir} does not exist")
        return Prepared(cwd, Account.named(username))

    def start(self, run: Prepared, root: Path, agent_dir: Path, instance_id: str,
              out: IO[bytes]) -> Run:
        """Run ``agent_dir/script.sh`` in the instance ``root``, its output (stdout and
        stderr) to ``out``."""
        if not self.isolated(root.parent.parent):
            return Run(subprocess.Popen(
                ["/bin/sh", str(agent_dir / "script.sh")], cwd=run.cwd, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=_env(instance_id, str(root / "root"), os.environ.get("USER", "root"),
                         str(root), os.environ.get("PATH", PATH))))
        inside = run.cwd.relative_to(root).as_posix()
        account = run.account
        return self._namespace(root, agent_dir, "/" if inside == "." else "/" + inside, account,
                               _env(instance_id, account.home, account.name, "/", PATH), out)

    def _namespace(self, root: Path, agent_dir: Path, workdir: str, account: Account,
                   env: dict[str, str], out: IO[bytes]) -> NamespaceRun:
        read, write = os.pipe()
        spec = {"root": str(root), "agent_dir": str(agent_dir), "workdir": workdir,
                "status_fd": str(write), "setpriv": self._tools["setpriv"],
                "pivot_root": self._tools["pivot_root"],
                **{f"env:{name}": value for name, value in env.items()}}
        maps = ["--map-root-user"] if account.uid == 0 else [
            f"--map-user={account.uid}", f"--map-group={account.gid}", "--keep-caps"]
        try:
            proc = subprocess.Popen(
                [self._tools["unshare"], "--user", *maps, "--mount", "--pid", "--ipc", "--fork",
                 "--kill-child", "--", sys.executable, "-I", "-S", str(INIT)],
                cwd="/", stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                start_new_session=True, pass_fds=(write,), env={"PATH": PATH, "LANG": "C"})
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        assert proc.stdin is not None
        # the spec (host paths) on stdin, not in argv where the script could read it
        with proc.stdin, contextlib.suppress(BrokenPipeError):
            proc.stdin.write("\0".join(f"{k}={v}" for k, v in spec.items()).encode())
        return NamespaceRun(proc, read)

    def isolated(self, scratch: Path) -> bool:
        """Whether scripts run in namespaces here (probed once, by running one)."""
        with self._probed:
            if self._isolated is None:
                self._isolated = self._probe(scratch)
            return self._isolated

    def _probe(self, scratch: Path) -> bool:
        if self.mode == "none":
            log.warning("ASSISTFLOW_SANDBOX=none: %s", NOT_ISOLATED)
            return False
        why = self._try(scratch)
        if why and self.mode == "namespaces":
            raise RuntimeError(f"ASSISTFLOW_SANDBOX=namespaces, but {why}")
        if why:
            log.warning("scripts are not sandboxed (%s): %s", why, NOT_ISOLATED)
        return not why

    def _try(self, scratch: Path) -> str:
        """'' if a script runs in the namespaces here; else why not."""
        if not sys.platform.startswith("linux"):
            return "Linux namespaces are needed"
        for tool in ("unshare", "setpriv", "pivot_root"):
            found = shutil.which(tool, path=PATH)
            if not found:
                return f"util-linux's {tool} is not installed"
            self._tools[tool] = found
        probe = scratch / ".sandbox-probe"
        shutil.rmtree(probe, ignore_errors=True)
        (probe / "fs").mkdir(parents=True)
        (probe / "agent").mkdir()
        # inside: the system's files are there, the host's tree (the probe's own) is not
        (probe / "agent" / "script.sh").write_text(
            f"test -r /etc/passwd && test ! -e '{probe}/agent'\n")
        run: Run | None = None
        try:
            with open(probe / "output", "wb") as out:
                run = self._namespace(probe / "fs", probe / "agent", "/", Account.named(""),
                                      _env("probe", "/root", "root", "/", PATH), out)
                code = run.wait(timeout=20)
        except (OSError, SandboxError, subprocess.TimeoutExpired) as exc:
            return f"the namespace probe failed: {exc}"
        finally:
            if run is not None:
                run.kill("ProcessTree")
                run.reap()
                run.close()
            output = (probe / "output").read_bytes() if (probe / "output").exists() else b""
            shutil.rmtree(probe, ignore_errors=True)
        if code != 0:
            detail = output.decode(errors="replace").strip()[:200]
            return f"the namespace probe exited {code}" + (f": {detail}" if detail else "")
        return ""


NOT_ISOLATED = ("each script runs as this user with the instance root as its working directory "
                "only; it can read everything this user can, the state directory's "
                "endpoints.json and keys.json included")


def _env(instance_id: str, home: str, user: str, root: str, path: str) -> dict[str, str]:
    return {"PATH": path, "HOME": home, "LANG": os.environ.get("LANG", "C.UTF-8"),
            "USER": user, "LOGNAME": user, "ASSISTFLOW_INSTANCE_ID": instance_id,
            "ASSISTFLOW_INSTANCE_ROOT": root}
