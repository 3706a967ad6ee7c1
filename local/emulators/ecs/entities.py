"""Cloud Assistant's entities: what the model's rules act on and the store persists.

* ``CommandSpec`` / ``InvokeSpec`` — what a CreateCommand / InvokeCommand (or RunCommand, which
  is both) asks for, before any rule has looked at it.
* ``Command`` — a command as CreateCommand keeps it (``content`` in Base64).
* ``CommandInvocation`` — one InvokeCommand / RunCommand (``InvokeId``), with a copy of the
  command as it was run.
* ``InvocationTarget`` — the invocation on one instance: the per-instance status
  DescribeInvocations reports (``Scheduled`` between the runs of a periodic task) and how many
  runs it had.
* ``Run`` — one execution on one instance (``run`` 1, 2, …): what the agent reported.
* ``TokenAnswer`` — what a ClientToken was first answered (idempotency).
* ``Record`` — what DescribeInvocationResults lists: one per target (its status with its
  latest run's output), or one per run with ``IncludeHistory``.

Statuses and their meaning are those of ``InvocationStatus`` in the DescribeInvocationResults
reference (https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-describeinvocationresults).
Each entity carries the rules that concern it alone; rules across entities are the model's.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any

from local.emulators.ecs import rules
from local.emulators.ecs.executor import Outcome, RunKey, Task
from local.emulators.ecs.inventory import Instance

ACTIVE = ("Pending", "Running", "Stopping")  # a run the agent still owes a report for
CONTINUING = ("Period", "EveryReboot")  # repeat modes whose targets go back to Scheduled


def _decode(content_b64: str) -> str:
    return base64.b64decode(content_b64).decode("utf-8", errors="replace")


@dataclass
class CommandSpec:
    """What CreateCommand (or RunCommand's implicit command) defines."""

    name: str
    type: str
    content_b64: str
    description: str = ""
    working_dir: str = ""
    timeout: int = rules.DEFAULT_TIMEOUT
    enable_parameter: bool = False
    launcher: str = ""


@dataclass
class InvokeSpec:
    """What InvokeCommand (or RunCommand) asks for."""

    command_id: str
    instance_ids: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None  # None: the command's
    working_dir: str | None = None
    username: str = ""
    repeat_mode: str = "Once"
    frequency: str = ""
    termination_mode: str = ""
    launcher: str | None = None

    @property
    def mode(self) -> str:
        """The repeat mode in effect: a Frequency implies Period."""
        return "Period" if self.frequency else self.repeat_mode


@dataclass
class Command:
    command_id: str
    name: str
    type: str
    content: str  # Base64, as DescribeCommands returns it
    description: str = ""
    working_dir: str = ""
    timeout: int = rules.DEFAULT_TIMEOUT
    enable_parameter: bool = False
    launcher: str = ""
    creation_time: str = ""
    invoke_times: int = 0
    keep: bool = True  # False: RunCommand's own, without KeepCommand

    @property
    def script(self) -> str:
        return _decode(self.content)

    def parameter_names(self) -> list[str]:
        """The ``{{name}}`` parameters it defines (none unless EnableParameter)."""
        return rules.defined_parameters(self.script) if self.enable_parameter else []


@dataclass
class CommandInvocation:
    invoke_id: str
    command_id: str
    command_name: str
    command_type: str
    command_content: str  # Base64
    command_description: str
    working_dir: str
    timeout: int
    enable_parameter: bool
    parameters: dict[str, str]
    repeat_mode: str
    frequency: str
    username: str
    termination_mode: str
    launcher: str
    creation_time: str
    created_at: float  # emulator clock: anchors rate() recurrences
    schedule_done: bool = False  # no further runs will be started

    @property
    def timed(self) -> bool:
        return self.repeat_mode != "Once"

    @property
    def continuing(self) -> bool:
        """Whether a target goes back to Scheduled after a run (while the schedule lasts)."""
        return self.repeat_mode in CONTINUING and not self.schedule_done

    def task(self, inst: Instance, run: int, start: float | None,
             built_ins: dict[str, str]) -> Task:
        """Run ``run`` on ``inst`` as the agent receives it: parameters substituted, defaults
        applied (``/root`` on Linux; ``ProcessTree`` termination)."""
        body = _decode(self.command_content)
        if self.enable_parameter:
            body = rules.substitute(body, self.parameters, {
                **built_ins, "ACS::InstanceId": inst.InstanceId,
                "ACS::InstanceName": inst.InstanceName, "ACS::InvokeId": self.invoke_id,
                "ACS::CommandId": self.command_id})
        return Task(self.invoke_id, inst, run, body,
                    self.working_dir or ("/root" if inst.OSType == "linux" else ""),
                    int(self.timeout), self.termination_mode or "ProcessTree", self.username,
                    start)


@dataclass
class InvocationTarget:
    invoke_id: str
    instance_id: str
    status: str
    repeats: int
    creation_time: str
    update_time: str
    stop_time: str = ""
    run_status: str = ""  # the status of its latest run ('' before the first)

    def stopped_as(self, killable: bool) -> str | None:
        """What StopInvocation makes of it: a running process is killed (Stopping, then
        Terminated when the agent reports), a simulated run ends Terminated, one not started
        is Cancelled; None for a target already final."""
        if self.run_status == "Running":
            return "Stopping" if killable else "Terminated"
        if self.status in ("Pending", "Scheduled"):
            return "Cancelled"
        return None


@dataclass
class Run:
    invoke_id: str
    instance_id: str
    run: int
    status: str
    creation_time: str
    update_time: str
    exit_code: int | None = None
    output: bytes = b""
    dropped: int = 0
    error_code: str = ""
    error_info: str = ""
    start_time: str = ""
    finished_time: str = ""
    stop_time: str = ""

    @property
    def key(self) -> RunKey:
        return (self.invoke_id, self.instance_id, self.run)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def finished(self, outcome: Outcome, stamp: str) -> Run:
        """This run with the agent's report: a run being stopped ends Terminated whatever the
        script did; one that never started starts and ends at ``stamp``."""
        return replace(
            self, status="Terminated" if self.status == "Stopping" else outcome.status,
            exit_code=outcome.exit_code, output=outcome.output, dropped=outcome.dropped,
            error_code=outcome.error_code, error_info=outcome.error_info, finished_time=stamp,
            update_time=stamp, start_time=self.start_time or stamp)


@dataclass(frozen=True)
class Record:
    invoke_id: str
    instance_id: str
    command_id: str
    repeat_mode: str
    status: str
    repeats: int
    creation_time: str
    update_time: str
    stop_time: str
    exit_code: int | None
    output: bytes
    dropped: int
    error_code: str
    error_info: str
    start_time: str
    finished_time: str


@dataclass(frozen=True)
class TokenAnswer:
    """The answer first given to a ClientToken, and a hash of the parameters it came with."""

    request_hash: str
    response: dict[str, Any]


@dataclass(frozen=True)
class Activity:
    """An instance's runs, for DescribeCloudAssistantStatus."""

    runs: int = 0  # ever
    active: int = 0  # in flight
    last: str = ""  # when the latest was created
