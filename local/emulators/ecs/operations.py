"""One function per ECS API action: ``call.params`` (a ``wire.Params``) in, the answer's body out.

Each reads its parameters, calls the model and names what comes back as the API does.
Parameter names and defaults are those of the action's request model in
``alibabacloud-ecs20140526`` 7.11.8 (its field docstrings), answers those of the API
reference, https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-<action>.
The rules on values live in the model and ``rules.py``.

To add an action: a function here registered with ``@OPERATIONS.register("ActionName")``;
the model method it calls; and, for a new error code, a class in ``errors.py``.
"""

from __future__ import annotations

import json
from typing import Any

from local.emulators.base import Call, Operations
from local.emulators.ecs import listing, rules, tagging, wire
from local.emulators.ecs.entities import Activity, CommandSpec, InvokeSpec, Record
from local.emulators.ecs.errors import InstanceIdsExceedLimit, MissingParameter
from local.emulators.ecs.inventory import Instance
from local.emulators.ecs.model import EcsModel
from local.emulators.ecs.rules import iso, legacy_overall, legacy_status, overall_status
from local.emulators.ecs.wire import Params, page

OPERATIONS: Operations[EcsModel] = Operations()

Answer = dict[str, Any]


def _command_spec(p: Params, default_encoding: str) -> CommandSpec:
    return CommandSpec(
        name=p.text("Name"), type=p.required("Type"),
        content_b64=wire.command_content(p, default_encoding),
        description=p.text("Description"), working_dir=p.text("WorkingDir"),
        timeout=p.number("Timeout", rules.DEFAULT_TIMEOUT) or rules.DEFAULT_TIMEOUT,
        enable_parameter=p.flag("EnableParameter"), launcher=p.text("Launcher"),
    )


def _invoke_spec(p: Params, command_id: str) -> InvokeSpec:
    # Timed is deprecated and has no effect: only RepeatMode and Frequency count.
    return InvokeSpec(
        command_id=command_id, instance_ids=p.repeated("InstanceId"),
        parameters=p.json_map("Parameters"), timeout=p.number("Timeout"),
        working_dir=p.optional("WorkingDir"), username=p.text("Username"),
        repeat_mode=p.text("RepeatMode") or "Once", frequency=p.text("Frequency").strip(),
        termination_mode=p.text("TerminationMode"), launcher=p.optional("Launcher"),
    )


