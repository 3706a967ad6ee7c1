"""Pre-flight: which target instances can run the command right now, and why not the others.

DescribeInstances (status, OS) and DescribeCloudAssistantStatus (agent heartbeat) before any
InvokeCommand, so a request learns *per instance* that it is stopped, has no agent online, or
runs the wrong OS for ``Type`` — instead of a failed invocation minutes later. A saved command
(``CommandId``) is looked up first: its type decides which OS it fits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.clients import Clients, CloudAssistant
from shared.errors import IneligibleInstancesError, Violation
from shared.request import CommandRequest

log = logging.getLogger("assistflow.preflight")

WINDOWS_TYPES = ("RunPowerShellScript", "RunBatScript")


@dataclass(frozen=True)
class Ineligible:
    instance_id: str
    reason: str  # InstanceNotFound | InstanceNotRunning | AgentNotOnline | OSTypeMismatch
    message: str


@dataclass(frozen=True)
class Plan:
    """What pre-flight decided: where the command runs, and what it left out."""

    instance_ids: tuple[str, ...]
    skipped: tuple[Ineligible, ...] = ()
    saved_timeout: int | None = None  # the saved command's Timeout, if the request names one


def preflight(request: CommandRequest, clients: Clients) -> Plan:
    """The instances to run ``request`` on; ``IneligibleInstancesError`` (one violation per
    instance) if some cannot run it and the request says Refuse, or none can."""
    ecs = clients.ecs_in(request.region)
    command_type, saved_timeout = request.type, None
    if request.command_id:  # a saved command: its type decides which OS it fits
        saved = ecs.describe_command(request.command_id)
        command_type = command_type or str(saved.get("Type", ""))
        saved_timeout = int(saved.get("Timeout") or 0) or None
    targets = request.instance_ids
    if not clients.settings.preflight:
        return Plan(targets, (), saved_timeout)
    ineligible = ineligible_instances(ecs, targets, command_type)
    if ineligible and (not request.skip_ineligible or len(ineligible) == len(targets)):
        index = {instance_id: n for n, instance_id in enumerate(targets)}
        raise IneligibleInstancesError(
            f"{len(ineligible)} of {len(targets)} instance(s) cannot run the command now"
            + ("" if request.skip_ineligible else
               "; fix them, drop them, or send OnIneligible: Skip to run on the rest"),
            [Violation(f"$.InstanceIds[{index[i.instance_id]}]", i.reason, i.message,
                       i.instance_id) for i in ineligible])
    if ineligible:
        log.info("skipping %d ineligible instance(s): %s", len(ineligible),
                 ", ".join(f"{i.instance_id} ({i.reason})" for i in ineligible))
        gone = {i.instance_id for i in ineligible}
        targets = tuple(i for i in targets if i not in gone)
    return Plan(targets, tuple(ineligible), saved_timeout)


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
