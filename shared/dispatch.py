"""Turn an accepted command request into Cloud Assistant work, exactly once.

Resolve the command (CreateCommand, or the request's saved ``CommandId``), then per batch of at
most 100 instances: InvokeCommand, record the invocation and queue its first follow-up for the
collector. Every call carries a ``ClientToken`` derived from the request's idempotency key, so a
redelivered trigger gets the same command and the same invocations back instead of running
the script twice. A refusal cleans up after itself: nothing is left behind.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shared.clients import Clients, CloudAssistant
from shared.config import Settings
from shared.errors import CloudCallError
from shared.followup import DEADLINE_MARGIN, FollowUp, first_delay
from shared.preflight import Ineligible, Plan
from shared.record import write_record
from shared.request import DEFAULT_TIMEOUT, CommandRequest
from shared.results import dumps, invoke_prefix, result_key, skipped_document

log = logging.getLogger("assistflow.dispatch")

BATCH_SIZE = 100  # InvokeCommand's limit on InstanceId.N
MAX_FOLLOWUP_BYTES = 60 * 1024  # MNS takes 64 KB per message


@dataclass(frozen=True)
class Accepted:
    """What the caller is told: which invocations run and where their results will be."""

    command_id: str
    invoke_ids: tuple[str, ...]
    locations: tuple[str, ...]
    request_id: str
    skipped: tuple[Ineligible, ...] = ()
    batches: tuple[tuple[str, ...], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "InvokeId": self.invoke_ids[0],
            "InvokeIds": list(self.invoke_ids),
            "CommandId": self.command_id,
            "Results": list(self.locations),
            "RequestId": self.request_id,
        }
        if self.skipped:
            body["Skipped"] = [{"InstanceId": i.instance_id, "Reason": i.reason,
                                "Message": i.message} for i in self.skipped]
        return body


def client_token(idempotency_key: str, purpose: str) -> str:
    """A ≤64-character ASCII ``ClientToken`` for one call made on behalf of one request."""
    return hashlib.sha256(f"{idempotency_key}|{purpose}".encode()).hexdigest()


def batches(instance_ids: tuple[str, ...], size: int = BATCH_SIZE) -> list[tuple[str, ...]]:
    return [instance_ids[i:i + size] for i in range(0, len(instance_ids), size)]


def dispatch(request: CommandRequest, plan: Plan, clients: Clients, *, source: str,
             idempotency_key: str, request_id: str,
             now: Callable[[], float] = time.time) -> Accepted:
    """Create (or reuse) the command, invoke it on the plan's instances, record each batch.

    ``idempotency_key`` identifies the logical request (its ``ClientToken`` if given, else the
    trigger's key); ``request_id`` is the id derived from it. Raises ``CloudCallError`` if
    Cloud Assistant refuses.
    """
    ecs = clients.ecs_in(request.region)
    timeout = request.timeout if request.timeout is not None else (
        plan.saved_timeout or DEFAULT_TIMEOUT)
    command_id = resolve_command(request, ecs, idempotency_key, timeout)
    groups = batches(plan.instance_ids)
    first = _first_followup(request, clients.settings, command_id, source=source,
                            request_id=request_id, submitted_at=now(), timeout=timeout,
                            batches=len(groups))
    invoke_ids: list[str] = []
    try:
        for index, group in enumerate(groups):
            invoke_id = invoke_batch(request, ecs, command_id, group,
                                     client_token(idempotency_key, f"invoke-{index}"))
            invoke_ids.append(invoke_id)
            watchdog = clients.settings.completion_events and \
                len(group) <= clients.settings.events_max_instances and \
                events_reach(request, clients.settings)
            record_and_follow_up(clients, replace(first, invoke_id=invoke_id, pending=group,
                                                  watchdog=watchdog),
                                 plan.skipped if index == 0 else ())
            log.info("request %s: invoked %s on %d instance(s) as %s", request_id, command_id,
                     len(group), invoke_id)
    except CloudCallError as exc:
        clean_up_refused(request, ecs, command_id, exc, invoked=bool(invoke_ids))
        raise
    return Accepted(
        command_id=command_id,
        invoke_ids=tuple(invoke_ids),
        locations=tuple(f"oss://{first.bucket}/{invoke_prefix(first.prefix, i)}"
                        for i in invoke_ids),
        request_id=request_id,
        skipped=plan.skipped,
        batches=tuple(groups),
    )


def events_reach(request: CommandRequest, settings: Settings) -> bool:
    """Will this command's TaskCompleted events reach the collector? The trigger's filter takes
    only commands named ``settings.events_command_prefix…`` (template.yml: EventsCommandPrefix,
    by default the request's default Name); a saved command's name is not looked up, so saved
    commands, like other names, are collected by follow-ups alone."""
    return not request.command_id and request.name.startswith(settings.events_command_prefix)


def resolve_command(request: CommandRequest, ecs: CloudAssistant, idempotency_key: str,
                    timeout: int) -> str:
    """The request's saved ``CommandId``, or the ad-hoc command created for it (the same one
    again for a redelivery: same ClientToken)."""
    if request.command_id:
        return request.command_id
    return ecs.create_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        description=request.description, working_dir=request.working_dir, timeout=timeout,
        enable_parameter=bool(request.parameters) or "{{" in request.content,
        client_token=client_token(idempotency_key, "create"),
    )


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


def record_and_follow_up(clients: Clients, followup: FollowUp,
                         skipped: tuple[Ineligible, ...] = ()) -> None:
    """Record the invocation and queue its first follow-up; the first batch also carries (and
    stores a result.json for) the instances pre-flight skipped."""
    if skipped:
        followup = _with_skipped(followup, skipped)
        _record_skipped(clients, followup, skipped)
    write_record(clients.results, followup)
    clients.queues.send(clients.settings.followup_queue, followup.to_json(),
                        first_delay(followup.watchdog))


def clean_up_refused(request: CommandRequest, ecs: CloudAssistant, command_id: str,
                     exc: CloudCallError, invoked: bool) -> None:
    """After a failed InvokeCommand: a refusal leaves nothing behind, so the ad-hoc command made
    for it is deleted if nothing was invoked. A transient failure keeps the command: the
    caller's retry (same idempotency key, so the same ClientToken) gets this CommandId back
    from CreateCommand and must find it still there."""
    if invoked or not request.adhoc or exc.transient:
        return
    try:
        ecs.delete_command(command_id)
    except CloudCallError as err:  # the refusal matters more than the clean-up
        log.warning("could not delete command %s after a refused invocation: %s",
                    command_id, err)


def _first_followup(request: CommandRequest, settings: Settings, command_id: str, *,
                    source: str, request_id: str, submitted_at: float, timeout: int,
                    batches: int) -> FollowUp:
    """What every batch's first follow-up shares (each sets its invoke id and instances)."""
    return FollowUp(
        invoke_id="", command_id=command_id, region=request.region or settings.region,
        pending=(), attempt=1, deadline=submitted_at + timeout + DEADLINE_MARGIN,
        bucket=request.output.bucket or settings.results_bucket,
        prefix=request.output.prefix or settings.results_prefix, request_id=request_id,
        adhoc=request.adhoc, source=source, submitted_at=submitted_at, periodic=request.periodic,
        notify=_notify(request), batches=batches,
    )


def _notify(request: CommandRequest) -> dict[str, str] | None:
    target = request.notify
    if target is None:
        return None
    return {k: v for k, v in (("Url", target.url), ("Queue", target.queue),
                              ("Topic", target.topic)) if v}


def _with_skipped(followup: FollowUp, skipped: tuple[Ineligible, ...]) -> FollowUp:
    """Carry the skipped instances with the first batch, as many as fit in one message."""
    pairs = tuple((i.instance_id, i.reason) for i in skipped)
    candidate = replace(followup, skipped=pairs, skipped_count=len(pairs))
    while len(candidate.to_json()) > MAX_FOLLOWUP_BYTES and candidate.skipped:
        candidate = replace(candidate, skipped=candidate.skipped[: len(candidate.skipped) // 2])
    return candidate


def _record_skipped(clients: Clients, followup: FollowUp,
                    skipped: tuple[Ineligible, ...]) -> None:
    """A ``result.json`` per skipped instance, so every target has a result in OSS."""
    results = clients.results.named(followup.bucket)
    for item in skipped:
        results.put(result_key(followup.prefix, followup.invoke_id, item.instance_id),
                    dumps(skipped_document(item.instance_id, item.reason, item.message,
                                           followup)), "application/json")
