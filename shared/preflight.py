"""Pre-flight: which target instances can run the command, and why not the others.

Cloud Assistant refuses a whole RunCommand / InvokeCommand when one of its instances is not
Running, has no agent, or cannot take the command ("If multiple ECS instances are specified and
one of the instances does not meet the requirements for running the command, the call fails",
https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-invokecommand;
error ``InvalidInstance.NotMatch``, or ``InvalidInstance.NotFound`` for an unknown id). So a
request that fits one call is simply sent, and pre-flight runs only when that call is refused:
DescribeInstances (status, OS) and DescribeCloudAssistantStatus (agent heartbeat) then say *per
instance* what is wrong — the 422's ``Errors``, or the ``Skipped`` list of ``OnIneligible:
Skip`` before the call is made again on the rest. A request of several batches is checked up
front instead: a refused second batch could not take the first one back, and a request refused
with 422 must leave nothing behind.

A saved command (``CommandId``) is looked up when its type (which OS it fits) or its Timeout
(the collector's deadline) is needed — by the intake before anything runs when the allow-list
or a ``Type`` sent beside it needs it (``shared.policy.needs_saved_command``). Its own type
governs: a request's ``Type`` never stands in for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.clients import Clients, CloudAssistant
from shared.clients.cloud_assistant import DESCRIBE_INSTANCES_MAX, LOOKUP_WORKERS
from shared.errors import CloudCallError, IneligibleInstancesError, Violation
from shared.parallel import run_each
from shared.request import CommandRequest

log = logging.getLogger("assistflow.preflight")

WINDOWS_TYPES = ("RunPowerShellScript", "RunBatScript")
BATCH_SIZE = 100  # RunCommand's and InvokeCommand's limit on InstanceId.N
# Refusals of a RunCommand / InvokeCommand that name instances (the InvokeCommand reference's
# error table; the older InvalidInstanceStatus, and the StopInvocation sample's
# InvalidInstance.NoClient). IdempotentParameterMismatch: an earlier delivery of this request
# ran on the eligible instances only, with this ClientToken — pre-flight finds that subset again.
INELIGIBLE_CODES = frozenset({"InvalidInstance.NotMatch", "InvalidInstance.NotFound",
                              "InvalidInstanceStatus", "InvalidInstance.NoClient",
                              "IdempotentParameterMismatch"})


@dataclass(frozen=True)
class Ineligible:
    instance_id: str
    reason: str  # InstanceNotFound | InstanceNotRunning | AgentNotOnline | OSTypeMismatch
    message: str


@dataclass(frozen=True)
class Plan:
    """Where the command runs and what pre-flight left out. ``checked`` False: not looked at
    yet — the invocation itself will tell (``refused`` runs the check)."""

    instance_ids: tuple[str, ...]
    skipped: tuple[Ineligible, ...] = ()
    saved_timeout: int | None = None  # the saved command's Timeout, if the request names one
    checked: bool = True
    saved_type: str = ""  # the saved command's Type, once looked up
    # What DescribeInstances said of the targets when a selector was resolved (shared.targets):
    # the check asks only the agents then
    known: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False,
                                                   repr=False)


@dataclass(frozen=True)
class SavedCommand:
    """What DescribeCommands says of the command a request names."""

    command_id: str
    type: str
    name: str
    timeout: int | None


def describe_saved(ecs: CloudAssistant, command_id: str) -> SavedCommand:
    """The saved command; ``InvalidCmdId.NotFound`` (422) if there is none."""
    saved = ecs.describe_command(command_id)
    return SavedCommand(command_id, str(saved.get("Type", "")), str(saved.get("Name", "")),
                        int(saved.get("Timeout") or 0) or None)


def preflight(request: CommandRequest, clients: Clients,
              saved: SavedCommand | None = None,
              known: Mapping[str, Mapping[str, Any]] | None = None,
              up_front: bool = False) -> Plan:
    """The plan for ``request``: deferred for a request that fits one call; checked now (and
    ``IneligibleInstancesError`` if it must be refused) for a larger one, or ``up_front``
    (one rolled out in waves). ``saved``: the request's saved command if the intake looked
    it up already; ``known``: Status and OSType of the targets, when a selector's resolution
    gave them."""
    targets = request.instance_ids
    if (len(targets) <= BATCH_SIZE and not up_front) or not clients.settings.preflight:
        return Plan(targets, checked=not clients.settings.preflight,
                    saved_timeout=saved.timeout if saved else None,
                    saved_type=saved.type if saved else "", known=known or {})
    ecs = clients.ecs_in(request.region)
    command_type, saved_timeout = request.type, None
    if request.command_id:  # its type decides which OS it fits
        if saved is None:
            saved = describe_saved(ecs, request.command_id)
        command_type, saved_timeout = saved.type, saved.timeout
    return replace(check(request, ecs, targets, command_type, saved_timeout, known),
                   saved_type=saved.type if saved else "")


def refused(request: CommandRequest, plan: Plan, ecs: CloudAssistant, error: CloudCallError,
            command_type: str = "") -> Plan:
    """After ``error`` refused the call on ``plan``: the checked plan to try again with
    (``OnIneligible: Skip``), or ``IneligibleInstancesError``. The refusal itself is raised
    again when it did not name instances, when the plan was checked already, or when the check
    finds every instance eligible (the cloud's word stands)."""
    if plan.checked or error.error_code not in INELIGIBLE_CODES:
        raise error
    log.info("%s refused by %s; looking at each instance", error.api, error.error_code)
    checked = check(request, ecs, plan.instance_ids, command_type or request.type,
                    plan.saved_timeout, plan.known)
    if not checked.skipped:
        raise error
    return checked


def check(request: CommandRequest, ecs: CloudAssistant, targets: tuple[str, ...],
          command_type: str, saved_timeout: int | None,
          known: Mapping[str, Mapping[str, Any]] | None = None) -> Plan:
    """Look at every target; refuse (Refuse, or none eligible) or leave the ineligible out."""
    ineligible = ineligible_instances(ecs, targets, command_type, known=known)
    if ineligible and (not request.skip_ineligible or len(ineligible) == len(targets)):
        index = {instance_id: n for n, instance_id in enumerate(request.instance_ids)}
        raise IneligibleInstancesError(
            f"{len(ineligible)} of {len(targets)} instance(s) cannot run the command now"
            + ("" if request.skip_ineligible else
               "; fix them, drop them, or send OnIneligible: Skip to run on the rest"),
            [Violation(_target_path(request, index[i.instance_id]), i.reason, i.message,
                       i.instance_id) for i in ineligible])
    if ineligible:
        log.info("skipping %d ineligible instance(s): %s", len(ineligible),
                 ", ".join(f"{i.instance_id} ({i.reason})" for i in ineligible))
    gone = {i.instance_id for i in ineligible}
    return Plan(tuple(i for i in targets if i not in gone), tuple(ineligible), saved_timeout,
                known=known or {})


def _target_path(request: CommandRequest, index: int) -> str:
    """A listed instance's path; a selected one has none of its own: the selector's."""
    return request.selector_path if request.selector else f"$.InstanceIds[{index}]"


def saved_command(ecs: CloudAssistant, command_id: str) -> tuple[str, int | None]:
    """(Type, Timeout) of the saved command; ``InvalidCmdId.NotFound`` if there is none."""
    saved = describe_saved(ecs, command_id)
    return saved.type, saved.timeout


def with_saved_timeout(plan: Plan, timeout: int | None) -> Plan:
    return plan if timeout is None else replace(plan, saved_timeout=timeout)


def ineligible_instances(ecs: CloudAssistant, instance_ids: tuple[str, ...],
                         command_type: str,
                         known: Mapping[str, Mapping[str, Any]] | None = None
                         ) -> list[Ineligible]:
    """Each instance that cannot run ``command_type`` now, with the reason. The agents are
    asked about only after DescribeInstances, and only for running instances: an unknown id
    makes DescribeCloudAssistantStatus fail as a whole. ``known``: Status and OSType of the
    instances as a DescribeInstances just gave them (a resolved selector's); then only the
    agents are asked.

    Each DescribeInstances chunk (100 ids) asks about its own agents as soon as it is answered,
    the chunks side by side (``LOOKUP_WORKERS``): a large request's two lookups overlap instead
    of the second waiting for the slowest call of the first (10,000 instances under the
    ``realistic`` profile, 20 side by side: 2.9 s of lookups before the webhook could answer,
    3.4 s one lookup after the other; the same 300 calls)."""
    if known and all(i in known for i in instance_ids):
        return _judged(ecs, instance_ids, known, command_type)
    chunks = [instance_ids[n:n + DESCRIBE_INSTANCES_MAX]
              for n in range(0, len(instance_ids), DESCRIBE_INSTANCES_MAX)]
    parts = run_each(lambda ids: _judged(ecs, ids, ecs.describe_instances(ids), command_type),
                     chunks, LOOKUP_WORKERS)
    return [item for part in parts for item in part]


def _judged(ecs: CloudAssistant, instance_ids: tuple[str, ...],
            instances: Mapping[str, Mapping[str, Any]], command_type: str) -> list[Ineligible]:
    """The ineligible among ``instance_ids``, given what DescribeInstances said of them."""
    found = {i: _reason(i, instances.get(i), command_type) for i in instance_ids}
    running = tuple(i for i, reason in found.items() if reason is None)
    agents = ecs.cloud_assistant_status(running) if running else {}
    for instance_id in running:
        if agents.get(instance_id) != "true":
            found[instance_id] = Ineligible(
                instance_id, "AgentNotOnline",
                f"the Cloud Assistant agent on {instance_id} is not online; install or start "
                "it (systemctl start aliyun.service)")
    return [item for item in found.values() if item is not None]


def _reason(instance_id: str, info: Mapping[str, Any] | None, command_type: str
            ) -> Ineligible | None:
    if info is None:
        return Ineligible(instance_id, "InstanceNotFound",
                          f"{instance_id} does not exist in this region")
    if info.get("Status") != "Running":
        return Ineligible(instance_id, "InstanceNotRunning",
                          f"{instance_id} is {info.get('Status')}; start it first")
    if _os_mismatch(command_type, str(info.get("OSType", "")).lower()):
        return Ineligible(instance_id, "OSTypeMismatch",
                          f"{instance_id} runs {info.get('OSType')}; {command_type} does not "
                          "run there")
    return None


def _os_mismatch(command_type: str, os_type: str) -> bool:
    if not command_type or not os_type:
        return False
    return (command_type in WINDOWS_TYPES) != (os_type == "windows")
