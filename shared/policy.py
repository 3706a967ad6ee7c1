"""What this deployment may touch: instances, command types, and where results and
notifications may go.

The allow-lists come from the environment (``ASSISTFLOW_ALLOWED_INSTANCES``: ids, or prefixes
ending in ``*``; ``ASSISTFLOW_ALLOWED_TYPES``: command types; ``ASSISTFLOW_ALLOWED_COMMANDS``:
the saved commands a request may name, by id, by name, or by a name prefix ending in ``*``;
empty allows everything).

A saved command (``CommandId``) is judged by what it is, not by what the request says: when
``AllowedTypes`` or ``AllowedCommands`` is set, or the request sends a ``Type`` beside it, the
intake looks the command up (DescribeCommands, one call) before anything runs; its own type must
be allowed, and a ``Type`` that contradicts it is a 400 (``needs_saved_command``,
``check_saved_command``).

The region a request acts in — its ``RegionId``, else the function's — must be one of
``ASSISTFLOW_ALLOWED_REGIONS`` (template: AllowedRegions); empty allows the function's own
region only, where the template then also limits the role's ECS permissions.

Where a request sends its results (``Output``) and its notification (``Notify.Queue`` /
``Notify.Topic``) is bounded by what the function role may write, and the template computes
both from the same parameters: the role may put objects under
``${ResultsBucketName}/${ResultsPrefix}/*`` (``ASSISTFLOW_RESULTS_BUCKET`` /
``ASSISTFLOW_RESULTS_PREFIX``) and send to queues and topics named ``${Prefix}-notify*``
(``ASSISTFLOW_NOTIFY_PREFIX``). A target outside them would run the command and then lose its
results to ``AccessDenied``, so it is refused up front; so is an ``Output.Prefix`` on the
deployment's own records (``invocations/``, the webhook's delivery markers).

A ``Notify.Url`` must resolve to public addresses only (``shared.notify_url``: no loopback,
private, link-local or metadata-service address), unless ``ASSISTFLOW_NOTIFY_ALLOWED_HOSTS``
(the template's ``NotifyAllowedHosts``) lists the host, the address or its network.

Checked before any API call, so a refused request creates nothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.config import RECORDS_PREFIX, Settings
from shared.errors import NotAllowedError, RequestInvalidError, Violation
from shared.request import CommandRequest

if TYPE_CHECKING:
    from shared.preflight import SavedCommand

_COMMAND_ID = re.compile(r"c-[A-Za-z0-9]{4,64}")


def instance_allowed(instance_id: str, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    return any(instance_id.startswith(entry[:-1]) if entry.endswith("*") else instance_id == entry
               for entry in allowed)


def _under(prefix: str, folder: str) -> bool:
    return prefix == folder or prefix.startswith(folder + "/")


def output_violations(bucket: str, prefix: str, settings: Settings) -> list[Violation]:
    """Why results may not go to ``bucket`` / ``prefix`` ('' for the deployment's own)."""
    violations = []
    if bucket and bucket != settings.results_bucket:
        violations.append(Violation(
            "$.Output.Bucket", "notWritable",
            f"the function role may write results only to this deployment's bucket "
            f"{settings.results_bucket} (ResultsBucketName); leave Output.Bucket out or name "
            "that bucket", bucket))
    records = (RECORDS_PREFIX, settings.deliveries_prefix)
    if prefix and any(_under(prefix, folder) for folder in records):
        violations.append(Violation(
            "$.Output.Prefix", "reservedPrefix",
            f"Output.Prefix {prefix!r} would land on the deployment's own records "
            f"({', '.join(f + '/' for f in records)}); choose a folder under "
            f"{settings.results_prefix}/", prefix))
    elif prefix and not _under(prefix, settings.results_prefix):
        violations.append(Violation(
            "$.Output.Prefix", "notWritable",
            f"the function role may write results only under {settings.results_prefix}/ "
            f"(ResultsPrefix); use {settings.results_prefix} or a folder under it, e.g. "
            f"{settings.results_prefix}/{prefix.split('/')[-1]}", prefix))
    return violations


def notify_violations(queue: str, topic: str, settings: Settings) -> list[Violation]:
    """Why the completion notification may not go to ``queue`` / ``topic``."""
    allowed = settings.notify_prefix
    return [Violation(
        f"$.Notify.{kind}", "notWritable",
        f"the function role may notify only {kind.lower()}s whose name starts with {allowed} "
        f"(ASSISTFLOW_NOTIFY_PREFIX), e.g. {allowed}-ops; or use Notify.Url"
        if allowed else "this deployment names no queue or topic it may notify "
        "(ASSISTFLOW_NOTIFY_PREFIX is empty); use Notify.Url", name)
        for kind, name in (("Queue", queue), ("Topic", topic))
        if name and not (allowed and name.startswith(allowed))]


def region_violations(region: str, settings: Settings) -> list[Violation]:
    """Why the request may not act in ``region`` ('' for the function's own)."""
    allowed = settings.allowed_regions or (settings.region,)
    if (region or settings.region) in allowed:
        return []
    what = f"region {region}" if region else "the request names no RegionId, so it would act " \
        f"in the function's region {settings.region}, which"
    return [Violation("$.RegionId", "allowList",
                      f"{what} is outside this deployment's regions ({', '.join(allowed)}; "
                      "ASSISTFLOW_ALLOWED_REGIONS)", region)]


def check_allowed(request: CommandRequest, settings: Settings) -> None:
    """Raise ``NotAllowedError`` listing every instance, type and target outside what this
    deployment may touch."""
    violations = [
        Violation(f"$.InstanceIds[{index}]", "allowList",
                  f"instance {instance_id} is outside this deployment's allow-list "
                  "(ASSISTFLOW_ALLOWED_INSTANCES)", instance_id)
        for index, instance_id in enumerate(request.instance_ids)
        if not instance_allowed(instance_id, settings.allowed_instances)
    ]
    violations += region_violations(request.region, settings)
    if settings.allowed_types and request.type and request.type not in settings.allowed_types:
        violations.append(Violation("$.Type", "allowList",
                                    f"command type {request.type} is not allowed here; allowed: "
                                    f"{', '.join(settings.allowed_types)}", request.type))
    violations += output_violations(request.output.bucket, request.output.prefix, settings)
    if request.notify is not None:
        violations += notify_violations(request.notify.queue, request.notify.topic, settings)
    if request.notify is not None and request.notify.url:
        from shared.notify_url import intake_violations

        violations += intake_violations(request.notify.url, settings.notify_allowed_hosts)
    if violations:
        raise NotAllowedError(f"{len(violations)} item(s) of the request are not allowed by this "
                              "deployment", violations)


def command_allowed(command_id: str, name: str, allowed: tuple[str, ...]) -> bool:
    """Is the saved command ``command_id`` named ``name`` on the ``AllowedCommands`` list? An
    entry is a command id (``c-…``), a name prefix ending in ``*``, or an exact name."""
    if not allowed:
        return True
    return any(command_id == entry if _COMMAND_ID.fullmatch(entry)
               else name.startswith(entry[:-1]) if entry.endswith("*") else name == entry
               for entry in allowed)


def needs_saved_command(request: CommandRequest, settings: Settings) -> bool:
    """Must the request's saved command be looked up before anything runs? When the allow-list
    judges saved commands, or a ``Type`` sent beside ``CommandId`` must be checked against it."""
    return bool(request.command_id) and bool(
        settings.allowed_types or settings.allowed_commands or request.type)


def check_saved_command(request: CommandRequest, saved: SavedCommand,
                        settings: Settings) -> None:
    """``RequestInvalidError`` (400) if the request's ``Type`` contradicts its saved command,
    ``NotAllowedError`` (403) if the saved command's own type, or the command itself, is
    outside this deployment's allow-list."""
    if request.type and saved.type and request.type != saved.type:
        raise RequestInvalidError([Violation(
            "$.Type", "savedType",
            f"Type is {request.type} but the saved command {saved.command_id} is a "
            f"{saved.type} command; leave Type out (the saved command's own type is used) or "
            "send its type", request.type)])
    violations = []
    if settings.allowed_types and saved.type not in settings.allowed_types:
        violations.append(Violation(
            "$.CommandId", "allowList",
            f"the saved command {saved.command_id} is a {saved.type or 'command of no known'} "
            f"type, which is not allowed here; allowed: {', '.join(settings.allowed_types)} "
            "(ASSISTFLOW_ALLOWED_TYPES)", saved.command_id))
    if not command_allowed(saved.command_id, saved.name, settings.allowed_commands):
        violations.append(Violation(
            "$.CommandId", "allowList",
            f"the saved command {saved.command_id} ({saved.name!r}) is not one this deployment "
            f"may run; allowed: {', '.join(settings.allowed_commands)} "
            "(ASSISTFLOW_ALLOWED_COMMANDS)", saved.command_id))
    if violations:
        raise NotAllowedError(f"the saved command {saved.command_id} is not allowed by this "
                              "deployment", violations)
