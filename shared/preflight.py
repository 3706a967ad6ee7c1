"""Pre-flight: which target instances can run the command right now, and why not the others.

DescribeInstances (status, OS) and DescribeCloudAssistantStatus (agent heartbeat) before any
InvokeCommand, so a request learns *per instance* that it is stopped, has no agent online, or
runs the wrong OS for ``Type`` — instead of a failed invocation minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.clients import CloudAssistant

WINDOWS_TYPES = ("RunPowerShellScript", "RunBatScript")


@dataclass(frozen=True)
class Ineligible:
    instance_id: str
    reason: str  # InstanceNotFound | InstanceNotRunning | AgentNotOnline | OSTypeMismatch
    message: str


def ineligible_instances(ecs: CloudAssistant, instance_ids: tuple[str, ...],
                         command_type: str) -> list[Ineligible]:
    instances = ecs.describe_instances(instance_ids)
    found: list[Ineligible] = []
    running = []
    for instance_id in instance_ids:
        info = instances.get(instance_id)
        if info is None:
            found.append(Ineligible(instance_id, "InstanceNotFound",
                                    f"{instance_id} does not exist in this region"))
        elif info.get("Status") != "Running":
            found.append(Ineligible(instance_id, "InstanceNotRunning",
                                    f"{instance_id} is {info.get('Status')}; start it first"))
        elif _os_mismatch(command_type, str(info.get("OSType", "")).lower()):
            found.append(Ineligible(instance_id, "OSTypeMismatch",
                                    f"{instance_id} runs {info.get('OSType')}; {command_type} "
                                    "does not run there"))
        else:
            running.append(instance_id)
    agents = ecs.cloud_assistant_status(tuple(running)) if running else {}
    for instance_id in running:
        if agents.get(instance_id) != "true":
            found.append(Ineligible(instance_id, "AgentNotOnline",
                                    f"the Cloud Assistant agent on {instance_id} is not online; "
                                    "install or start it (systemctl start aliyun.service)"))
    order = {instance_id: n for n, instance_id in enumerate(instance_ids)}
    return sorted(found, key=lambda i: order[i.instance_id])


def _os_mismatch(command_type: str, os_type: str) -> bool:
    if not command_type or not os_type:
        return False
    return (command_type in WINDOWS_TYPES) != (os_type == "windows")
