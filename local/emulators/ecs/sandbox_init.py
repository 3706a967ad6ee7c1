"""The first process of a sandboxed run: builds the instance's filesystem and runs the script.

``sandbox.py`` starts it as ``unshare --user --mount --pid --fork … python -I -S <this file>``
with its spec on stdin (``name=value`` records separated by NUL; ``env:NAME=value`` for the
script's environment): it is PID 1 of a new PID namespace, root (with every capability) of a new user
namespace whose only mapped id is the emulator's user, in a private copy of the mount table.
It uses the standard library only (``-I -S``: no site, no project imports), and only its
cheapest modules (not ``typing``, ``json``, ``signal``: 30 ms more): it starts for every run.

1. It reports its PID as the host sees it (``pid N``; the host's ``/proc`` is still mounted).
2. It bind-mounts the instance root onto itself and, inside it, the host's system directories
   read-only (``/usr``, ``/bin``, ``/lib*``, ``/sbin``, or the same symlinks where the host has
   merged them into ``/usr``), a few files of ``/etc`` read-only (``ETC``: accounts, name
   resolution, the dynamic linker cache, time zone, certificates; not ``shadow``, ``ssh``,
   ``sudoers``), a fresh ``/dev`` (``null``, ``zero``, ``full``, ``random``, ``urandom``,
   ``tty``, ``shm``), a fresh ``/proc`` of the new PID namespace, a ``/run`` tmpfs, and the
   run's agent directory (holding ``script.sh``) read-only at ``/run/assistflow-agent``.
3. ``pivot_root`` makes the instance root ``/`` and detaches the host's tree: nothing else of
   the host — the state directory, the checkout, the user's home — is reachable any more.
4. It forks the script: ``cd`` to the ``WorkingDir`` (``error cwd`` if it does not exist),
   then ``setpriv`` drops every capability (bounding, inheritable and ambient sets, no new
   privileges) before ``/bin/sh`` runs the script as the mapped user.
5. It reports the script's exit (``exit N``, negative for a signal) and reaps what the script
   left running until nothing is left, as PID 1 does; ``SIGUSR1`` kills the script alone
   (``TerminationMode=Process``).

Any failure before the script runs is reported as ``error <what> <detail>``.
"""

from __future__ import annotations

import _signal as signal  # the C module: ``signal`` would import enum (a few ms per run)
import ctypes
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
# statvfs flags a read-only remount must keep (the kernel refuses to clear locked ones)
KEEP = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
        (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
        (os.ST_RELATIME, MS_RELATIME))

SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC = ("passwd", "group", "hosts", "hostname", "resolv.conf", "nsswitch.conf", "host.conf",
       "gai.conf", "services", "protocols", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
       "localtime", "timezone", "alternatives", "ssl", "ca-certificates",
       "ca-certificates.conf", "os-release", "lsb-release", "debian_version", "shells",
       "profile", "environment", "inputrc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
AGENT = "/run/assistflow-agent"

libc = ctypes.CDLL(None, use_errno=True)
SPEC: dict[str, str] = {}  # root, agent_dir, workdir, status_fd, setpriv, pivot_root
ENV: dict[str, str] = {}  # the script's environment
SCRIPT = {"pid": 0, "stop": 0}  # the script's PID once forked; a stop asked for early


class SetupError(Exception):
    pass


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                  flags, data and data.encode()) != 0:
        err = ctypes.get_errno()
        raise SetupError(f"mount {source or fstype} on {target}: {os.strerror(err)}")


def bind(source: str, target: str, read_only: bool) -> None:
    mount(source, target, None, MS_BIND)
    if read_only:
        locked = os.statvfs(source).f_flag
        extra = sum(ms for st, ms in KEEP if locked & st)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | extra)


def placeholder(path: str, directory: bool) -> bool:
    """A mount point of the right kind at ``path`` (False if something else is there)."""
    if os.path.islink(path):
        return False
    if directory:
        os.makedirs(path, exist_ok=True)
        return os.path.isdir(path)
    if not os.path.exists(path):
        open(path, "a").close()
    return os.path.isfile(path)


