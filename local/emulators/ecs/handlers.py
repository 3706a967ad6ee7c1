"""One function per ECS action: typed parameters in, the response body (a dict) out.

Parameter names, defaults and response shapes follow ../shared/research/cloud-assistant-api.md
§3 and §5. Arrays are wrapped in a singular-named key (``Commands.Command[]``) because the real
API's JSON is derived from its XML.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from local.emulators.ecs.errors import EcsApiError, invalid, missing
from local.emulators.ecs.model import (
    MAX_PAGE,
    CloudAssistant,
    CommandSpec,
    InvokeSpec,
    legacy_overall,
    legacy_status,
    overall_status,
)


class Params:
    """Typed access to the flat RPC parameters (``InstanceId.1``, ``InstanceId.2`` …)."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw

    def text(self, name: str, default: str = "") -> str:
        return self.raw.get(name, default)

    def required(self, name: str) -> str:
        value = self.raw.get(name, "")
        if value == "":
            raise missing(name)
        return value

    def number(self, name: str, default: int | None = None) -> int | None:
        value = self.raw.get(name, "")
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise invalid(name, f"{value!r} is not an integer") from None

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name, "")
        if value == "":
            return default
        if value.lower() not in ("true", "false"):
            raise invalid(name, f"{value!r} is not a boolean")
        return value.lower() == "true"

    def repeated(self, name: str) -> list[str]:
        """``Name.1`` … ``Name.N`` in order, or a JSON array given as ``Name``."""
        if name in self.raw and self.raw[name].startswith("["):
            try:
                return [str(x) for x in json.loads(self.raw[name])]
            except ValueError:
                raise invalid(name, "it is not a JSON array") from None
        numbered = []
        for key, value in self.raw.items():
            prefix, _, index = key.rpartition(".")
            if prefix == name and index.isdigit():
                numbered.append((int(index), value))
        return [v for _, v in sorted(numbered)]

    def json_map(self, name: str) -> dict[str, str]:
        value = self.raw.get(name, "")
        if not value:
            return {}
        try:
            data = json.loads(value)
        except ValueError:
            raise invalid("Parameters", "it must be a JSON object") from None
        if not isinstance(data, dict):
            raise invalid("Parameters", "it must be a JSON object")
        return {str(k): str(v) for k, v in data.items()}


def page(items: list[Any], p: Params) -> tuple[list[Any], dict[str, Any]]:
    """Apply MaxResults/NextToken (preferred) or PageNumber/PageSize paging."""
    max_results = p.number("MaxResults")
    token = p.text("NextToken")
    if max_results is not None or token:
        size = max_results or 10
        if not 1 <= size <= MAX_PAGE:
            raise invalid("MaxResults", f"it must be between 1 and {MAX_PAGE}")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise invalid("NextToken", "it is not a token this API returned") from None
        chunk = items[start:start + size]
        meta: dict[str, Any] = {"TotalCount": len(items), "PageNumber": 1, "PageSize": size,
                                "NextToken": str(start + size) if start + size < len(items) else ""}
        return chunk, meta
    number = p.number("PageNumber", 1) or 1
    size = p.number("PageSize", 10) or 10
    if number < 1:
        raise EcsApiError("InvalidParam.PageNumber", "PageNumber must be at least 1.", 403)
    if not 1 <= size <= MAX_PAGE:
        raise EcsApiError("InvalidParam.PageSize", f"PageSize must be 1 to {MAX_PAGE}.", 403)
    chunk = items[(number - 1) * size: number * size]
    return chunk, {"TotalCount": len(items), "PageNumber": number, "PageSize": size,
                   "NextToken": ""}


def _content(b64: str, encoding: str) -> str:
    if encoding.lower() == "plaintext":
        return base64.b64decode(b64).decode("utf-8", errors="replace")
    return b64


def _output(raw: bytes, encoding: str) -> str:
    if encoding.lower() == "plaintext":
        return raw.decode("utf-8", errors="replace")
    return base64.b64encode(raw).decode()