# --- commands --------------------------------------------------------------------------------
@OPERATIONS.register("CreateCommand")
def create_command(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params

    def produce() -> Answer:
        spec = _command_spec(p, "Base64")
        if not spec.name:
            raise MissingParameter(name="Name")
        return {"CommandId": m.create_command(spec)}

    return m.idempotent(call.action, p.text("ClientToken"), p.fingerprint(), produce)


@OPERATIONS.register("ModifyCommand")
def modify_command(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params
    # CommandContent is deprecated on ModifyCommand and has no effect.
    changes: dict[str, Any] = {}
    for name, attribute in (("Name", "name"), ("Description", "description"),
                            ("WorkingDir", "working_dir"), ("Launcher", "launcher")):
        if name in p.raw:
            changes[attribute] = p.raw[name]
    if p.number("Timeout") is not None:
        changes["timeout"] = p.number("Timeout")
    m.modify_command(p.required("CommandId"), changes)
    return {}


@OPERATIONS.register("DeleteCommand")
def delete_command(m: EcsModel, call: Call) -> Answer:
    m.delete_command(call.params.required("CommandId"))
    return {}


@OPERATIONS.register("DescribeCommands")
def describe_commands(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params
    # Provider set = Alibaba's public commands, of which the local cloud has none.
    found = [] if p.text("Provider") else m.store.commands(
        p.text("CommandId"), p.text("Name"), p.text("Type"), p.text("Description"))
    chunk, meta = page(found, p)
    encoding = wire.answer_encoding(p)
    return {**meta, "Commands": {"Command": [{
        "CommandId": c.command_id, "Name": c.name, "Type": c.type,
        "Description": c.description, "CommandContent": wire.content(c.content, encoding),
        "WorkingDir": c.working_dir, "Timeout": c.timeout, "EnableParameter": c.enable_parameter,
        "InvokeTimes": c.invoke_times, "CreationTime": c.creation_time, "Launcher": c.launcher,
        "ParameterNames": {"ParameterName": c.parameter_names()}, "Provider": "",
        "Category": "", "Version": 1, "Latest": True, "ResourceGroupId": "", "Tags": {"Tag": []},
    } for c in chunk]}}


# --- invocations -----------------------------------------------------------------------------
@OPERATIONS.register("InvokeCommand")
def invoke_command(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params
    spec = _invoke_spec(p, p.required("CommandId"))
    return m.idempotent(call.action, p.text("ClientToken"), p.fingerprint(),
                        lambda: {"InvokeId": m.invoke(spec)})


@OPERATIONS.register("RunCommand")
def run_command(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params

    def produce() -> Answer:
        command = _command_spec(p, "PlainText")
        command.name = command.name or "RunCommand"
        invoke = _invoke_spec(p, "")
        invoke.timeout = None  # RunCommand's Timeout is the command's (no 10 s minimum)
        invoke.working_dir = invoke.launcher = None
        return m.run_command(command, invoke, keep=p.flag("KeepCommand"))

    return m.idempotent(call.action, p.text("ClientToken"), p.fingerprint(), produce)


@OPERATIONS.register("StopInvocation")
def stop_invocation(m: EcsModel, call: Call) -> Answer:
    m.stop(call.params.required("InvokeId"), call.params.repeated("InstanceId"))
    return {}


def _record_fields(r: Record, encoding: str) -> Answer:
    return {
        "InstanceId": r.instance_id, "InvocationStatus": r.status,
        "ExitCode": r.exit_code if r.exit_code is not None else 0,
        "Output": wire.output(r.output, encoding), "Dropped": r.dropped,
        "ErrorCode": r.error_code, "ErrorInfo": r.error_info,
        "StartTime": r.start_time, "StopTime": r.stop_time, "Repeats": r.repeats,
    }


@OPERATIONS.register("DescribeInvocations")
def describe_invocations(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params
    timed = p.flag("Timed") if p.text("Timed") else None
    found = m.store.invocations(p.text("InvokeId"), p.text("CommandId"), p.text("InstanceId"),
                                p.text("CommandName"), p.text("CommandType"),
                                p.text("RepeatMode"), timed)
    records: dict[str, list[Record]] = {}

    def targets_of(invoke_id: str) -> list[Record]:
        if invoke_id not in records:
            records[invoke_id] = m.store.records(invoke_id=invoke_id)
        return records[invoke_id]

    wanted_status = p.text("InvokeStatus")
    if wanted_status:
        found = [inv for inv in found
                 if wanted_status in _overall(targets_of(inv.invoke_id))]
    chunk, meta = page(found, p)
    encoding = wire.answer_encoding(p)
    # IncludeOutput needs InvokeId or InstanceId; without either, Output stays empty.
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
                        Timed=inv.timed)
            instances.append(item)
        statuses = [r.status for r in targets]
        invocations.append({
            "InvokeId": inv.invoke_id, "CommandId": inv.command_id,
            "CommandName": inv.command_name, "CommandType": inv.command_type,
            "CommandDescription": inv.command_description,
            "CommandContent": wire.content(inv.command_content, encoding),
            "InvocationStatus": overall_status(statuses), "InvokeStatus": legacy_overall(statuses),
            "RepeatMode": inv.repeat_mode, "Frequency": inv.frequency, "Timed": inv.timed,
            "CreationTime": inv.creation_time, "Parameters": json.dumps(inv.parameters),
            "Username": inv.username, "Timeout": inv.timeout, "WorkingDir": inv.working_dir,
            "TerminationMode": inv.termination_mode, "Launcher": inv.launcher,
            "ContainerId": "", "ContainerName": "", "Tags": {"Tag": []},
            "InvokeInstances": {"InvokeInstance": instances},
        })
    return {**meta, "Invocations": {"Invocation": invocations}}


def _overall(records: list[Record]) -> tuple[str, str]:
    statuses = [r.status for r in records]
    return overall_status(statuses), legacy_overall(statuses)


@OPERATIONS.register("DescribeInvocationResults")
def describe_invocation_results(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params
    invoke_id = p.text("InvokeId")
    if invoke_id:
        m.invocation(invoke_id)  # InvalidInvokeId.NotFound for an unknown id
    found = m.store.records(invoke_id, p.text("InstanceId"), p.text("CommandId"),
                            include_history=p.flag("IncludeHistory"))
    wanted = p.text("InvokeRecordStatus")
    if wanted:
        found = [r for r in found if wanted in (r.status, legacy_status(r.status))]
    chunk, meta = page(found, p)
    encoding = wire.answer_encoding(p)
    results = []
    for r in chunk:
        item = _record_fields(r, encoding)
        item.update(InvokeId=r.invoke_id, CommandId=r.command_id,
                    FinishedTime=r.finished_time, InvokeRecordStatus=legacy_status(r.status),
                    Username="", ContainerId="", ContainerName="", Tags={"Tag": []})
        results.append(item)
    return {"Invocation": {**meta, "InvocationResults": {"InvocationResult": results}}}


# --- the fleet -------------------------------------------------------------------------------
@OPERATIONS.register("DescribeInstances")
def describe_instances(m: EcsModel, call: Call) -> Answer:
    """Filters and paging: ``listing.py``. Each instance carries its ``Tags.Tag[{TagKey,
    TagValue}]`` and ``ResourceGroupId`` as the API reference's ``Instance`` does."""
    p: Params = call.params
    query = listing.Query(p)
    found = _SELECTIONS.get(m.instances, query.key, lambda: listing.select(m.instances, query))
    chunk, meta = listing.page(found, query, p)
    return {**meta, "Instances": {"Instance": [{
        "InstanceId": i.InstanceId, "InstanceName": i.InstanceName, "HostName": i.InstanceName,
        "Status": i.Status, "OSType": i.OSType, "OSName": i.OSName or (
            "Alibaba Cloud Linux 3" if i.OSType == "linux" else "Windows Server 2022"),
        "RegionId": m.region, "ZoneId": i.ZoneId or f"{m.region}-k",
        "InstanceType": i.InstanceType, "ResourceGroupId": i.ResourceGroupId,
        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in i.Tags.items()]},
    } for i in chunk]}}


_SELECTIONS: listing.Kept[Instance] = listing.Kept()


@OPERATIONS.register("ListTagResources")
def list_tag_resources(m: EcsModel, call: Call) -> Answer:
    """The tags of the fleet's instances, by tag, resource group or id, paged by NextToken:
    ``tagging.py``. No 1,000-resource limit: the listing for selections larger than that."""
    p: Params = call.params
    query = tagging.TagQuery(p)
    found = _TAG_ROWS.get(m.instances, query.key, lambda: tagging.rows(m.instances, query))
    chunk, token = tagging.page(found, query, p)
    return {"NextToken": token, "TagResources": {"TagResource": chunk}}


_TAG_ROWS: listing.Kept[Answer] = listing.Kept()


@OPERATIONS.register("DescribeCloudAssistantStatus")
def describe_cloud_assistant_status(m: EcsModel, call: Call) -> Answer:
    p: Params = call.params
    wanted = p.repeated("InstanceId")
    if len(wanted) > rules.MAX_INSTANCES_PER_STATUS:
        raise InstanceIdsExceedLimit(limit=str(rules.MAX_INSTANCES_PER_STATUS),
                                     what="instances may be given")
    os_type = p.text("OSType").lower()
    items = [m.instance(i) for i in wanted] if wanted else list(m.instances.values())
    items = [i for i in items if not os_type or i.OSType == os_type]
    if wanted:  # MaxResults is ignored when InstanceId is given
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
