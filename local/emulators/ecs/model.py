"""Cloud Assistant's state and rules: commands, invocations, per-instance targets and runs.

No HTTP here: the wire layer parses a request into the typed arguments of these methods and
renders what they return. Limits, defaults and status rules follow
../shared/research/cloud-assistant-api.md (§3 parameters, §4 Frequency, §5 statuses, §6
errors); the pure rules are in ``rules.py``, schedules in ``frequency.py``, reads in
``queries.py``. Time comes only from the clock, and scheduled work from the agent's
``Scheduler``, so tests drive periodic invocations by advancing the clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulators.base import Clock
from local.emulators.ecs import rules
from local.emulators.ecs.errors import (
    CmdContentExceedLimit,
    CmdCountExceedQuota,
    CmdDescExceedLimit,
    CmdNameExceedLimit,
    ContentWithParametersExceedLimit,
    DryRunOperation,
    EcsError,
    IdempotentParameterMismatch,
    InstanceIdsExceedLimit,
    InvalidClientTokenMalformed,
    InvalidCmdTypeNotFound,
    InvalidInstanceIdNotFound,
    InvalidInstanceNotFound,
    InvalidInstanceNotMatch,
    InvalidLauncherLengthLimitExceeded,
    InvalidParameter,
    InvalidRepeatModeNotFound,
    InvalidTerminationModeNotFound,
    MissingParamFrequency,
    MissingParamInstanceId,
    UsernameExceedLimit,
)
from local.emulators.ecs.events import EventPublisher, task_completed
from local.emulators.ecs.executor import Agent, Outcome, RunKey, Task
from local.emulators.ecs.frequency import Never, Recurrence, parse_frequency
from local.emulators.ecs.inventory import Instance, load_inventory
from local.emulators.ecs.queries import Queries
from local.emulators.ecs.rules import iso
from local.emulators.ecs.store import Store

log = logging.getLogger(__name__)

LOCAL_ACCOUNT_ID = "1000000000000001"  # what {{ACS::AccountId}} says on the local cloud
CONTINUING = ("Period", "EveryReboot")  # repeat modes whose targets go back to Scheduled
ON_REBOOT = ("NextRebootOnly", "EveryReboot")


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(10)


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


class CloudAssistant(Queries):
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
        self.store = Store(state_dir / "ecs.sqlite3")
        self._token_lock = threading.Lock()
        self.events = EventPublisher()  # TaskCompleted events, once something subscribes
        self.agent = Agent(state_dir / "instances", clock, self._started, self._finished,
                           max_parallel=agent_workers)
        self._recover()

    # --- fleet ---------------------------------------------------------------------------
    def reload_inventory(self) -> None:
        self.instances = {i.InstanceId: i for i in load_inventory(self.inventory_path)}

    def instance(self, instance_id: str) -> Instance:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise InvalidInstanceNotFound(instance_id=instance_id) from None

    # --- idempotency ---------------------------------------------------------------------
    def idempotent(self, action: str, token: str, request_hash: str,
                   produce: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``produce()`` once per (action, ClientToken); the same answer for a repeat.

        A repeat with other parameters is ``IdempotentParameterMismatch`` (G-IDEM).
        """
        if not token:
            return produce()
        if len(token) > rules.MAX_CLIENT_TOKEN or not token.isascii():
            raise InvalidClientTokenMalformed()
        with self._token_lock:  # a concurrent duplicate waits and then gets the same answer
            prior = self.store.one("SELECT request_hash, response FROM tokens"
                                   " WHERE action = ? AND token = ?", (action, token))
            if prior is not None:
                if prior["request_hash"] != request_hash:
                    raise IdempotentParameterMismatch()
                answer: dict[str, Any] = json.loads(prior["response"])
                return answer
            answer = produce()
            self.store.execute("INSERT INTO tokens VALUES (?,?,?,?)",
                               (action, token, request_hash, json.dumps(answer)))
            return answer

    # --- commands ------------------------------------------------------------------------
    def create_command(self, spec: CommandSpec, keep: bool = True) -> str:
        self._check_command(spec)
        if keep:
            count = self.store.one("SELECT COUNT(*) AS n FROM commands WHERE keep = 1")
            if count is not None and count["n"] >= self.command_quota:
                raise CmdCountExceedQuota(quota=str(self.command_quota))
        command_id = _new_id("c-")
        self.store.execute(
            "INSERT INTO commands (command_id, name, description, type, content, working_dir,"
            " timeout, enable_parameter, launcher, creation_time, keep)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (command_id, spec.name, spec.description, spec.type, spec.content_b64,
             spec.working_dir, spec.timeout, int(spec.enable_parameter), spec.launcher,
             iso(self.clock.now()), int(keep)))
        return command_id

    def _check_command(self, spec: CommandSpec) -> None:
        if spec.type not in rules.COMMAND_TYPES:
            raise InvalidCmdTypeNotFound(type=spec.type, types=", ".join(rules.COMMAND_TYPES))
        if len(spec.content_b64) > rules.MAX_CONTENT_B64:
            raise CmdContentExceedLimit()
        try:
            script = base64.b64decode(spec.content_b64, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise InvalidParameter(param="CommandContent", detail="it is not valid Base64") from None
        self._check_limits(spec.name, spec.description, spec.working_dir, spec.timeout,
                           spec.launcher)
        if spec.enable_parameter:
            rules.check_definitions(script)

    @staticmethod
    def _check_limits(name: str, description: str, working_dir: str, timeout: int,
                      launcher: str) -> None:
        if len(name) > rules.MAX_NAME:
            raise CmdNameExceedLimit()
        if len(description) > rules.MAX_DESCRIPTION:
            raise CmdDescExceedLimit()
        if len(working_dir) > rules.MAX_WORKING_DIR:
            raise InvalidParameter(param="WorkingDir", detail="it exceeds 200 characters")
        if timeout < 1:  # no maximum is documented (§9.2)
            raise InvalidParameter(param="Timeout", detail="it must be a positive number of seconds")
        if len(launcher.encode()) > rules.MAX_LAUNCHER:
            raise InvalidLauncherLengthLimitExceeded()

    def modify_command(self, command_id: str, changes: dict[str, Any]) -> None:
        row = self.command_row(command_id)
        merged = {k: row[k] for k in ("name", "description", "working_dir", "timeout", "launcher")}
        merged.update(changes)
        self._check_limits(merged["name"], merged["description"], merged["working_dir"],
                           int(merged["timeout"]), merged["launcher"])
        self.store.execute(
            "UPDATE commands SET name = ?, description = ?, working_dir = ?, timeout = ?,"
            " launcher = ? WHERE command_id = ?",
            (merged["name"], merged["description"], merged["working_dir"], merged["timeout"],
             merged["launcher"], command_id))

    def delete_command(self, command_id: str) -> None:
        self.command_row(command_id)
        self.store.execute("DELETE FROM commands WHERE command_id = ?", (command_id,))

    # --- invocations ---------------------------------------------------------------------
    def run_command(self, command: CommandSpec, invoke: InvokeSpec, keep: bool) -> dict[str, str]:
        command_id = self.create_command(command, keep=keep)
        invoke.command_id = command_id
        try:
            return {"CommandId": command_id, "InvokeId": self.invoke(invoke, own_command=True)}
        except EcsError:
            self.store.execute("DELETE FROM commands WHERE command_id = ?", (command_id,))
            raise

    def invoke(self, spec: InvokeSpec, own_command: bool = False) -> str:
        mode = "Period" if spec.frequency else spec.repeat_mode  # Frequency implies Period
        if mode not in rules.REPEAT_MODES:
            raise InvalidRepeatModeNotFound(mode=mode)
        if spec.termination_mode and spec.termination_mode not in rules.TERMINATION_MODES:
            raise InvalidTerminationModeNotFound(mode=spec.termination_mode)
        if not spec.instance_ids:
            raise MissingParamInstanceId()
        if len(spec.instance_ids) > rules.MAX_INSTANCES_PER_INVOKE:
            raise InstanceIdsExceedLimit(limit=str(rules.MAX_INSTANCES_PER_INVOKE),
                                         what="instances may be given per call")
        if spec.timeout is not None and spec.timeout < rules.MIN_INVOKE_TIMEOUT:
            raise InvalidParameter(param="Timeout",
                                   detail="an InvokeCommand timeout must be at least 10 seconds")
        if len(spec.username) > rules.MAX_USERNAME:
            raise UsernameExceedLimit()
        if spec.working_dir is not None and len(spec.working_dir) > rules.MAX_WORKING_DIR:
            raise InvalidParameter(param="WorkingDir", detail="it exceeds 200 characters")
        if spec.launcher is not None and len(spec.launcher.encode()) > rules.MAX_LAUNCHER:
            raise InvalidLauncherLengthLimitExceeded()
        command = self.command_row(spec.command_id, include_unkept=own_command)
        timeout = spec.timeout or int(command["timeout"])
        now = self.clock.now()
        schedule: Recurrence | None = None
        if mode == "Period":
            if not spec.frequency:
                raise MissingParamFrequency()
            schedule = parse_frequency(spec.frequency, now, timeout)
        script = base64.b64decode(command["content"]).decode("utf-8", "replace")
        params = rules.check_parameters(script, bool(command["enable_parameter"]), spec.parameters)
        if params and len(base64.b64encode(rules.substitute(script, params, {}).encode())) \
                > rules.MAX_CONTENT_B64:
            raise ContentWithParametersExceedLimit()
        instances = [self.instance(i) for i in dict.fromkeys(spec.instance_ids)]
        if mode == "DryRun":
            self._dry_run(instances, command["type"])
        invoke_id = _new_id("t-")
        stamp = iso(now)
        first_status = "Pending" if mode == "Once" else "Scheduled"
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO invocations (invoke_id, command_id, command_name, command_type,"
                " command_content, command_description, working_dir, timeout, enable_parameter,"
                " parameters, repeat_mode, frequency, username, termination_mode, launcher,"
                " creation_time, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (invoke_id, command["command_id"], command["name"], command["type"],
                 command["content"], command["description"],
                 spec.working_dir if spec.working_dir is not None else command["working_dir"],
                 timeout, command["enable_parameter"], json.dumps(params), mode,
                 spec.frequency, spec.username, spec.termination_mode,
                 spec.launcher if spec.launcher is not None else command["launcher"],
                 stamp, now))
            db.execute("UPDATE commands SET invoke_times = invoke_times + 1 WHERE command_id = ?",
                       (command["command_id"],))
            db.executemany(
                "INSERT INTO targets (invoke_id, instance_id, status, repeats, creation_time,"
                " update_time) VALUES (?,?,?,?,?,?)",
                [(invoke_id, i.InstanceId, first_status, int(mode == "Once"), stamp, stamp)
                 for i in instances])
            if mode == "Once":
                db.executemany(
                    "INSERT INTO results (invoke_id, instance_id, run, status, creation_time,"
                    " update_time) VALUES (?,?,1,'Pending',?,?)",
                    [(invoke_id, i.InstanceId, stamp, stamp) for i in instances])
        if mode == "Once":
            self._dispatch(self.invocation_row(invoke_id), [(i, 1) for i in instances], None)
        elif schedule is not None:
            self._schedule_next(invoke_id, schedule, now)
        return invoke_id

    def _dry_run(self, instances: list[Instance], command_type: str) -> None:
        # Fidelity choice: ECS's DryRun convention (RunInstances) — checks pass → the
        # DryRunOperation error; a check fails → InvalidInstance.NotMatch naming the reason.
        for inst in instances:
            refusal = rules.refusal(inst, command_type)
            if refusal is not None:
                raise InvalidInstanceNotMatch(instance_id=inst.InstanceId, error_code=refusal[1],
                                              error_info=refusal[2])
        raise DryRunOperation()

    def _schedule_next(self, invoke_id: str, schedule: Recurrence, after: float) -> None:
        when = schedule.next_after(after)
        if when is None:
            self.store.execute("UPDATE invocations SET schedule_done = 1 WHERE invoke_id = ?",
                               (invoke_id,))
            return
        self.agent.scheduler.at(when, lambda: self._fire(invoke_id, schedule, when))

    def _fire(self, invoke_id: str, schedule: Recurrence, when: float,
              only: set[str] | None = None) -> None:
        """One period (or reboot) is due: start a run on every target still Scheduled."""
        inv = self.store.one("SELECT * FROM invocations WHERE invoke_id = ?", (invoke_id,))
        if inv is None or inv["schedule_done"]:
            return  # deleted by a reset, or stopped
        last = inv["repeat_mode"] == "Period" and schedule.next_after(when) is None
        stamp = iso(when)
        runs: list[tuple[Instance, int]] = []
        with self.store.transaction() as db:
            targets = db.execute("SELECT instance_id, repeats FROM targets WHERE invoke_id = ?"
                                 " AND status = 'Scheduled'", (invoke_id,)).fetchall()
            if not targets and not db.execute(
                    "SELECT 1 FROM targets WHERE invoke_id = ? AND status IN"
                    " ('Pending', 'Running', 'Stopping')", (invoke_id,)).fetchone():
                # every target was stopped: the schedule ends instead of ticking idly
                db.execute("UPDATE invocations SET schedule_done = 1 WHERE invoke_id = ?",
                           (invoke_id,))
                return
            for t in targets:
                if (only is not None and t["instance_id"] not in only) \
                        or t["instance_id"] not in self.instances:
                    continue
                runs.append((self.instances[t["instance_id"]], t["repeats"] + 1))
            db.executemany("UPDATE targets SET status = 'Pending', repeats = ?, update_time = ?"
                           " WHERE invoke_id = ? AND instance_id = ?",
                           [(run, stamp, invoke_id, i.InstanceId) for i, run in runs])
            db.executemany("INSERT INTO results (invoke_id, instance_id, run, status,"
                           " creation_time, update_time) VALUES (?,?,?,'Pending',?,?)",
                           [(invoke_id, i.InstanceId, run, stamp, stamp) for i, run in runs])
            if last:
                db.execute("UPDATE invocations SET schedule_done = 1 WHERE invoke_id = ?",
                           (invoke_id,))
        self._dispatch(self.invocation_row(invoke_id), runs, when)
        if inv["repeat_mode"] == "Period" and not last:
            self._schedule_next(invoke_id, schedule, when)

    def reboot(self, instance_ids: list[str]) -> None:
        """The instances restarted: NextRebootOnly / EveryReboot tasks run on them now."""
        wanted = set(instance_ids)
        rows = self.store.query(
            "SELECT DISTINCT t.invoke_id FROM targets t JOIN invocations i USING (invoke_id)"
            f" WHERE i.repeat_mode IN {ON_REBOOT} AND i.schedule_done = 0"
            " AND t.status = 'Scheduled'")
        for row in rows:
            self._fire(row["invoke_id"], Never(), self.clock.now(), only=wanted)

    def _dispatch(self, inv: Any, runs: list[tuple[Instance, int]], start: float | None) -> None:
        """Hand runs to the agent, or settle at once those the agent cannot take."""
        script = base64.b64decode(inv["command_content"]).decode("utf-8", errors="replace")
        params = json.loads(inv["parameters"])
        refused: list[tuple[Task, Outcome]] = []
        tasks: list[Task] = []
        for inst, run in runs:
            body = script
            if inv["enable_parameter"]:
                body = rules.substitute(script, params, {
                    "ACS::RegionId": self.region, "ACS::AccountId": self.account_id,
                    "ACS::InstanceId": inst.InstanceId, "ACS::InstanceName": inst.InstanceName,
                    "ACS::InvokeId": inv["invoke_id"], "ACS::CommandId": inv["command_id"]})
            task = Task(inv["invoke_id"], inst, run, body,
                        inv["working_dir"] or ("/root" if inst.OSType == "linux" else ""),
                        int(inv["timeout"]), inv["termination_mode"] or "ProcessTree",
                        inv["username"], start)
            refusal = rules.refusal(inst, inv["command_type"])
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
        self.invocation_row(invoke_id)
        stamp = iso(self.clock.now())
        kill: list[RunKey] = []
        ended: list[RunKey] = []  # final now (Stopping ones end when the agent reports)
        with self.store.transaction() as db:
            rows = db.execute("SELECT t.instance_id, t.status, t.repeats, r.status AS run_status"
                              " FROM targets t LEFT JOIN results r ON r.invoke_id = t.invoke_id"
                              " AND r.instance_id = t.instance_id AND r.run = t.repeats"
                              " WHERE t.invoke_id = ?", (invoke_id,)).fetchall()
            known = {r["instance_id"] for r in rows}
            for wanted in instance_ids:
                if wanted not in known:
                    raise InvalidInstanceIdNotFound(instance_id=wanted, invoke_id=invoke_id)
            for row in rows:
                if instance_ids and row["instance_id"] not in instance_ids:
                    continue
                key = (invoke_id, row["instance_id"], row["repeats"])
                inst = self.instances.get(row["instance_id"])
                if row["run_status"] == "Running" and inst is not None and inst.Mode == "process":
                    new = "Stopping"  # the agent kills the process, then reports Terminated
                    kill.append(key)
                elif row["run_status"] == "Running":
                    new = "Terminated"  # nothing to kill on a simulated instance
                elif row["status"] in ("Pending", "Scheduled"):
                    new = "Cancelled"
                else:
                    continue
                db.execute("UPDATE results SET status = ?, stop_time = ?, update_time = ?,"
                           " finished_time = CASE WHEN ? = 'Stopping' THEN '' ELSE ? END"
                           " WHERE invoke_id = ? AND instance_id = ? AND run = ?"
                           " AND status IN ('Pending', 'Running')",
                           (new, stamp, stamp, new, stamp, *key))
                db.execute("UPDATE targets SET status = ?, stop_time = ?, update_time = ?"
                           " WHERE invoke_id = ? AND instance_id = ?",
                           (new, stamp, stamp, invoke_id, row["instance_id"]))
                if new != "Stopping":
                    ended.append(key)
            if not db.execute("SELECT 1 FROM targets WHERE invoke_id = ? AND status IN"
                              " ('Scheduled', 'Pending', 'Running')", (invoke_id,)).fetchone():
                db.execute("UPDATE invocations SET schedule_done = 1 WHERE invoke_id = ?",
                           (invoke_id,))
        if kill:
            self.agent.stop(kill)
        self._announce(ended)

    # --- agent callbacks -----------------------------------------------------------------
    def _started(self, tasks: list[Task], now: float) -> set[RunKey]:
        stamp = iso(now)
        allowed: set[RunKey] = set()
        with self.store.transaction() as db:
            for task in tasks:
                cur = db.execute("UPDATE results SET status = 'Running', start_time = ?,"
                                 " update_time = ? WHERE invoke_id = ? AND instance_id = ?"
                                 " AND run = ? AND status = 'Pending'", (stamp, stamp, *task.key))
                if cur.rowcount:
                    allowed.add(task.key)
            db.executemany("UPDATE targets SET status = 'Running', update_time = ?"
                           " WHERE invoke_id = ? AND instance_id = ? AND status = 'Pending'",
                           [(stamp, k[0], k[1]) for k in allowed])
        return allowed

    def _finished(self, reports: list[tuple[Task, Outcome]], now: float) -> None:
        stamp = iso(now)
        modes: dict[str, tuple[str, int]] = {}
        settled: list[RunKey] = []
        with self.store.transaction() as db:
            for task, outcome in reports:
                if task.invoke_id not in modes:
                    inv = db.execute("SELECT repeat_mode, schedule_done FROM invocations"
                                     " WHERE invoke_id = ?", (task.invoke_id,)).fetchone()
                    if inv is None:
                        continue  # reset while it ran
                    modes[task.invoke_id] = (inv["repeat_mode"], inv["schedule_done"])
                mode, done = modes[task.invoke_id]
                row = db.execute("SELECT status FROM results WHERE invoke_id = ? AND"
                                 " instance_id = ? AND run = ?", task.key).fetchone()
                if row is None or row["status"] not in ("Pending", "Running", "Stopping"):
                    continue  # already settled (stopped, or reported twice)
                status = "Terminated" if row["status"] == "Stopping" else outcome.status
                db.execute(
                    "UPDATE results SET status = ?, exit_code = ?, output = ?, dropped = ?,"
                    " error_code = ?, error_info = ?, finished_time = ?, update_time = ?,"
                    " start_time = CASE WHEN start_time = '' THEN ? ELSE start_time END"
                    " WHERE invoke_id = ? AND instance_id = ? AND run = ?",
                    (status, outcome.exit_code, outcome.output, outcome.dropped,
                     outcome.error_code, outcome.error_info, stamp, stamp, stamp, *task.key))
                again = mode in CONTINUING and not done and status not in rules.STOPPED_CLASS
                db.execute("UPDATE targets SET status = ?, update_time = ? WHERE invoke_id = ?"
                           " AND instance_id = ? AND repeats = ?",
                           ("Scheduled" if again else status, stamp, *task.key))
                settled.append(task.key)
        self._announce(settled)

    def _announce(self, keys: list[RunKey]) -> None:
        """Publish TaskCompleted for each of these runs that is now final."""
        if self.events.sink is not None and keys:
            self.events.publish([
                task_completed(region=self.region, account_id=self.account_id,
                               time=row["finished_time"] or iso(self.clock.now()), row=row)
                for row in self.final_runs(keys)])

    def _recover(self) -> None:
        """After a restart: runs that were executing are lost, runs not yet started go on,
        periodic tasks resume from now (periods missed while down are skipped)."""
        now = self.clock.now()
        lost = self.store.query("SELECT invoke_id, instance_id, run, status FROM results"
                                " WHERE status IN ('Running', 'Stopping')")
        reports = []
        for row in lost:
            inst = self.instances.get(row["instance_id"]) or Instance(row["instance_id"])
            task = Task(row["invoke_id"], inst, row["run"], "", "", 0)
            reports.append((task, Outcome("Failed", None, b"", 0, "InstanceRestarted",
                                          "the local cloud restarted while the command ran")))
        self._finished(reports, now)
        pending: dict[str, list[tuple[Instance, int]]] = {}
        for row in self.store.query("SELECT invoke_id, instance_id, run FROM results"
                                    " WHERE status = 'Pending'"):
            found = self.instances.get(row["instance_id"])
            if found is None:
                task = Task(row["invoke_id"], Instance(row["instance_id"]), row["run"], "", "", 0)
                self._finished([(task, Outcome("Invalid", None, b"", 0, "InstanceNotExists",
                                               "the instance is no longer in the inventory"))],
                               now)
            else:
                pending.setdefault(row["invoke_id"], []).append((found, row["run"]))
        for invoke_id, runs in pending.items():
            self._dispatch(self.invocation_row(invoke_id), runs, None)
        for inv in self.store.query("SELECT invoke_id, frequency, timeout, created_at FROM"
                                    " invocations WHERE repeat_mode = 'Period'"
                                    " AND schedule_done = 0"):
            try:
                schedule = parse_frequency(inv["frequency"], inv["created_at"], 0)
            except EcsError:  # an at() that passed while the cloud was down
                self.store.execute("UPDATE invocations SET schedule_done = 1 WHERE invoke_id"
                                   " = ?", (inv["invoke_id"],))
                continue
            self._schedule_next(inv["invoke_id"], schedule, now)

    # --- lifecycle -----------------------------------------------------------------------
    def reset(self) -> None:
        self.store.wipe()

    def close(self) -> None:
        self.agent.close()
        self.events.close()
        self.store.close()