def _command_spec(p: Params, content_default_encoding: str) -> CommandSpec:
    content = p.required("CommandContent")
    encoding = p.text("ContentEncoding", content_default_encoding)
    # An unknown encoding falls back to the API's default, as the service does.
    if encoding.lower() not in ("plaintext", "base64"):
        encoding = content_default_encoding
    if encoding.lower() == "plaintext":
        content = base64.b64encode(content.encode()).decode()
    return CommandSpec(
        name=p.text("Name"), type=p.required("Type"), content_b64=content,
        description=p.text("Description"), working_dir=p.text("WorkingDir"),
        timeout=p.number("Timeout", 60) or 60, enable_parameter=p.flag("EnableParameter"),
        username=p.text("Username"), launcher=p.text("Launcher"),
    )


def create_command(m: CloudAssistant, p: Params) -> dict[str, Any]:
    spec = _command_spec(p, "Base64")
    if not spec.name:
        raise missing("Name")
    return {"CommandId": m.create_command(spec)}


def _invoke_spec(p: Params, command_id: str) -> InvokeSpec:
    return InvokeSpec(
        command_id=command_id, instance_ids=p.repeated("InstanceId"),
        parameters=p.json_map("Parameters"), timeout=p.number("Timeout"),
        working_dir=p.raw.get("WorkingDir"), username=p.text("Username") or None,
        repeat_mode=p.text("RepeatMode", "Once") or "Once", frequency=p.text("Frequency"),
        client_token=p.text("ClientToken"),
    )


def invoke_command(m: CloudAssistant, p: Params) -> dict[str, Any]:
    return {"InvokeId": m.invoke(_invoke_spec(p, p.required("CommandId")))}


def run_command(m: CloudAssistant, p: Params) -> dict[str, Any]:
    spec = _command_spec(p, "PlainText")
    spec.name = spec.name or "RunCommand"
    command_id = m.create_command(spec, keep=p.flag("KeepCommand"))
    invoke = _invoke_spec(p, command_id)
    invoke.timeout = None  # the command carries RunCommand's Timeout
    return {"CommandId": command_id, "InvokeId": m.invoke(invoke)}


def delete_command(m: CloudAssistant, p: Params) -> dict[str, Any]:
    m.delete_command(p.required("CommandId"))
    return {}


def describe_commands(m: CloudAssistant, p: Params) -> dict[str, Any]:
    rows = m.list_commands(p.text("CommandId"), p.text("Name"), p.text("Type"))
    chunk, meta = page(rows, p)
    encoding = p.text("ContentEncoding", "Base64")
    commands = [{
        "CommandId": r["command_id"], "Name": r["name"], "Type": r["type"],
        "Description": r["description"], "CommandContent": _content(r["content"], encoding),
        "WorkingDir": r["working_dir"], "Timeout": r["timeout"],
        "EnableParameter": bool(r["enable_parameter"]), "InvokeTimes": r["invoke_times"],
        "CreationTime": r["creation_time"], "Launcher": r["launcher"],
        "ParameterNames": {"ParameterName": []}, "Provider": "", "Latest": True,
    } for r in chunk]
    return {**meta, "Commands": {"Command": commands}}


def _result_fields(r: Any, encoding: str) -> dict[str, Any]:
    return {
        "InstanceId": r["instance_id"], "InvocationStatus": r["status"],
        "ExitCode": r["exit_code"] if r["exit_code"] is not None else 0,
        "Output": _output(bytes(r["output"]), encoding), "Dropped": r["dropped"],
        "ErrorCode": r["error_code"], "ErrorInfo": r["error_info"],
        "StartTime": r["start_time"], "StopTime": r["stop_time"], "Repeats": r["run"],
    }


