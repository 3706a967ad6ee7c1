"""The local Cloud Assistant agent: runs invocations on instances and reports back.

``process`` instances run the script for real: the content is written to a file beside the
instance's root and run with ``/bin/sh`` inside that root (``sandbox.py``: Linux namespaces
where the machine allows them, else only a working directory) in a new process group, so a
``Timeout`` or StopInvocation can kill the whole tree (``TerminationMode=ProcessTree``) or the
script process only (``Process``). Output (stdout and stderr together, as the agent captures
them) goes to a file rather than a pipe, which keeps memory flat however much a script prints;
only the first 24 KB are reported, the rest is counted in ``Dropped``.

``simulated`` instances run nothing: their configured result is reported when the emulator's
clock reaches start + ``Duration`` (or start + ``Timeout`` as ``ExecutionTimeout`` when the
duration is longer). Runs that start and end together are one batch — one timer and one
database write for a hundred or ten thousand instances.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import subprocess
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from local.emulators.base import Clock
from local.emulators.ecs.inventory import Instance
from local.emulators.ecs.sandbox import Run, Sandbox, SandboxError

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 24 * 1024  # bytes of Output Cloud Assistant keeps; the rest is Dropped
RunKey = tuple[str, str, int]  # (InvokeId, InstanceId, run)


@dataclass(frozen=True)
class Task:
    """One run of an invocation on one instance, as the agent receives it."""

    invoke_id: str
    instance: Instance
    run: int
    script: str  # decoded, parameters already substituted
    working_dir: str
    timeout: int
    termination_mode: str = "ProcessTree"
    username: str = ""
    start: float | None = None  # when it was due on the emulator clock (scheduled runs)

    @property
    def key(self) -> RunKey:
        return (self.invoke_id, self.instance.InstanceId, self.run)


@dataclass(frozen=True)
class Outcome:
    """What the agent reports for one run."""

    status: str  # Success | Failed | Timeout | Error | Invalid | Aborted | Terminated
    exit_code: int | None
    output: bytes
    dropped: int
    error_code: str = ""
    error_info: str = ""


# on_start(tasks, now) -> the keys that may still start (a stopped run must not)
Started = Callable[[list[Task], float], set[RunKey]]
Finished = Callable[[list[tuple[Task, Outcome]], float], None]


class Scheduler:
    """Calls callbacks at times of the emulator's clock (which tests may advance)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._busy = False
        clock.subscribe(self._cond)
        self._thread = threading.Thread(target=self._loop, name="ecs-scheduler", daemon=True)
        self._thread.start()

    def at(self, when: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), callback))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is due and no callback runs: the state after an ``advance``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stopped or (not self._busy and not (
                    self._heap and self._heap[0][0] <= self._clock.now())), timeout=timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while not self._stopped:
                    now = self._clock.now()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, callback = heapq.heappop(self._heap)
                        self._busy = True
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

    def __init__(self, sandbox_root: Path, clock: Clock, on_start: Started, on_finish: Finished,
                 max_parallel: int = 32) -> None:
        self._root = sandbox_root
        self._clock = clock
        self._on_start = on_start
        self._on_finish = on_finish
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="ecs-agent")
        self.scheduler = Scheduler(clock)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._procs: dict[RunKey, tuple[Run, str]] = {}
        self._lingering: list[Run] = []  # finished scripts whose children still run
        self._stop_requested: set[RunKey] = set()
        self.sandboxes = Sandbox()

    def sandbox(self, instance_id: str) -> Path:
        """The directory that plays the instance's ``/``."""
        return self._root / instance_id / "fs"

    def isolated(self) -> bool:
        """Whether scripts run in Linux namespaces here (``sandbox.py``; probed once)."""
        return self.sandboxes.isolated(self._root)

    def submit(self, tasks: list[Task]) -> None:
        batches: dict[tuple[float, float], list[Task]] = defaultdict(list)
        now = self._clock.now()
        for task in tasks:
            if task.instance.Mode == "simulated":
                start = task.start if task.start is not None else now
                length = min(task.instance.Simulated.Duration, task.timeout)
                batches[(start, start + length)].append(task)
            else:
                self._pool.submit(self._run_process, task)
        for (start, end), batch in batches.items():
            allowed = self._on_start(batch, start)
            started = [t for t in batch if t.key in allowed]
            if started:
                self.scheduler.at(end, lambda b=started, e=end: self._finish_simulated(b, e))  # type: ignore[misc]

    def stop(self, keys: list[RunKey]) -> None:
        """Kill the processes of these runs (per their TerminationMode); they report Terminated."""
        with self._lock:
            self._stop_requested.update(keys)
            running = [self._procs[k] for k in keys if k in self._procs]
        for run, mode in running:
            run.kill(mode)

    def _finish_simulated(self, batch: list[Task], end: float) -> None:
        reports = []
        for task in batch:
            sim = task.instance.Simulated
            raw = sim.Output.encode()
            output, dropped = raw[:OUTPUT_LIMIT], max(0, len(raw) - OUTPUT_LIMIT)
            if sim.Duration > task.timeout:
                reports.append((task, _timed_out(task, None, output, dropped)))
            else:
                reports.append((task, _outcome_for_exit(sim.ExitCode, output, dropped)))
        self._on_finish(reports, end)

    def _run_process(self, task: Task) -> None:
        try:
            outcome = self._execute(task)
        except Exception as exc:  # the agent reports, it never goes silent
            log.exception("task %s on %s failed in the agent", task.invoke_id,
                          task.instance.InstanceId)
            outcome = Outcome("Error", None, b"", 0, "ExecutionException", str(exc))
        if outcome is not None and not self._closing.is_set():
            self._on_finish([(task, outcome)], self._clock.now())

    def _execute(self, task: Task) -> Outcome | None:
        fs = self.sandbox(task.instance.InstanceId)
        (fs / "root").mkdir(parents=True, exist_ok=True)
        (fs / "tmp").mkdir(exist_ok=True)
        (fs / "tmp").chmod(0o1777)
        try:
            prepared = self.sandboxes.prepare(fs, task.working_dir, task.username)
        except SandboxError as refused:
            return Outcome("Invalid", None, b"", 0, refused.code, str(refused))
        if task.key not in self._on_start([task], self._clock.now()):
            return None  # cancelled while it waited for a worker
        work = fs.parent / "agent" / f"{task.invoke_id}-{task.run}"
        work.mkdir(parents=True, exist_ok=True)
        (work / "script.sh").write_text(task.script)
        out_path = work / "output"
        with open(out_path, "wb") as out:
            run = self.sandboxes.start(prepared, fs, work, task.instance.InstanceId, out)
            with self._lock:
                self._procs[task.key] = (run, task.termination_mode)
                stop_now = task.key in self._stop_requested
            if stop_now:
                run.kill(task.termination_mode)
            try:
                code = run.wait(timeout=task.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                run.kill(task.termination_mode)
                code, timed_out = run.reap(), True
            except SandboxError as failed:
                return Outcome("Invalid" if failed.code == "DirectoryNotExists" else "Error",
                               None, b"", 0, failed.code, str(failed))
            finally:
                with self._lock:
                    del self._procs[task.key]
                    stopped = task.key in self._stop_requested
                    self._stop_requested.discard(task.key)
                    if run.close():
                        self._lingering = [r for r in self._lingering
                                           if r.proc.poll() is None] + [run]
        size = out_path.stat().st_size
        with open(out_path, "rb") as fh:
            output = fh.read(OUTPUT_LIMIT)
        dropped = max(0, size - OUTPUT_LIMIT)
        if stopped:
            return Outcome("Terminated", code, output, dropped, "",
                           "the invocation was stopped while the command ran")
        if timed_out:
            return _timed_out(task, code, output, dropped)
        return _outcome_for_exit(code, output, dropped)

    def close(self) -> None:
        self._closing.set()
        self.scheduler.stop()
        with self._lock:
            running = [run for run, _ in self._procs.values()] + self._lingering
        for run in running:  # no script, nor what it started, outlives the emulator
            run.kill("ProcessTree")
        self._pool.shutdown(wait=False, cancel_futures=True)


def _outcome_for_exit(code: int, output: bytes, dropped: int) -> Outcome:
    if code == 0:
        return Outcome("Success", 0, output, dropped)
    return Outcome("Failed", code, output, dropped, "ExitCodeNonzero",
                   f"the command exited with code {code}")


def _timed_out(task: Task, code: int | None, output: bytes, dropped: int) -> Outcome:
    return Outcome("Timeout", code, output, dropped, "ExecutionTimeout",
                   f"the command did not finish within {task.timeout} s and was killed")
