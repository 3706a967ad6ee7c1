"""``submit --wait``: a live view of the instances until the request summary is in OSS.

Per-instance progress comes from ``DescribeInvocations`` (one call per unfinished invocation
and poll); completion is the collector's ``summary.json`` — the same document a user reads
later, so "done" means the results are stored, not only that the scripts ended. On a terminal
the view is a rich progress bar; anywhere else (a pipe, CI, a file) it is plain lines, printed
only when the counts change.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from local.cli.common import EXIT_CLOUD, CliError, Target, instances_of
from shared import results as layout

if TYPE_CHECKING:
    from local.cli.results import ResultsReader


@dataclass(frozen=True)
class Tally:
    total: int = 0
    done: int = 0  # finished with Success
    failed: int = 0  # finished otherwise (Failed, Timeout, Terminated, …)
    stored: int = 0  # invocations whose summary.json exists
    invocations: int = 0

    @property
    def running(self) -> int:
        return self.total - self.done - self.failed

    def line(self) -> str:
        return (f"{self.done + self.failed}/{self.total} instance(s) finished: {self.done} ok, "
                f"{self.failed} failed, {self.running} running; results stored for "
                f"{self.stored}/{self.invocations} invocation(s)")


class View(Protocol):
    def update(self, tally: Tally) -> None: ...

    def close(self) -> None: ...


class PlainView:
    """One line per change of the counts: for pipes, files and CI logs."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last: Tally | None = None

    def update(self, tally: Tally) -> None:
        if tally != self.last:
            self.last = tally
            stamp = datetime.now().strftime("%H:%M:%S")
            self.stream.write(f"[{stamp}] {tally.line()}\n")
            self.stream.flush()

    def close(self) -> None:
        pass


class RichView:
    """A progress bar with running / failed counts, redrawn in place on a terminal."""

    def __init__(self, stream: IO[str], console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(), TextColumn("instances"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [yellow]{task.fields[running]} "
                       "running[/] [red]{task.fields[failed]} failed[/]  {task.fields[stored]}"),
            TimeElapsedColumn(), console=console or Console(file=stream), transient=False)
        self.task = self.progress.add_task("instances", total=None, ok=0, running=0, failed=0,
                                           stored="")
        self.progress.start()

    def update(self, tally: Tally) -> None:
        self.progress.update(self.task, total=tally.total or None,
                             completed=tally.done + tally.failed, ok=tally.done,
                             running=tally.running, failed=tally.failed,
                             stored=f"results {tally.stored}/{tally.invocations}")

    def close(self) -> None:
        self.progress.stop()


def view_for(stream: IO[str]) -> View:
    isatty = getattr(stream, "isatty", None)
    return RichView(stream) if isatty is not None and isatty() else PlainView(stream)


def _counts(statuses: list[str]) -> tuple[int, int]:
    done = sum(1 for s in statuses if s == "Success")
    failed = sum(1 for s in statuses if (s in layout.TERMINAL and s != "Success")
                 or s == layout.COLLECTOR_TIMEOUT)
    return done, failed


def tally(where: Target, invoke_ids: list[str], summaries: dict[str, dict[str, Any]],
          region: str = "") -> Tally:
    from shared.errors import CloudCallError

    total = done = failed = 0
    client = where.clients.ecs_in(region)
    for invoke_id in invoke_ids:
        if invoke_id in summaries:
            statuses = [str(e.get("Status")) for e in summaries[invoke_id]["Instances"].values()
                        if e.get("Status") != layout.SKIPPED]
        else:
            try:
                record = client.invocation(invoke_id)
            except CloudCallError as exc:
                if exc.transient:
                    continue  # the next poll will tell
                raise
            statuses = [str(i.get("InvocationStatus")) for i in instances_of(record)]
        ok, bad = _counts(statuses)
        total, done, failed = total + len(statuses), done + ok, failed + bad
    return Tally(total, done, failed, len(summaries), len(invoke_ids))


def wait_request(where: Target, reader: ResultsReader, request_id: str, known: list[str],
                 timeout: float, stream: IO[str] | None = None, region: str = "",
                 poll: float | None = None) -> dict[str, Any]:
    """The request summary (``{prefix}/requests/{RequestId}/summary.json``), showing the
    progress of the invocations known so far — the 202's, then those the request record
    names as the dispatcher invokes the batches — while waiting."""
    from local.cli.common import cloud_error
    from shared.errors import AssistflowError
    from shared.ledger import INVOKED, load_request

    out = stream or sys.stdout
    interval = poll if poll is not None else (0.3 if where.local else 2.0)
    view = view_for(out)
    summaries: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                done = reader.request_summary(request_id)
                if done is not None:  # the last line: the request as a whole
                    statuses = [str(e.get("Status")) for e in done["Instances"].values()
                                if e.get("Status") != layout.SKIPPED]
                    ok = _counts(statuses)[0]  # the rest failed or never started
                    ids = done.get("InvokeIds") or []
                    view.update(Tally(len(statuses), ok, len(statuses) - ok, len(ids),
                                      len(ids)))
                    return done
                record = load_request(where.clients.results, request_id)
                invoke_ids = list(known) if record is None else [
                    b.invoke_id for b in record.batches if b.state == INVOKED]
                for invoke_id in invoke_ids:
                    if invoke_id not in summaries:
                        found = reader.summary(invoke_id)
                        if found is not None:
                            summaries[invoke_id] = found
                view.update(tally(where, invoke_ids, summaries, region))
            except AssistflowError as exc:
                raise cloud_error(exc) from None
            if time.monotonic() > deadline:
                raise CliError(f"gave up after {timeout:.0f} s: no request summary yet at "
                               f"{reader.request_location(request_id)}; the collector may be "
                               f"behind — check later with `assistflow results {request_id}`",
                               EXIT_CLOUD)
            time.sleep(interval)
    finally:
        view.close()