def describe_invocations(m: CloudAssistant, p: Params) -> dict[str, Any]:
    rows = m.list_invocations(p.text("InvokeId"), p.text("CommandId"), p.text("InstanceId"))
    chunk, meta = page(rows, p)
    encoding = p.text("ContentEncoding", "Base64")
    include_output = p.flag("IncludeOutput")
    invocations = []
    for inv in chunk:
        results = m.results(invoke_id=inv["invoke_id"])
        statuses = [r["status"] for r in results]
        instances = []
        for r in results:
            item = _result_fields(r, encoding)
            if not include_output:
                item["Output"] = ""
            item.update(FinishTime=r["finished_time"], CreationTime=r["creation_time"],
                        UpdateTime=r["update_time"], InstanceInvokeStatus=legacy_status(r["status"]),
                        Timed=inv["repeat_mode"] != "Once")
            instances.append(item)
        invocations.append({
            "InvokeId": inv["invoke_id"], "CommandId": inv["command_id"],
            "CommandName": inv["command_name"], "CommandType": inv["command_type"],
            "CommandContent": _content(inv["command_content"], encoding),
            "InvocationStatus": overall_status(statuses), "InvokeStatus": legacy_overall(statuses),
            "RepeatMode": inv["repeat_mode"], "Frequency": inv["frequency"],
            "Timed": inv["repeat_mode"] != "Once", "CreationTime": inv["creation_time"],
            "Parameters": inv["parameters"], "Username": inv["username"],
            "Timeout": inv["timeout"], "WorkingDir": inv["working_dir"],
            "InvokeInstances": {"InvokeInstance": instances},
        })
    return {**meta, "Invocations": {"Invocation": invocations}}


def describe_invocation_results(m: CloudAssistant, p: Params) -> dict[str, Any]:
    invoke_id = p.text("InvokeId")
    if invoke_id:
        m.invocation_row(invoke_id)  # InvalidInvokeId.NotFound for an unknown id
    rows = m.results(invoke_id, p.text("InstanceId"), p.text("CommandId"),
                     include_history=p.flag("IncludeHistory"))
    chunk, meta = page(rows, p)
    encoding = p.text("ContentEncoding", "Base64")
    results = []
    for r in chunk:
        item = _result_fields(r, encoding)
        item.update(InvokeId=r["invoke_id"], CommandId=r["command_id"],
                    FinishedTime=r["finished_time"], InvokeRecordStatus=legacy_status(r["status"]))
        results.append(item)
    return {"Invocation": {**meta, "InvocationResults": {"InvocationResult": results}}}


def describe_instances(m: CloudAssistant, p: Params) -> dict[str, Any]:
    wanted = p.repeated("InstanceIds")
    status = p.text("Status")
    items = [i for i in m.instances.values()
             if (not wanted or i.InstanceId in wanted) and (not status or i.Status == status)]
    if p.number("MaxResults") is None and not p.text("NextToken"):
        p.raw.setdefault("PageSize", "10")
    chunk, meta = page(items, p)
    return {**meta, "Instances": {"Instance": [{
        "InstanceId": i.InstanceId, "InstanceName": i.InstanceName, "Status": i.Status,
        "OSType": i.OSType, "RegionId": m.region,
    } for i in chunk]}}


def describe_cloud_assistant_status(m: CloudAssistant, p: Params) -> dict[str, Any]:
    wanted = p.repeated("InstanceId")
    items = [m.instance(i) for i in wanted] if wanted else list(m.instances.values())
    chunk, meta = page(items, p)
    return {**meta, "InstanceCloudAssistantStatusSet": {"InstanceCloudAssistantStatus": [{
        "InstanceId": i.InstanceId, "CloudAssistantStatus": "true" if i.ready else "false",
        "CloudAssistantVersion": i.AgentVersion if i.AgentInstalled else "",
        "OSType": "Linux" if i.OSType == "linux" else "Windows",
    } for i in chunk]}}


ACTIONS: dict[str, Callable[[CloudAssistant, Params], dict[str, Any]]] = {
    "CreateCommand": create_command,
    "InvokeCommand": invoke_command,
    "RunCommand": run_command,
    "DeleteCommand": delete_command,
    "DescribeCommands": describe_commands,
    "DescribeInvocations": describe_invocations,
    "DescribeInvocationResults": describe_invocation_results,
    "DescribeInstances": describe_instances,
    "DescribeCloudAssistantStatus": describe_cloud_assistant_status,
}
