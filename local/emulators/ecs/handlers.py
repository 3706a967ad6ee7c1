"""One function per ECS action: typed parameters in, the response body (a dict) out.

Parameter names, defaults and response shapes follow ../shared/research/cloud-assistant-api.md
§3 and §5. Arrays are wrapped in a singular-named key (``Commands.Command[]``) because the real
API's JSON is derived from its XML. No rules here: validation of values lives in the model.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from local.emulators.ecs import rules
from local.emulators.ecs.entities import Activity, CommandSpec, InvokeSpec, Record
from local.emulators.ecs.errors import InstanceIdsExceedLimit, MissingParameter
from local.emulators.ecs.model import EcsModel
from local.emulators.ecs.params import Params, page
from local.emulators.ecs.rules import iso, legacy_overall, legacy_status, overall_status


def _encoding(p: Params) -> str:
    # Describe* ContentEncoding: PlainText or Base64 (the default; anything else counts as it)
    return "PlainText" if p.text("ContentEncoding").lower() == "plaintext" else "Base64"


def _content(b64: str, encoding: str) -> str:
    if encoding == "PlainText":
        return base64.b64decode(b64).decode("utf-8", errors="replace")
    return b64


def _output(raw: bytes, encoding: str) -> str:
    if encoding == "PlainText":
        return raw.decode("utf-8", errors="replace")
    return base64.b64encode(raw).decode()


def _command_spec(p: Params, default_encoding: str) -> CommandSpec:
    content = p.required("CommandContent")
    encoding = p.text("ContentEncoding").lower()
    # An unknown encoding counts as the API's default: PlainText for RunCommand, Base64 for
    # CreateCommand (TEA docstrings).
    if encoding not in ("plaintext", "base64"):
        encoding = default_encoding.lower()
    if encoding == "plaintext":
        content = base64.b64encode(content.encode()).decode()
    return CommandSpec(
        name=p.text("Name"), type=p.required("Type"), content_b64=content,
        description=p.text("Description"), working_dir=p.text("WorkingDir"),
        timeout=p.number("Timeout", rules.DEFAULT_TIMEOUT) or rules.DEFAULT_TIMEOUT,
        enable_parameter=p.flag("EnableParameter"), launcher=p.text("Launcher"),
    )


def _invoke_spec(p: Params, command_id: str) -> InvokeSpec:
    # Timed is deprecated and has no effect (TEA): only RepeatMode and Frequency count.
    return InvokeSpec(
        command_id=command_id, instance_ids=p.repeated("InstanceId"),
        parameters=p.json_map("Parameters"), timeout=p.number("Timeout"),
        working_dir=p.optional("WorkingDir"), username=p.text("Username"),
        repeat_mode=p.text("RepeatMode") or "Once", frequency=p.text("Frequency").strip(),
        termination_mode=p.text("TerminationMode"), launcher=p.optional("Launcher"),
    )


def create_command(m: EcsModel, p: Params) -> dict[str, Any]:
    def produce() -> dict[str, Any]:
        spec = _command_spec(p, "Base64")
        if not spec.name:
            raise MissingParameter(name="Name")
        return {"CommandId": m.create_command(spec)}

    return m.idempotent("CreateCommand", p.text("ClientToken"), p.fingerprint(), produce)


def invoke_command(m: EcsModel, p: Params) -> dict[str, Any]:
    spec = _invoke_spec(p, p.required("CommandId"))
    return m.idempotent("InvokeCommand", p.text("ClientToken"), p.fingerprint(),
                        lambda: {"InvokeId": m.invoke(spec)})


def run_command(m: EcsModel, p: Params) -> dict[str, Any]:
    def produce() -> dict[str, Any]:
        command = _command_spec(p, "PlainText")
        command.name = command.name or "RunCommand"
        invoke = _invoke_spec(p, "")
        invoke.timeout = None  # RunCommand's Timeout is the command's (no 10 s minimum)
        invoke.working_dir = invoke.launcher = None
        return m.run_command(command, invoke, keep=p.flag("KeepCommand"))

    return m.idempotent("RunCommand", p.text("ClientToken"), p.fingerprint(), produce)


def modify_command(m: EcsModel, p: Params) -> dict[str, Any]:
    # CommandContent is deprecated on ModifyCommand and has no effect (TEA).
    changes: dict[str, Any] = {}
    for name, column in (("Name", "name"), ("Description", "description"),
                         ("WorkingDir", "working_dir"), ("Launcher", "launcher")):
        if name in p.raw:
            changes[column] = p.raw[name]
    if p.number("Timeout") is not None:
        changes["timeout"] = p.number("Timeout")
    m.modify_command(p.required("CommandId"), changes)
    return {}


def delete_command(m: EcsModel, p: Params) -> dict[str, Any]:
    m.delete_command(p.required("CommandId"))
    return {}


def describe_commands(m: EcsModel, p: Params) -> dict[str, Any]:
    # Provider set = Alibaba's public commands, of which the local cloud has none.
    rows = [] if p.text("Provider") else m.store.commands(
        p.text("CommandId"), p.text("Name"), p.text("Type"), p.text("Description"))
    chunk, meta = page(rows, p)
    encoding = _encoding(p)
    commands = []
    for r in chunk:
        names = r.parameter_names()
        commands.append({
            "CommandId": r.command_id, "Name": r.name, "Type": r.type,
            "Description": r.description, "CommandContent": _content(r.content, encoding),
            "WorkingDir": r.working_dir, "Timeout": r.timeout,
            "EnableParameter": bool(r.enable_parameter), "InvokeTimes": r.invoke_times,
            "CreationTime": r.creation_time, "Launcher": r.launcher,
            "ParameterNames": {"ParameterName": names}, "Provider": "", "Category": "",
            "Version": 1, "Latest": True, "ResourceGroupId": "", "Tags": {"Tag": []},
        })
    return {**meta, "Commands": {"Command": commands}}


def _record_fields(r: Record, encoding: str) -> dict[str, Any]:
    return {
        "InstanceId": r.instance_id, "InvocationStatus": r.status,
        "ExitCode": r.exit_code if r.exit_code is not None else 0,
        "Output": _output(r.output, encoding), "Dropped": r.dropped,
        "ErrorCode": r.error_code, "ErrorInfo": r.error_info,
        "StartTime": r.start_time, "StopTime": r.stop_time, "Repeats": r.repeats,
    }


def describe_invocations(m: EcsModel, p: Params) -> dict[str, Any]:
    timed = p.flag("Timed") if p.text("Timed") else None
    rows = m.store.invocations(p.text("InvokeId"), p.text("CommandId"), p.text("InstanceId"),
                              p.text("CommandName"), p.text("CommandType"),
                              p.text("RepeatMode"), timed)
    records: dict[str, list[Record]] = {}

    def targets_of(invoke_id: str) -> list[Record]:
        if invoke_id not in records:
            records[invoke_id] = m.store.records(invoke_id=invoke_id)
        return records[invoke_id]

    wanted_status = p.text("InvokeStatus")
    if wanted_status:
        rows = [inv for inv in rows if wanted_status in _overall(targets_of(inv.invoke_id))]
    chunk, meta = page(rows, p)
    encoding = _encoding(p)
    # IncludeOutput needs InvokeId or InstanceId (TEA); without either, Output stays empty.
    include_output = p.flag("IncludeOutput") and bool(p.text("InvokeId") or p.text("InstanceId"))
    invocations = []
    for inv in chunk:
        instances = []
        targets = targets_of(inv.invoke_id)
        for r in targets:
            item = _record_fields(r, encoding)
            if not include_output:
                item["Output"] = ""
            item.update(FinishTime=r.finished_time, CreationTime=r.creation_time,
                        UpdateTime=r.update_time, InstanceInvokeStatus=legacy_status(r.status),
                        Timed=inv.repeat_mode != "Once")
            instances.append(item)
        statuses = [r.status for r in targets]
        invocations.append({
            "InvokeId": inv.invoke_id, "CommandId": inv.command_id,
            "CommandName": inv.command_name, "CommandType": inv.command_type,
            "CommandDescription": inv.command_description,
            "CommandContent": _content(inv.command_content, encoding),
            "InvocationStatus": overall_status(statuses), "InvokeStatus": legacy_overall(statuses),
            "RepeatMode": inv.repeat_mode, "Frequency": inv.frequency,
            "Timed": inv.repeat_mode != "Once", "CreationTime": inv.creation_time,
            "Parameters": json.dumps(inv.parameters), "Username": inv.username,
            "Timeout": inv.timeout, "WorkingDir": inv.working_dir,
            "TerminationMode": inv.termination_mode, "Launcher": inv.launcher,
            "ContainerId": "", "ContainerName": "", "Tags": {"Tag": []},
            "InvokeInstances": {"InvokeInstance": instances},
        })
    return {**meta, "Invocations": {"Invocation": invocations}}


def _overall(records: list[Record]) -> tuple[str, str]:
    statuses = [r.status for r in records]
    return overall_status(statuses), legacy_overall(statuses)


def describe_invocation_results(m: EcsModel, p: Params) -> dict[str, Any]:
    invoke_id = p.text("InvokeId")
    if invoke_id:
        m.invocation(invoke_id)  # InvalidInvokeId.NotFound for an unknown id
    rows = m.store.records(invoke_id, p.text("InstanceId"), p.text("CommandId"),
                     include_history=p.flag("IncludeHistory"))
    wanted = p.text("InvokeRecordStatus")
    if wanted:
        rows = [r for r in rows if wanted in (r.status, legacy_status(r.status))]
    chunk, meta = page(rows, p)
    encoding = _encoding(p)
    results = []
    for r in chunk:
        item = _record_fields(r, encoding)
        item.update(InvokeId=r.invoke_id, CommandId=r.command_id,
                    FinishedTime=r.finished_time, InvokeRecordStatus=legacy_status(r.status),
                    Username="", ContainerId="", ContainerName="", Tags={"Tag": []})
        results.append(item)
    return {"Invocation": {**meta, "InvocationResults": {"InvocationResult": results}}}


def stop_invocation(m: EcsModel, p: Params) -> dict[str, Any]:
    m.stop(p.required("InvokeId"), p.repeated("InstanceId"))
    return {}


def describe_instances(m: EcsModel, p: Params) -> dict[str, Any]:
    wanted = p.repeated("InstanceIds")
    if len(wanted) > 100:
        raise InstanceIdsExceedLimit(limit="100", what="InstanceIds may be given")
    status = p.text("Status")
    chosen = set(wanted)
    items = [i for i in m.instances.values()
             if (not wanted or i.InstanceId in chosen) and (not status or i.Status == status)]
    chunk, meta = page(items, p, max_size=100)
    return {**meta, "Instances": {"Instance": [{
        "InstanceId": i.InstanceId, "InstanceName": i.InstanceName, "HostName": i.InstanceName,
        "Status": i.Status, "OSType": i.OSType, "OSName": i.OSName or (
            "Alibaba Cloud Linux 3" if i.OSType == "linux" else "Windows Server 2022"),
        "RegionId": m.region, "ZoneId": i.ZoneId or f"{m.region}-k",
        "InstanceType": i.InstanceType, "Tags": {"Tag": []},
    } for i in chunk]}}


def describe_cloud_assistant_status(m: EcsModel, p: Params) -> dict[str, Any]:
    wanted = p.repeated("InstanceId")
    if len(wanted) > rules.MAX_INSTANCES_PER_STATUS:
        raise InstanceIdsExceedLimit(limit=str(rules.MAX_INSTANCES_PER_STATUS),
                                     what="instances may be given")
    os_type = p.text("OSType").lower()
    items = [m.instance(i) for i in wanted] if wanted else list(m.instances.values())
    items = [i for i in items if not os_type or i.OSType == os_type]
    if wanted:  # MaxResults is ignored when InstanceId is given (TEA)
        chunk, meta = items, {"TotalCount": len(items), "PageNumber": 1,
                              "PageSize": len(items), "NextToken": ""}
    else:
        chunk, meta = page(items, p)
    activity = m.store.activity([i.InstanceId for i in chunk])
    now = m.clock.now()
    statuses = []
    for i in chunk:
        seen = activity.get(i.InstanceId, Activity())
        statuses.append({
            "InstanceId": i.InstanceId, "CloudAssistantStatus": "true" if i.ready else "false",
            "CloudAssistantVersion": i.AgentVersion if i.AgentInstalled else "",
            # heartbeats come about every minute from a live agent
            "LastHeartbeatTime": iso(now - now % 60) if i.ready else "",
            "ActiveTaskCount": seen.active, "InvocationCount": seen.runs,
            "LastInvokedTime": seen.last,
            "OSType": "Linux" if i.OSType == "linux" else "Windows",
            "SupportSessionManager": i.ready,
        })
    return {**meta, "InstanceCloudAssistantStatusSet": {"InstanceCloudAssistantStatus": statuses}}


ACTIONS: dict[str, Callable[[EcsModel, Params], dict[str, Any]]] = {
    "CreateCommand": create_command,
    "InvokeCommand": invoke_command,
    "RunCommand": run_command,
    "ModifyCommand": modify_command,
    "DeleteCommand": delete_command,
    "DescribeCommands": describe_commands,
    "DescribeInvocations": describe_invocations,
    "DescribeInvocationResults": describe_invocation_results,
    "StopInvocation": stop_invocation,
    "DescribeInstances": describe_instances,
    "DescribeCloudAssistantStatus": describe_cloud_assistant_status,
}
