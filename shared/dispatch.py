"""Turn an accepted command request into Cloud Assistant work, exactly once.

CreateCommand (or the request's saved ``CommandId``), then InvokeCommand in batches of at most
100 instances, each followed by a follow-up message for the collector. Every call carries a
``ClientToken`` derived from the request's idempotency key, so a redelivered trigger gets the
same command and the same invocations back instead of running the script twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.clients import Clients, CloudAssistant
from shared.errors import CloudCallError
from shared.followup import DEADLINE_MARGIN, FollowUp, first_delay
from shared.preflight import Ineligible
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


def request_key(idempotency_key: str) -> str:
    """The stable id of a logical request (``RequestId`` in answers and results)."""
    return "r-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def batches(instance_ids: tuple[str, ...], size: int = BATCH_SIZE) -> list[tuple[str, ...]]:
    return [instance_ids[i:i + size] for i in range(0, len(instance_ids), size)]


def submit(request: CommandRequest, clients: Clients, *, source: str, idempotency_key: str,
           request_id: str, targets: tuple[str, ...] | None = None,
           skipped: tuple[Ineligible, ...] = (), command_timeout: int | None = None,
           now: Callable[[], float] = time.time) -> Accepted:
    """Create (or reuse) the command, invoke it on ``targets``, queue a follow-up per batch.

    ``idempotency_key`` identifies the logical request (the caller's ``ClientToken`` if given,
    else the webhook signature, queue message id or timer fire time). ``targets`` defaults to
    all the request's instances; ``skipped`` are the ones pre-flight left out, recorded with the
    first batch. Raises ``CloudCallError`` if Cloud Assistant refuses; if nothing was invoked,
    an ad-hoc command created for this request is deleted again, so a refusal leaves nothing.
    """
    settings = clients.settings
    ecs = clients.ecs_in(request.region)
    key = request.client_token or idempotency_key
    # One id per logical request, whichever delivery of it this is: the results (result.json,
    # summary.json) a duplicate delivery writes must be byte-identical to the first one's.
    log.info("request %s is %s", request_id, request_key(key))
    request_id = request_key(key)
    bucket = request.output.bucket or settings.results_bucket
    prefix = request.output.prefix or settings.results_prefix
    timeout = request.timeout if request.timeout is not None else (
        command_timeout or DEFAULT_TIMEOUT)
    command_id = request.command_id or ecs.create_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        description=request.description, working_dir=request.working_dir, timeout=timeout,
        enable_parameter=bool(request.parameters) or "{{" in request.content,
        client_token=client_token(key, "create"),
    )
    invoke_ids: list[str] = []
    groups = batches(request.instance_ids if targets is None else targets)
    submitted_at = now()
    try:
        for index, group in enumerate(groups):
            invoke_id = ecs.invoke_command(
                command_id=command_id, instance_ids=list(group),
                client_token=client_token(key, f"invoke-{index}"),
                parameters=dict(request.parameters) or None,
                timeout=request.timeout if request.command_id else None,
                working_dir=request.working_dir if request.command_id else "",
                username=request.username, repeat_mode=request.repeat_mode,
                frequency=request.frequency,
            )
            invoke_ids.append(invoke_id)
            followup = FollowUp(
                invoke_id=invoke_id, command_id=command_id,
                region=request.region or settings.region, pending=group, attempt=1,
                deadline=submitted_at + timeout + DEADLINE_MARGIN, bucket=bucket, prefix=prefix,
                request_id=request_id, adhoc=request.adhoc,
                source=source, submitted_at=submitted_at, periodic=request.periodic,
                notify=_notify(request), batches=len(groups),
                watchdog=settings.completion_events and len(group) <= settings.events_max_instances,
            )
            if index == 0 and skipped:
                followup = _with_skipped(followup, skipped)
                _record_skipped(clients, followup, skipped)
            write_record(clients.results, followup)
            clients.queues.send(settings.followup_queue, followup.to_json(),
                                first_delay(followup.watchdog))
            log.info("invoked %s on %d instance(s) as %s", command_id, len(group), invoke_id)
    except CloudCallError as exc:
        # A refusal leaves nothing behind. A transient failure keeps the command: the caller's
        # retry (same idempotency key, so the same ClientToken) gets this CommandId back from
        # CreateCommand and must find it still there.
        if not invoke_ids and request.adhoc and not exc.transient:
            _discard(ecs, command_id)
        raise
    return Accepted(
        command_id=command_id,
        invoke_ids=tuple(invoke_ids),
        locations=tuple(f"oss://{bucket}/{invoke_prefix(prefix, i)}" for i in invoke_ids),
        request_id=request_id,
        skipped=skipped,
        batches=tuple(groups),
    )


def _notify(request: CommandRequest) -> dict[str, str] | None:
    target = request.notify
    if target is None:
        return None
    return {k: v for k, v in (("Url", target.url), ("Queue", target.queue),
                              ("Topic", target.topic)) if v}


def _with_skipped(followup: FollowUp, skipped: tuple[Ineligible, ...]) -> FollowUp:
    """Carry the skipped instances with the first batch, as many as fit in one message."""
    from dataclasses import replace

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


def _discard(ecs: CloudAssistant, command_id: str) -> None:
    try:
        ecs.delete_command(command_id)
    except CloudCallError as exc:  # the refusal matters more than the clean-up
        log.warning("could not delete command %s after a refused invocation: %s",
                    command_id, exc)
