"""The Cloud Assistant calls only the CLI makes, through aliyun-python-sdk-ecs.

The functions never list, stop or modify anything, so these live here rather than in
``shared.clients``; they go through ``CloudAssistant.call`` and so get the same endpoint,
HTTPS and error handling (``CloudCallError``) as every call the functions make.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.clients import CloudAssistant

PAGE = 50  # the largest MaxResults DescribeInvocations / DescribeCommands accept


def describe_invocations(ecs: CloudAssistant, *, invoke_id: str = "", command_id: str = "",
                         instance_id: str = "", command_name: str = "", status: str = "",
                         include_output: bool = False, limit: int = PAGE
                         ) -> list[dict[str, Any]]:
    """Invocations, newest first as the API returns them, up to ``limit`` (all pages)."""
    from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
        DescribeInvocationsRequest,
    )

    found: list[dict[str, Any]] = []
    token = ""
    while len(found) < limit:
        req = DescribeInvocationsRequest()
        for setter, value in ((req.set_InvokeId, invoke_id), (req.set_CommandId, command_id),
                              (req.set_InstanceId, instance_id),
                              (req.set_CommandName, command_name),
                              (req.set_InvokeStatus, status), (req.set_NextToken, token)):
            if value:
                setter(value)
        if include_output:
            req.set_IncludeOutput(True)
        req.set_MaxResults(min(PAGE, max(1, limit - len(found))))
        page = ecs.call(req)
        found.extend(page["Invocations"]["Invocation"])
        token = page.get("NextToken") or ""
        if not token:
            break
    return found[:limit]


def invocation(ecs: CloudAssistant, invoke_id: str, include_output: bool = False
               ) -> dict[str, Any]:
    """One invocation with its per-instance records; ``InvalidInvokeId.NotFound`` if none."""
    from shared.errors import CloudCallError

    found = describe_invocations(ecs, invoke_id=invoke_id, include_output=include_output,
                                 limit=1)
    if not found:
        raise CloudCallError("DescribeInvocations", "InvalidInvokeId.NotFound",
                             f"invocation {invoke_id} does not exist in this region")
    return found[0]


def instances_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    return list((record.get("InvokeInstances") or {}).get("InvokeInstance") or [])


def stop_invocation(ecs: CloudAssistant, invoke_id: str, instance_ids: list[str]) -> None:
    from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

    req = StopInvocationRequest()
    req.set_InvokeId(invoke_id)
    if instance_ids:
        req.set_InstanceIds(instance_ids)
    ecs.call(req)


def describe_commands(ecs: CloudAssistant, *, command_id: str = "", name: str = "",
                      type_: str = "", limit: int = PAGE) -> list[dict[str, Any]]:
    from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest

    found: list[dict[str, Any]] = []
    token = ""
    while len(found) < limit:
        req = DescribeCommandsRequest()
        for setter, value in ((req.set_CommandId, command_id), (req.set_Name, name),
                              (req.set_Type, type_), (req.set_NextToken, token)):
            if value:
                setter(value)
        req.set_MaxResults(min(PAGE, max(1, limit - len(found))))
        page = ecs.call(req)
        found.extend(page["Commands"]["Command"])
        token = page.get("NextToken") or ""
        if not token:
            break
    return found[:limit]


def modify_command(ecs: CloudAssistant, command_id: str, *, name: str | None = None,
                   description: str | None = None, timeout: int | None = None,
                   working_dir: str | None = None) -> None:
    from aliyunsdkecs.request.v20140526.ModifyCommandRequest import ModifyCommandRequest

    req = ModifyCommandRequest()
    req.set_CommandId(command_id)
    if name is not None:
        req.set_Name(name)
    if description is not None:
        req.set_Description(description)
    if timeout is not None:
        req.set_Timeout(timeout)
    if working_dir is not None:
        req.set_WorkingDir(working_dir)
    ecs.call(req)


def decode(content: str) -> str:
    """A Base64 ``CommandContent`` / ``Output`` as text (as-is if it is not Base64)."""
    try:
        return base64.b64decode(content or "", validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return content or ""
