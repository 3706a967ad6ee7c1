"""The Cloud Assistant calls a request's batches are made of, and what every batch shares.

``resolve_command`` (CreateCommand for an ad-hoc command run in several batches, with its
ClientToken), ``run_batch`` (RunCommand), ``invoke_batch`` (InvokeCommand), the ClientToken of
each call (derived from the request's idempotency key), the command's Timeout, and the first
follow-up every batch's hand-over starts from. Used by the synchronous dispatch
(``shared.dispatch``) and the fan-out (``shared.fanout``).
"""

from __future__ import annotations

import hashlib

from shared.clients import CloudAssistant
from shared.config import Settings
from shared.followup import COMMAND_EXCERPT, DEADLINE_MARGIN, FollowUp
from shared.preflight import Plan
from shared.request import DEFAULT_TIMEOUT, CommandRequest

# The collector's deadline needs the saved command's Timeout; when its lookup failed after the
# command was invoked, the longest Timeout Cloud Assistant allows stands in (a deadline that
# is too late only delays CollectorTimeout; one too early would give up on running instances).
MAX_TIMEOUT = 86400


def client_token(idempotency_key: str, purpose: str) -> str:
    """A ≤64-character ASCII ``ClientToken`` for one call made on behalf of one request."""
    return hashlib.sha256(f"{idempotency_key}|{purpose}".encode()).hexdigest()


def resolve_command(request: CommandRequest, ecs: CloudAssistant, idempotency_key: str,
                    timeout: int) -> str:
    """The request's saved ``CommandId``, or the ad-hoc command created for it (the same one
    again for a redelivery: same ClientToken)."""
    if request.command_id:
        return request.command_id
    return ecs.create_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        description=request.description, working_dir=request.working_dir, timeout=timeout,
        enable_parameter=_uses_parameters(request),
        client_token=client_token(idempotency_key, "create"),
    )


def run_batch(request: CommandRequest, ecs: CloudAssistant, group: tuple[str, ...],
              token: str) -> tuple[str, str]:
    """RunCommand of the request's script on one batch: (CommandId, InvokeId)."""
    return ecs.run_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        instance_ids=list(group), client_token=token, description=request.description,
        working_dir=request.working_dir, timeout=command_timeout(request, None),
        enable_parameter=_uses_parameters(request),
        parameters=dict(request.parameters) or None, username=request.username,
        repeat_mode=request.repeat_mode, frequency=request.frequency)


def invoke_batch(request: CommandRequest, ecs: CloudAssistant, command_id: str,
                 group: tuple[str, ...], token: str) -> str:
    """InvokeCommand on one batch of instances; its InvokeId. A saved command takes the
    request's Timeout and WorkingDir here (an ad-hoc one got them at creation)."""
    return ecs.invoke_command(
        command_id=command_id, instance_ids=list(group), client_token=token,
        parameters=dict(request.parameters) or None,
        timeout=request.timeout if request.command_id else None,
        working_dir=request.working_dir if request.command_id else "",
        username=request.username, repeat_mode=request.repeat_mode,
        frequency=request.frequency,
    )


def command_timeout(request: CommandRequest, plan: Plan | None) -> int:
    if request.timeout is not None:
        return request.timeout
    return (plan.saved_timeout if plan else None) or DEFAULT_TIMEOUT


def _uses_parameters(request: CommandRequest) -> bool:
    """``EnableParameter`` only when the request sends ``Parameters`` (``{}`` for the
    ``{{ACS::…}}`` built-ins alone): with it on, Cloud Assistant reads every ``{{…}}`` of the
    script as a parameter and refuses one that is not a name (``CmdParam.InvalidParamName``,
    CreateCommand's error table) — a Docker or Go template's ``{{.Names}}``. Without
    Parameters the script runs as written."""
    return request.enable_parameter


def first_followup(request: CommandRequest, settings: Settings, command_id: str, *,
                    source: str, request_id: str, submitted_at: float, timeout: int,
                    batches: int, delete: bool) -> FollowUp:
    """What every batch's first follow-up shares (each sets its invoke id and instances).
    ``delete``: the collector deletes the command when done (CreateCommand's; RunCommand's
    delete themselves)."""
    return FollowUp(
        invoke_id="", command_id=command_id, region=request.region or settings.region,
        pending=(), attempt=1, deadline=submitted_at + timeout + DEADLINE_MARGIN,
        bucket=request.output.bucket or settings.results_bucket,
        prefix=request.output.prefix or settings.results_prefix, request_id=request_id,
        adhoc=delete, source=source, submitted_at=submitted_at, periodic=request.periodic,
        notify=_notify(request), batches=batches, command_name=request.name,
        command_type=request.type, command_excerpt=request.content[:COMMAND_EXCERPT],
    )


def _notify(request: CommandRequest) -> dict[str, str] | None:
    target = request.notify
    if target is None:
        return None
    return {k: v for k, v in (("Url", target.url), ("Queue", target.queue),
                              ("Topic", target.topic)) if v}
