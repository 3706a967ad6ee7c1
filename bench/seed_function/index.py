"""The seed's Python sample as a Function Compute function, for the billed-time comparison.

Same sequence and the same calls as ``tests/seed/seed_sample.py`` (the seed document's sample):
CreateCommand with the Base64 script, InvokeCommand (``Timed`` false) on one instance, sleep
15 s inside the function, then DescribeInvocationResults once and decode the first result's
Output. Only the script and the sleep come from the event, and the keys and endpoint from the
environment (``SEED_ECS_ENDPOINT``, ``SEED_ACCESS_KEY_ID``, ``SEED_ACCESS_KEY_SECRET``), as
the ported sample takes them. The function returns what its single read saw, so the benchmark
can tell whether the result was captured and when.

Event: ``{"instance_id": "i-…", "command": "sleep 1; echo done", "sleep_seconds": 15}``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Any

from aliyunsdkcore import client
from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest
from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
    DescribeInvocationResultsRequest,
)
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

log = logging.getLogger("seed")

# The sample hard-codes its keys; here the bench passes the local cloud's pair in (no
# placeholder that looks like a real AccessKey id is kept in the repository).
access_key = os.environ["SEED_ACCESS_KEY_ID"]
acess_key_secrect = os.environ["SEED_ACCESS_KEY_SECRET"]
region_name = "cn-hangzhou"

# As in the sample: one client, built when the module loads.
clt = client.AcsClient(access_key, acess_key_secrect, region_name)
if os.environ.get("SEED_ECS_ENDPOINT"):
    clt.add_endpoint(region_name, "Ecs", os.environ["SEED_ECS_ENDPOINT"].split("://")[-1])


def _send_request(request: Any) -> dict[str, Any] | None:
    request.set_accept_format("json")
    try:
        response_str = clt.do_action(request)
        log.info("%s", response_str)
        detail: dict[str, Any] = json.loads(response_str)
        return detail
    except Exception as exc:  # the sample logs and carries on
        log.error("%s", exc)
        return None


def create_command(command_content: str, type_: str, name: str, description: str) -> str | None:
    request = CreateCommandRequest()
    request.set_CommandContent(command_content)
    request.set_Type(type_)
    request.set_Name(name)
    request.set_Description(description)
    response = _send_request(request)
    if response is None:
        return None
    return response.get("CommandId")


def invoke_command(instance_id: str, command_id: str, timed: str, cronat: str) -> str | None:
    request = InvokeCommandRequest()
    request.set_Timed(timed)
    request.set_InstanceIds([instance_id])
    request.set_CommandId(command_id)
    request.set_Frequency(cronat)
    response = _send_request(request)
    return None if response is None else response.get("InvokeId")


def get_task_output_by_id(instance_id: str, invoke_id: str) -> dict[str, Any] | None:
    """The sample's single read; returns the first result (the sample keeps it as
    ``invoke_detail``) with its decoded output."""
    request = DescribeInvocationResultsRequest()
    request.set_InstanceId(instance_id)
    request.set_InvokeId(invoke_id)
    response = _send_request(request)
    if response is None:
        return None
    for item in response.get("Invocation", {}).get("InvocationResults", {}).get(
            "InvocationResult", []):
        output = base64.b64decode(item.get("Output") or "").decode("utf-8", "replace")
        return {"status": item.get("InvocationStatus"), "output": output}
    return {"status": None, "output": None}


def handler(event: bytes, context: Any) -> dict[str, Any]:
    args = json.loads(event)
    instance_id = args["instance_id"]
    command_str = args["command"]
    command_id = create_command(base64.b64encode(command_str.encode("utf-8")).decode("ascii"),
                                "RunShellScript", "test", "test")
    if command_id is None:
        return {"error": "create command failed"}
    invoke_id = invoke_command(instance_id, command_id, "false", "")
    if invoke_id is None:
        return {"error": "invoke command failed"}
    time.sleep(float(args.get("sleep_seconds", 15)))
    detail = get_task_output_by_id(instance_id, invoke_id)
    read_at = time.time()
    if detail is None:
        return {"error": "get result failed", "invoke_id": invoke_id, "read_at": read_at}
    return {"invoke_id": invoke_id, "command_id": command_id, "read_at": read_at, **detail}