def build(root: str, agent_dir: str) -> list[str]:
    """Steps 2 and 3 of the module docstring; returns what could not be provided."""
    missing: list[str] = []
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    bind(root, root, False)
    for name in SYSTEM:
        host, inside = "/" + name, os.path.join(root, name)
        if os.path.islink(host):
            if not os.path.lexists(inside):
                os.symlink(os.readlink(host), inside)
        elif os.path.isdir(host) and placeholder(inside, True):
            bind(host, inside, True)
    etc = os.path.join(root, "etc")
    os.makedirs(etc, exist_ok=True)
    for name in ETC:
        host = "/etc/" + name
        if os.path.exists(host) and placeholder(os.path.join(etc, name), os.path.isdir(host)):
            bind(host, os.path.join(etc, name), True)
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755")
    for name in DEVICES:
        if os.path.exists("/dev/" + name) and placeholder(os.path.join(dev, name), False):
            bind("/dev/" + name, os.path.join(dev, name), False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "shm"))
    mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    try:
        mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SetupError:  # a container that masks parts of its /proc refuses a new one
        missing.append("proc")
    run = os.path.join(root, "run")
    os.makedirs(run, exist_ok=True)
    mount("tmpfs", run, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    os.mkdir(run + "/assistflow-agent")
    bind(agent_dir, run + "/assistflow-agent", True)
    os.chdir(root)
    pivot(".")
    if libc.umount2(b".", MNT_DETACH) != 0:
        raise SetupError(f"detach the host's tree: {os.strerror(ctypes.get_errno())}")
    os.chdir("/")
    return missing


def pivot(new_root: str) -> None:
    """pivot_root(".", ".") through util-linux's ``pivot_root`` (glibc has no wrapper)."""
    child = os.fork()
    if child == 0:
        try:
            os.execv(SPEC["pivot_root"], ["pivot_root", new_root, new_root])
        finally:
            os._exit(127)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SetupError("pivot_root failed")


def start_script(status_fd: int) -> int:
    """Fork the script (step 4); its PID."""
    child = os.fork()
    if child:
        return child
    try:
        os.chdir(SPEC["workdir"])
    except OSError:
        os.write(status_fd, b"error cwd the working directory does not exist\n")
        os._exit(126)
    os.close(status_fd)
    null = os.open("/dev/null", os.O_RDONLY)  # stdin was the spec's pipe
    os.dup2(null, 0)
    os.close(null)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        os.execve(SPEC["setpriv"], ["setpriv", "--no-new-privs", "--inh-caps=-all",
                                    "--ambient-caps=-all", "--bounding-set=-all", "--",
                                    "/bin/sh", AGENT + "/script.sh"], ENV)
    finally:
        os._exit(127)


def stop(*_: object) -> None:
    """SIGUSR1: kill the script alone (its children stay, reparented to this process)."""
    SCRIPT["stop"] = 1
    if SCRIPT["pid"]:
        os.kill(SCRIPT["pid"], signal.SIGKILL)


def main() -> int:
    status_fd = int(SPEC["status_fd"])

    def report(line: str) -> None:
        os.write(status_fd, (line + "\n").encode())

    signal.signal(signal.SIGUSR1, stop)
    report(f"pid {os.readlink('/proc/self')}")
    try:
        missing = build(SPEC["root"], SPEC["agent_dir"])
    except (SetupError, OSError) as exc:
        report(f"error setup {exc}")
        return 1
    if missing:
        report("missing " + " ".join(missing))
    SCRIPT["pid"] = script = start_script(status_fd)
    if SCRIPT["stop"]:
        stop()
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == script:
            report(f"exit {os.waitstatus_to_exitcode(status)}")
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def read_spec(data: bytes) -> None:
    """The spec from stdin — not from argv: any process may read ``/proc/1/cmdline``."""
    for record in data.decode().split("\0"):
        name, _, value = record.partition("=")
        if name.startswith("env:"):
            ENV[name[4:]] = value
        elif name:
            SPEC[name] = value


if __name__ == "__main__":
    read_spec(sys.stdin.buffer.read())
    sys.exit(main())
