"""Cloud Assistant's state and rules: one account, one region, one fleet.

``EcsModel`` holds what it works with explicitly: the fleet (``inventory.py``), the store
(``store.py``, entities in ``entities.py``), the agent that runs commands (``executor.py``),
the periodic and reboot-triggered runs (``recurring.py``) and the TaskCompleted publisher
(``events.py``). Each API action is one method here; it checks the request with the pure rules
of ``rules.py``, writes through named store methods and hands runs to the agent. No HTTP and no
SQL: ``operations.py`` turns requests into these calls, and ``store.py`` persists.

Time comes only from the clock, and due work from the agent's ``Scheduler``, so tests drive
periodic invocations by advancing the clock.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from local.emulators.base import Clock
from local.emulators.ecs import rules
from local.emulators.ecs.entities import (
    Command,
    CommandInvocation,
    CommandSpec,
    InvocationTarget,
    InvokeSpec,
    Run,
    TokenAnswer,
)
from local.emulators.ecs.errors import (
    CmdCountExceedQuota,
    DryRunOperation,
    EcsError,
    IdempotentParameterMismatch,
    InstanceIdsExceedLimit,
    InvalidClientTokenMalformed,
    InvalidCmdIdNotFound,
    InvalidInstanceIdNotFound,
    InvalidInstanceNotFound,
    InvalidInstanceNotMatch,
    InvalidInvokeIdNotFound,
    MissingParamFrequency,
)
from local.emulators.ecs.events import EventPublisher, task_completed
from local.emulators.ecs.executor import Agent, Outcome, RunKey, Task
from local.emulators.ecs.frequency import Recurrence, parse_frequency
from local.emulators.ecs.inventory import Instance, load_inventory
from local.emulators.ecs.recurring import RecurringRuns
from local.emulators.ecs.rules import iso
from local.emulators.ecs.store import EcsStore

log = logging.getLogger(__name__)

LOCAL_ACCOUNT_ID = "1000000000000001"  # what {{ACS::AccountId}} says on the local cloud


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(10)


class EcsModel:
    """The model: one account, one region, one fleet."""

    def __init__(self, state_dir: Path, clock: Clock, region: str = "cn-hangzhou",
                 agent_workers: int = 32) -> None:
        self.region = region
        self.clock = clock
        self.account_id = LOCAL_ACCOUNT_ID
        self.command_quota = rules.COMMAND_QUOTA
        self.inventory_path = state_dir / "instances.json"
        self.instances: dict[str, Instance] = {}
        self.reload_inventory()
        self.store = EcsStore(state_dir / "ecs.sqlite3")
        self._token_lock = threading.Lock()
        self.events = EventPublisher()  # TaskCompleted events, once something subscribes
        # agent_workers: process-mode runs at once; the rest wait as Pending
        self.agent = Agent(state_dir / "instances", clock, self._started, self._finished,
                           max_parallel=agent_workers)
        self.recurring = RecurringRuns(self.store, self.agent.scheduler, clock,
                                       lambda: self.instances, self.dispatch)
        self._recover()

    # --- fleet -----------------------------------------------------------------------------
    def reload_inventory(self) -> None:
        self.instances = {i.InstanceId: i for i in load_inventory(self.inventory_path)}

    def instance(self, instance_id: str) -> Instance:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise InvalidInstanceNotFound(instance_id=instance_id) from None

    # --- idempotency -----------------------------------------------------------------------
    def idempotent(self, action: str, token: str, request_hash: str,
                   produce: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``produce()`` once per (action, ClientToken); the same answer for a repeat.

        A repeat with other parameters is ``IdempotentParameterMismatch`` (HTTP 403 in the
        InvokeCommand reference's error table; "How to ensure idempotence" in the ECS API
        reference, github.com/AlibabaCloudDocs/ecs, ``API Reference/Appendix``).
        """
        if not token:
            return produce()
        if len(token) > rules.MAX_CLIENT_TOKEN or not token.isascii():
            raise InvalidClientTokenMalformed()
        with self._token_lock:  # a concurrent duplicate waits and then gets the same answer
            prior = self.store.token_answer(action, token)
            if prior is not None:
                if prior.request_hash != request_hash:
                    raise IdempotentParameterMismatch()
                return prior.response
            answer = produce()
            self.store.save_token_answer(action, token, TokenAnswer(request_hash, answer))
            return answer

    # --- commands --------------------------------------------------------------------------
    def command(self, command_id: str, include_unkept: bool = False) -> Command:
        """A retained command; RunCommand's own (KeepCommand=false) only for its run."""
        command = self.store.command(command_id, include_unkept)
        if command is None:
            raise InvalidCmdIdNotFound(command_id=command_id)
        return command

    def create_command(self, spec: CommandSpec, keep: bool = True) -> str:
        rules.check_command(spec)
        if keep and self.store.kept_command_count() >= self.command_quota:
            raise CmdCountExceedQuota(quota=str(self.command_quota))
        command = Command(_new_id("c-"), spec.name, spec.type, spec.content_b64,
                          spec.description, spec.working_dir, spec.timeout,
                          spec.enable_parameter, spec.launcher, iso(self.clock.now()), keep=keep)
        self.store.insert_command(command)
        return command.command_id

    def modify_command(self, command_id: str, changes: dict[str, Any]) -> None:
        """``changes``: new values of name, description, working_dir, timeout, launcher."""
        command = replace(self.command(command_id), **changes)
        rules.check_limits(command.name, command.description, command.working_dir,
                           int(command.timeout), command.launcher)
        self.store.update_command(command)

    def delete_command(self, command_id: str) -> None:
        self.command(command_id)
        self.store.delete_command(command_id)

    # --- invocations -----------------------------------------------------------------------
    def invocation(self, invoke_id: str) -> CommandInvocation:
        inv = self.store.invocation(invoke_id)
        if inv is None:
            raise InvalidInvokeIdNotFound(invoke_id=invoke_id)
        return inv

    def run_command(self, command: CommandSpec, invoke: InvokeSpec, keep: bool) -> dict[str, str]:
        command_id = self.create_command(command, keep=keep)
        invoke.command_id = command_id
        try:
            return {"CommandId": command_id, "InvokeId": self.invoke(invoke, own_command=True)}
        except EcsError:
            self.store.delete_command(command_id)
            raise

    def invoke(self, spec: InvokeSpec, own_command: bool = False) -> str:
        """InvokeCommand: check, record the invocation, then run it now or schedule it."""
        rules.check_invoke(spec)
        command = self.command(spec.command_id, include_unkept=own_command)
        timeout = spec.timeout or int(command.timeout)
        now = self.clock.now()
        recurrence: Recurrence | None = None
        if spec.mode == "Period":
            if not spec.frequency:
                raise MissingParamFrequency()
            recurrence = parse_frequency(spec.frequency, now, timeout)
        params = rules.check_parameters(command.script, command.enable_parameter,
                                        spec.parameters)
        instances = [self.instance(i) for i in dict.fromkeys(spec.instance_ids)]
        if spec.mode == "DryRun":
            self._dry_run(instances, command.type)
        self._refuse_unfit(instances, command.type)
        inv = CommandInvocation(
            _new_id("t-"), command.command_id, command.name, command.type, command.content,
            command.description,
            spec.working_dir if spec.working_dir is not None else command.working_dir,
            timeout, command.enable_parameter, params, spec.mode, spec.frequency,
            spec.username, spec.termination_mode,
            spec.launcher if spec.launcher is not None else command.launcher, iso(now), now)
        once = spec.mode == "Once"
        stamp = inv.creation_time
        self.store.insert_invocation(
            inv, [InvocationTarget(inv.invoke_id, i.InstanceId,
                                   "Pending" if once else "Scheduled", int(once), stamp, stamp)
                  for i in instances],
            [Run(inv.invoke_id, i.InstanceId, 1, "Pending", stamp, stamp)
             for i in instances] if once else [])
        if once:
            self.dispatch(inv, [(i, 1) for i in instances], None)
        elif recurrence is not None:
            self.recurring.schedule_next(inv.invoke_id, recurrence, now)
        return inv.invoke_id

    @staticmethod
    def _refuse_unfit(instances: list[Instance], command_type: str) -> None:
        """The whole call fails when one instance is not Running, has no agent or cannot take
        the command ("If multiple ECS instances are specified and one of the instances does not
        meet the requirements for running the command, the call fails", InvokeCommand's usage
        notes, https://www.alibabacloud.com/help/en/ecs/developer-reference/
        api-ecs-2014-05-26-invokecommand; error InvalidInstance.NotMatch, "The specified
        instance type does not match the command"). The local agent's own limit (status
        Error) is not the service's: it shows in the run's record."""
        for inst in instances:
            refusal = rules.refusal(inst, command_type)
            if refusal is not None and refusal[0] != "Error":
                raise InvalidInstanceNotMatch(instance_id=inst.InstanceId, error_code=refusal[1],
                                              error_info=refusal[2])

    @staticmethod
    def _dry_run(instances: list[Instance], command_type: str) -> None:
        # ECS's DryRun convention (as on RunInstances): the checks pass -> the DryRunOperation
        # error; one fails -> InvalidInstance.NotMatch naming the reason.
        for inst in instances:
            refusal = rules.refusal(inst, command_type)
            if refusal is not None:
                raise InvalidInstanceNotMatch(instance_id=inst.InstanceId, error_code=refusal[1],
                                              error_info=refusal[2])
        raise DryRunOperation()

    def dispatch(self, inv: CommandInvocation, runs: list[tuple[Instance, int]],
                 start: float | None) -> None:
        """Hand runs to the agent, or settle at once those the agent cannot take."""
        built_ins = {"ACS::RegionId": self.region, "ACS::AccountId": self.account_id}
        refused: list[tuple[Task, Outcome]] = []
        tasks: list[Task] = []
        for inst, run in runs:
            task = inv.task(inst, run, start, built_ins)
            refusal = rules.refusal(inst, inv.command_type)
            if refusal is None:
                tasks.append(task)
            else:
                refused.append((task, Outcome(refusal[0], None, b"", 0, refusal[1], refusal[2])))
        if refused:
            self._finished(refused, start if start is not None else self.clock.now())
        if tasks:
            self.agent.submit(tasks)

    def stop(self, invoke_id: str, instance_ids: list[str]) -> None:
        """StopInvocation: Running → Stopping → Terminated, Pending/Scheduled → Cancelled."""
        if len(instance_ids) > rules.MAX_INSTANCES_PER_STOP:
            raise InstanceIdsExceedLimit(limit=str(rules.MAX_INSTANCES_PER_STOP),
                                         what="instances may be stopped at once")
        self.invocation(invoke_id)
        stamp = iso(self.clock.now())
        kill: list[RunKey] = []
        ended: list[RunKey] = []  # final now (Stopping ones end when the agent reports)
        with self.store.atomic():
            targets = self.store.targets_of(invoke_id)
            known = {t.instance_id for t in targets}
            for wanted in instance_ids:
                if wanted not in known:
                    raise InvalidInstanceIdNotFound(instance_id=wanted, invoke_id=invoke_id)
            for target in targets:
                if instance_ids and target.instance_id not in instance_ids:
                    continue
                inst = self.instances.get(target.instance_id)
                status = target.stopped_as(killable=inst is not None and inst.Mode == "process")
                if status is None:
                    continue
                self.store.stop_target(target, status, stamp)
                target.status = status
                key = (invoke_id, target.instance_id, target.repeats)
                (kill if status == "Stopping" else ended).append(key)
            if not any(t.status in ("Scheduled", "Pending", "Running") for t in targets):
                self.store.end_schedule(invoke_id)
        if kill:
            self.agent.stop(kill)
        self._announce(ended)

    def reboot(self, instance_ids: list[str]) -> None:
        """The instances restarted: NextRebootOnly / EveryReboot tasks run on them now."""
        self.recurring.reboot(instance_ids)

    # --- agent callbacks -------------------------------------------------------------------
    def _started(self, tasks: list[Task], now: float) -> set[RunKey]:
        return self.store.mark_running([task.key for task in tasks], iso(now))

    def _finished(self, reports: list[tuple[Task, Outcome]], now: float) -> None:
        stamp = iso(now)
        invocations: dict[str, CommandInvocation | None] = {}
        settled: list[RunKey] = []
        with self.store.atomic():
            for task, outcome in reports:
                if task.invoke_id not in invocations:
                    invocations[task.invoke_id] = self.store.invocation(task.invoke_id)
                inv = invocations[task.invoke_id]
                run = self.store.run(task.key)
                if inv is None or run is None or not run.active:
                    continue  # reset while it ran, or already settled (stopped, reported twice)
                run = run.finished(outcome, stamp)
                again = inv.continuing and run.status not in rules.STOPPED_CLASS
                self.store.settle_run(run, "Scheduled" if again else run.status)
                settled.append(run.key)
        self._announce(settled)

    def _announce(self, keys: list[RunKey]) -> None:
        """Publish TaskCompleted for each of these runs that is now final."""
        if self.events.sink is None or not keys:
            return
        events = []
        invocations: dict[str, CommandInvocation | None] = {}
        for key in keys:
            run = self.store.run(key)
            if run is None or run.status not in rules.TERMINAL:
                continue
            if run.invoke_id not in invocations:
                invocations[run.invoke_id] = self.store.invocation(run.invoke_id)
            inv = invocations[run.invoke_id]
            if inv is not None:
                events.append(task_completed(
                    region=self.region, account_id=self.account_id,
                    time=run.finished_time or iso(self.clock.now()), run=run, invocation=inv))
        self.events.publish(events)

    def _recover(self) -> None:
        """After a restart: runs that were executing are lost, runs not yet started go on,
        periodic tasks resume from now (periods missed while down are skipped)."""
        now = self.clock.now()
        self._finished([(self._orphan(run), Outcome(
            "Failed", None, b"", 0, "InstanceRestarted",
            "the local cloud restarted while the command ran"))
            for run in self.store.runs_in(("Running", "Stopping"))], now)
        pending: dict[str, list[tuple[Instance, int]]] = {}
        for run in self.store.runs_in(("Pending",)):
            found = self.instances.get(run.instance_id)
            if found is None:
                self._finished([(self._orphan(run), Outcome(
                    "Invalid", None, b"", 0, "InstanceNotExists",
                    "the instance is no longer in the inventory"))], now)
            else:
                pending.setdefault(run.invoke_id, []).append((found, run.run))
        for invoke_id, runs in pending.items():
            self.dispatch(self.invocation(invoke_id), runs, None)
        self.recurring.resume(now)

    def _orphan(self, run: Run) -> Task:
        """A task standing for ``run`` when only its outcome is left to report."""
        inst = self.instances.get(run.instance_id) or Instance(run.instance_id)
        return Task(run.invoke_id, inst, run.run, "", "", 0)

    # --- control API -----------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "instances": sorted(self.instances),
            "commands": [c.command_id for c in self.store.commands()],
            "invocations": [{
                "InvokeId": inv.invoke_id, "CommandId": inv.command_id,
                "RepeatMode": inv.repeat_mode,
                "Results": {r.instance_id: r.status
                            for r in self.store.records(invoke_id=inv.invoke_id)},
            } for inv in self.store.invocations()],
            "scheduled": self.agent.scheduler.pending(),
        }

    def reset(self) -> None:
        self.store.wipe()

    def close(self) -> None:
        self.agent.close()
        self.events.close()
        self.store.close()
