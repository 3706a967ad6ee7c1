"""Cloud Assistant's state and rules: commands, invocations, per-instance results.

No HTTP here: the wire layer parses a request into the typed arguments of these methods and
renders what they return. Limits, defaults and status rules follow
../shared/research/cloud-assistant-api.md (§3 parameters, §5 statuses, §6 errors).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulators.base import Clock
from local.emulators.ecs.errors import EcsApiError, forbidden, invalid, not_found
from local.emulators.ecs.executor import Agent, Outcome, Task
from local.emulators.ecs.inventory import Instance, load_inventory
from local.emulators.ecs.store import Store

log = logging.getLogger(__name__)

COMMAND_TYPES = ("RunShellScript", "RunPowerShellScript", "RunBatScript")
MAX_CONTENT_B64 = 24 * 1024
MAX_INSTANCES_PER_INVOKE = 100
MAX_PAGE = 50

TERMINAL = ("Success", "Failed", "Timeout", "Error", "Invalid", "Aborted", "Cancelled", "Terminated")
FAILED_CLASS = ("Failed", "Timeout", "Error", "Invalid", "Aborted")
STOPPED_CLASS = ("Cancelled", "Terminated")


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def overall_status(statuses: list[str]) -> str:
    """Aggregate per-instance statuses the way DescribeInvocations reports ``InvocationStatus``."""
    for transient in ("Running", "Stopping", "Pending", "Scheduled"):
        if transient in statuses:
            return transient
    if all(s in STOPPED_CLASS for s in statuses):
        return "Stopped"
    ok = any(s == "Success" for s in statuses)
    failed = any(s in FAILED_CLASS for s in statuses)
    if ok and failed:
        return "PartialFailed"
    return "Failed" if failed else "Success"


def legacy_status(status: str) -> str:
    """The deprecated ``InstanceInvokeStatus`` / ``InvokeRecordStatus`` wording."""
    if status in ("Success", "Failed"):
        return "Finished"
    if status in STOPPED_CLASS:
        return "Stopped"
    if status in FAILED_CLASS:
        return "Failed"
    return "Stopping" if status == "Stopping" else "Running"


def legacy_overall(statuses: list[str]) -> str:
    legacy = {legacy_status(s) for s in statuses}
    if "Running" in legacy or "Stopping" in legacy:
        return "Running"
    return legacy.pop() if len(legacy) == 1 else "PartialFailed"


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
    timeout: int = 60
    enable_parameter: bool = False
    username: str = ""
    launcher: str = ""


@dataclass
class InvokeSpec:
    """What InvokeCommand (or RunCommand) asks for."""

    command_id: str
    instance_ids: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None
    working_dir: str | None = None
    username: str | None = None
    repeat_mode: str = "Once"
    frequency: str = ""
    client_token: str = ""


class CloudAssistant:
    """The model: one account, one region, one fleet."""

    def __init__(self, state_dir: Path, clock: Clock, region: str = "cn-hangzhou") -> None:
        self.region = region
        self.clock = clock
        self.inventory_path = state_dir / "instances.json"
        self.instances: dict[str, Instance] = {}
        self.reload_inventory()
        self.store = Store(state_dir / "ecs.sqlite3")
        self.agent = Agent(state_dir / "instances", clock, self._started, self._finished)
        self._recover()

    # --- fleet ---------------------------------------------------------------------------
    def reload_inventory(self) -> None:
        self.instances = {i.InstanceId: i for i in load_inventory(self.inventory_path)}

    def instance(self, instance_id: str) -> Instance:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise not_found("InvalidInstance.NotFound", f"instance \"{instance_id}\"") from None

    # --- commands ------------------------------------------------------------------------
    def create_command(self, spec: CommandSpec, keep: bool = True) -> str:
        self._check_command(spec)
        command_id = _new_id("c-")
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO commands (command_id, name, description, type, content, working_dir,"
                " timeout, enable_parameter, username, launcher, creation_time, keep)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (command_id, spec.name, spec.description, spec.type, spec.content_b64,
                 spec.working_dir, spec.timeout, int(spec.enable_parameter), spec.username,
                 spec.launcher, iso(self.clock.now()), int(keep)),
            )
        return command_id

    def _check_command(self, spec: CommandSpec) -> None:
        if spec.type not in COMMAND_TYPES:
            raise forbidden("InvalidCmdType.NotFound",
                            f"The specified command type \"{spec.type}\" is not supported; "
                            f"use one of {', '.join(COMMAND_TYPES)}.")
        if len(spec.content_b64) > MAX_CONTENT_B64:
            raise forbidden("CmdContent.ExceedLimit",
                            "The Base64-encoded command content exceeds 24 KB.")
        try:
            base64.b64decode(spec.content_b64, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("CommandContent", "it is not valid Base64") from None
        if len(spec.name) > 128:
            raise forbidden("CmdName.ExceedLimit", "The command name exceeds 128 characters.")
        if len(spec.description) > 512:
            raise forbidden("CmdDesc.ExceedLimit", "The command description exceeds 512 characters.")
        if len(spec.working_dir) > 200:
            raise invalid("WorkingDir", "it exceeds 200 characters")
        if spec.timeout < 1:
            raise invalid("Timeout", "it must be a positive number of seconds")

    def command_row(self, command_id: str) -> Any:
        row = self.store.one("SELECT * FROM commands WHERE command_id = ?", (command_id,))
        if row is None:
            raise not_found("InvalidCmdId.NotFound", f"command \"{command_id}\"")
        return row

    def delete_command(self, command_id: str) -> None:
        self.command_row(command_id)
        self.store.execute("DELETE FROM commands WHERE command_id = ?", (command_id,))

    def list_commands(self, command_id: str = "", name: str = "", type_: str = "") -> list[Any]:
        sql, args = "SELECT * FROM commands WHERE keep = 1", []
        if command_id:
            sql += " AND command_id = ?"
            args.append(command_id)
        if name:
            sql += " AND name GLOB ?" if "*" in name else " AND name = ?"
            args.append(name)
        if type_:
            sql += " AND type = ?"
            args.append(type_)
        return self.store.query(sql + " ORDER BY seq DESC", tuple(args))

    # --- invocations ---------------------------------------------------------------------
    def invoke(self, spec: InvokeSpec) -> str:
        if not spec.instance_ids:
            raise EcsApiError("MissingParam.InstanceId", "The parameter InstanceId is required.", 400)
        if len(spec.instance_ids) > MAX_INSTANCES_PER_INVOKE:
            raise forbidden("InstanceIds.ExceedLimit",
                            f"At most {MAX_INSTANCES_PER_INVOKE} instances may be given per call.")
        if spec.timeout is not None and spec.timeout < 10:
            raise invalid("Timeout", "an InvokeCommand timeout must be at least 10 seconds")
        command = self.command_row(spec.command_id)
        instances = [self.instance(i) for i in dict.fromkeys(spec.instance_ids)]
        request_hash = hashlib.sha256(json.dumps(
            [spec.command_id, sorted(spec.instance_ids), spec.parameters, spec.timeout,
             spec.working_dir, spec.username, spec.repeat_mode, spec.frequency],
            sort_keys=True).encode()).hexdigest()
        now = iso(self.clock.now())
        with self.store.transaction() as db:
            if spec.client_token:
                prior = db.execute("SELECT invoke_id, request_hash FROM invocations"
                                   " WHERE client_token = ?", (spec.client_token,)).fetchone()
                if prior is not None:
                    if prior["request_hash"] != request_hash:
                        raise forbidden("IdempotentParameterMismatch",
                                        "The ClientToken was used before with other parameters.")
                    return str(prior["invoke_id"])
            invoke_id = _new_id("t-")
            db.execute(
                "INSERT INTO invocations (invoke_id, command_id, command_name, command_type,"
                " command_content, working_dir, timeout, parameters, repeat_mode, frequency,"
                " username, creation_time, client_token, request_hash)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (invoke_id, command["command_id"], command["name"], command["type"],
                 command["content"], spec.working_dir if spec.working_dir is not None
                 else command["working_dir"], spec.timeout or command["timeout"],
                 json.dumps(spec.parameters), spec.repeat_mode, spec.frequency,
                 spec.username or command["username"], now, spec.client_token or None,
                 request_hash),
            )
            db.execute("UPDATE commands SET invoke_times = invoke_times + 1 WHERE command_id = ?",
                       (command["command_id"],))
            for inst in instances:
                db.execute("INSERT INTO results (invoke_id, instance_id, run, status,"
                           " creation_time, update_time) VALUES (?,?,1,'Pending',?,?)",
                           (invoke_id, inst.InstanceId, now, now))
        for inst in instances:
            self._dispatch(invoke_id, inst, 1)
        return invoke_id

    def _dispatch(self, invoke_id: str, inst: Instance, run: int) -> None:
        """Hand one run to the agent, or settle it at once when the agent cannot take it."""
        inv = self.invocation_row(invoke_id)
        refusal = self._refusal(inst, inv["command_type"])
        if refusal is not None:
            status, code, info = refusal
            self._settle(invoke_id, inst.InstanceId, run, Outcome(status, None, b"", 0, code, info))
            return
        script = base64.b64decode(inv["command_content"]).decode("utf-8", errors="replace")
        working_dir = inv["working_dir"] or ("/root" if inst.OSType == "linux" else "")
        self.agent.submit(Task(invoke_id, inst, run, script, working_dir, int(inv["timeout"])))

    @staticmethod
    def _refusal(inst: Instance, command_type: str) -> tuple[str, str, str] | None:
        if inst.Status != "Running":
            return ("Invalid", "InstanceNotRunning",
                    f"the instance is {inst.Status}, commands need a Running instance")
        if not inst.AgentInstalled:
            return ("Invalid", "ClientNotRunning",
                    "the Cloud Assistant agent is not installed or not running")
        if (command_type == "RunShellScript") != (inst.OSType == "linux"):
            return ("Invalid", "CommandNotApplicable",
                    f"{command_type} cannot run on a {inst.OSType} instance")
        if inst.OSType == "windows" and inst.Mode == "process":
            return ("Error", "ExecutionException", "local process mode runs Linux shell only")
        return None

    def invocation_row(self, invoke_id: str) -> Any:
        row = self.store.one("SELECT * FROM invocations WHERE invoke_id = ?", (invoke_id,))
        if row is None:
            raise not_found("InvalidInvokeId.NotFound", f"invocation \"{invoke_id}\"")
        return row

    def list_invocations(self, invoke_id: str = "", command_id: str = "",
                         instance_id: str = "") -> list[Any]:
        sql, args = "SELECT * FROM invocations WHERE 1=1", []
        if invoke_id:
            sql += " AND invoke_id = ?"
            args.append(invoke_id)
        if command_id:
            sql += " AND command_id = ?"
            args.append(command_id)
        if instance_id:
            sql += " AND invoke_id IN (SELECT invoke_id FROM results WHERE instance_id = ?)"
            args.append(instance_id)
        return self.store.query(sql + " ORDER BY seq DESC", tuple(args))

    def results(self, invoke_id: str = "", instance_id: str = "", command_id: str = "",
                include_history: bool = False) -> list[Any]:
        sql = ("SELECT r.*, i.command_id FROM results r JOIN invocations i USING (invoke_id)"
               " WHERE 1=1")
        args: list[Any] = []
        for column, value in (("r.invoke_id", invoke_id), ("r.instance_id", instance_id),
                              ("i.command_id", command_id)):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        if not include_history:
            sql += (" AND r.run = (SELECT MAX(run) FROM results x WHERE x.invoke_id = r.invoke_id"
                    " AND x.instance_id = r.instance_id)")
        return self.store.query(sql + " ORDER BY i.seq DESC, r.instance_id, r.run", tuple(args))

    # --- agent callbacks -----------------------------------------------------------------
    def _started(self, task: Task) -> None:
        now = iso(self.clock.now())
        self.store.execute(
            "UPDATE results SET status = 'Running', start_time = ?, update_time = ?"
            " WHERE invoke_id = ? AND instance_id = ? AND run = ? AND status = 'Pending'",
            (now, now, task.invoke_id, task.instance.InstanceId, task.run))

    def _finished(self, task: Task, outcome: Outcome) -> None:
        self._settle(task.invoke_id, task.instance.InstanceId, task.run, outcome)

    def _settle(self, invoke_id: str, instance_id: str, run: int, outcome: Outcome) -> None:
        now = iso(self.clock.now())
        self.store.execute(
            "UPDATE results SET status = ?, exit_code = ?, output = ?, dropped = ?,"
            " error_code = ?, error_info = ?, finished_time = ?, update_time = ?,"
            " start_time = CASE WHEN start_time = '' THEN ? ELSE start_time END"
            " WHERE invoke_id = ? AND instance_id = ? AND run = ?"
            " AND status IN ('Pending', 'Running')",
            (outcome.status, outcome.exit_code, outcome.output, outcome.dropped,
             outcome.error_code, outcome.error_info, now, now, now, invoke_id, instance_id, run))

    def _recover(self) -> None:
        """After a restart: runs that were executing are lost, runs not yet started go on."""
        now = iso(self.clock.now())
        self.store.execute(
            "UPDATE results SET status = 'Failed', error_code = 'InstanceRestarted',"
            " error_info = 'the local cloud restarted while the command was running',"
            " finished_time = ?, update_time = ? WHERE status = 'Running'", (now, now))
        for row in self.store.query("SELECT invoke_id, instance_id, run FROM results"
                                    " WHERE status = 'Pending'"):
            inst = self.instances.get(row["instance_id"])
            if inst is None:
                self._settle(row["invoke_id"], row["instance_id"], row["run"],
                             Outcome("Invalid", None, b"", 0, "InstanceNotExists",
                                     "the instance is no longer in the inventory"))
            else:
                self._dispatch(row["invoke_id"], inst, row["run"])

    # --- lifecycle -----------------------------------------------------------------------
    def reset(self) -> None:
        self.store.wipe()

    def close(self) -> None:
        self.agent.close()
        self.store.close()
