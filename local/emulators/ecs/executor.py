"""The local Cloud Assistant agent: runs one invocation on one instance and reports back.

``process`` instances run the script for real: the content is written to a file in the
instance's sandbox and run with ``/bin/sh`` (as the current user) in a new process group, so a
``Timeout`` kills the whole tree. Output (stdout and stderr together, as the agent captures
them) goes to a file rather than a pipe, which keeps memory flat however much a script prints;
only the first 24 KB are reported, the rest is counted in ``Dropped``.

``simulated`` instances run nothing: their configured result is reported when the emulator's
clock reaches start + ``Duration``, so tests can move time instead of waiting.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from local.emulators.base import Clock
from local.emulators.ecs.inventory import Instance

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 24 * 1024  # bytes of Output Cloud Assistant keeps; the rest is Dropped


@dataclass(frozen=True)
class Task:
    """One run of an invocation on one instance, as the agent receives it."""

    invoke_id: str
    instance: Instance
    run: int
    script: str  # decoded, parameters already substituted
    working_dir: str
    timeout: int


@dataclass(frozen=True)
class Outcome:
    status: str  # Success | Failed | Timeout | Error
    exit_code: int | None
    output: bytes
    dropped: int
    error_code: str = ""
    error_info: str = ""


Report = Callable[[Task, Outcome], None]
Started = Callable[[Task], None]


class Scheduler:
    """Calls callbacks at times of the emulator's clock (which tests may advance)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped = False
        clock.subscribe(self._cond)
        self._thread = threading.Thread(target=self._loop, name="ecs-scheduler", daemon=True)
        self._thread.start()

    def at(self, when: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), callback))
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = self._clock.now()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, callback = heapq.heappop(self._heap)
                        break
                    self._cond.wait(timeout=(self._heap[0][0] - now) if self._heap else None)
                else:
                    return
            try:
                callback()
            except Exception:
                log.exception("scheduled callback failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


class Agent:
    """Runs tasks on the local instances and reports their outcome."""

    def __init__(self, sandbox_root: Path, clock: Clock, on_start: Started, on_finish: Report,
                 max_parallel: int = 32) -> None:
        self._root = sandbox_root
        self._clock = clock
        self._on_start = on_start
        self._on_finish = on_finish
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="ecs-agent")
        self.scheduler = Scheduler(clock)
        self._closing = threading.Event()

    def sandbox(self, instance_id: str) -> Path:
        """The directory that plays the instance's ``/``."""
        return self._root / instance_id / "fs"

    def submit(self, task: Task) -> None:
        if task.instance.Mode == "simulated":
            self._on_start(task)
            sim = task.instance.Simulated
            self.scheduler.at(self._clock.now() + sim.Duration, lambda: self._finish_simulated(task))
        else:
            self._pool.submit(self._run_process, task)

    def _finish_simulated(self, task: Task) -> None:
        sim = task.instance.Simulated
        raw = sim.Output.encode()
        self._on_finish(task, _outcome_for_exit(sim.ExitCode, raw[:OUTPUT_LIMIT],
                                                max(0, len(raw) - OUTPUT_LIMIT)))

    def _run_process(self, task: Task) -> None:
        try:
            self._on_finish(task, self._execute(task))
        except Exception as exc:  # the agent reports, it never goes silent
            log.exception("task %s on %s failed in the agent", task.invoke_id, task.instance.InstanceId)
            self._on_finish(task, Outcome("Error", None, b"", 0, "ExecutionException", str(exc)))

    def _execute(self, task: Task) -> Outcome:
        fs = self.sandbox(task.instance.InstanceId)
        (fs / "root").mkdir(parents=True, exist_ok=True)
        (fs / "tmp").mkdir(exist_ok=True)
        cwd = fs / task.working_dir.lstrip("/")
        if not cwd.is_dir():
            return Outcome("Failed", None, b"", 0, "DirectoryNotExists",
                           f"the working directory {task.working_dir} does not exist")
        work = fs.parent / "agent" / f"{task.invoke_id}-{task.run}"
        work.mkdir(parents=True, exist_ok=True)
        script = work / "script.sh"
        script.write_text(task.script)
        out_path = work / "output"
        self._on_start(task)
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                ["/bin/sh", str(script)], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=self._env(task, fs),
            )
            try:
                code = proc.wait(timeout=task.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_tree(proc)
                code, timed_out = proc.wait(), True
        size = out_path.stat().st_size
        with open(out_path, "rb") as fh:
            output = fh.read(OUTPUT_LIMIT)
        dropped = max(0, size - OUTPUT_LIMIT)
        if timed_out:
            return Outcome("Timeout", code, output, dropped, "ExecutionTimeout",
                           f"the command did not finish within {task.timeout} s and was killed")
        return _outcome_for_exit(code, output, dropped)

    @staticmethod
    def _env(task: Task, fs: Path) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(fs / "root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "USER": os.environ.get("USER", "root"),
            "ASSISTFLOW_INSTANCE_ID": task.instance.InstanceId,
            "ASSISTFLOW_INSTANCE_ROOT": str(fs),
        }

    def close(self) -> None:
        self._closing.set()
        self.scheduler.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _outcome_for_exit(code: int, output: bytes, dropped: int) -> Outcome:
    if code == 0:
        return Outcome("Success", 0, output, dropped)
    return Outcome("Failed", code, output, dropped, "ExitCodeNonzero",
                   f"the command exited with code {code}")


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
