"""Turn a validated command request into Cloud Assistant work, exactly once.

CreateCommand, then InvokeCommand in batches of at most 100 instances, then one follow-up per
invocation for the collector. Every call carries a ``ClientToken`` derived from the request's
idempotency key, so a redelivered trigger gets the same command and the same invocations back
instead of running the script twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.clients import Clients
from shared.errors import CloudCallError
from shared.followup import DEADLINE_MARGIN, FIRST_DELAY, FollowUp
from shared.request import CommandRequest
from shared.results import invoke_prefix

log = logging.getLogger("assistflow.dispatch")

BATCH_SIZE = 100  # InvokeCommand's limit on InstanceId.N


@dataclass(frozen=True)
class Accepted:
    """What the caller is told: which invocations run and where their results will be."""

    command_id: str
    invoke_ids: tuple[str, ...]
    locations: tuple[str, ...]
    request_id: str
    batches: tuple[tuple[str, ...], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "InvokeId": self.invoke_ids[0],
            "InvokeIds": list(self.invoke_ids),
            "CommandId": self.command_id,
            "Results": list(self.locations),
            "RequestId": self.request_id,
        }


def client_token(idempotency_key: str, purpose: str) -> str:
    """A ≤64-character ASCII ``ClientToken`` for one call made on behalf of one request."""
    return hashlib.sha256(f"{idempotency_key}|{purpose}".encode()).hexdigest()


def batches(instance_ids: tuple[str, ...], size: int = BATCH_SIZE) -> list[tuple[str, ...]]:
    return [instance_ids[i:i + size] for i in range(0, len(instance_ids), size)]


def submit(request: CommandRequest, clients: Clients, *, source: str, idempotency_key: str,
           request_id: str, now: Callable[[], float] = time.time) -> Accepted:
    """Create and invoke the command, and queue a follow-up per invocation.

    ``idempotency_key`` identifies the logical request (the caller's ``ClientToken`` if given,
    else the webhook signature, queue message id or timer fire time). Raises
    ``CloudCallError`` if Cloud Assistant refuses; if nothing was invoked, the command created
    for this request is deleted again so a refusal leaves nothing behind.
    """
    settings = clients.settings
    key = request.client_token or idempotency_key
    command_id = clients.ecs.create_command(
        name=request.name, type_=request.type, content_b64=request.content_b64,
        description=request.description, working_dir=request.working_dir,
        timeout=request.timeout, client_token=client_token(key, "create"),
    )
    invoke_ids: list[str] = []
    groups = batches(request.instance_ids)
    submitted_at = now()
    try:
        for index, group in enumerate(groups):
            invoke_id = clients.ecs.invoke_command(
                command_id=command_id, instance_ids=list(group),
                client_token=client_token(key, f"invoke-{index}"),
            )
            invoke_ids.append(invoke_id)
            followup = FollowUp(
                invoke_id=invoke_id, command_id=command_id, region=settings.region,
                pending=group, attempt=1,
                deadline=submitted_at + request.timeout + DEADLINE_MARGIN,
                bucket=settings.results_bucket, prefix=settings.results_prefix,
                request_id=request_id, adhoc=True, source=source, submitted_at=submitted_at,
            )
            clients.queues.send(settings.followup_queue, followup.to_json(), FIRST_DELAY)
            log.info("invoked %s on %d instance(s) as %s", command_id, len(group), invoke_id)
    except CloudCallError:
        if not invoke_ids:
            _discard(clients, command_id)
        raise
    return Accepted(
        command_id=command_id,
        invoke_ids=tuple(invoke_ids),
        locations=tuple(f"oss://{settings.results_bucket}/"
                        f"{invoke_prefix(settings.results_prefix, i)}" for i in invoke_ids),
        request_id=request_id,
        batches=tuple(groups),
    )


def _discard(clients: Clients, command_id: str) -> None:
    try:
        clients.ecs.delete_command(command_id)
    except CloudCallError as exc:  # the refusal matters more than the clean-up
        log.warning("could not delete command %s after a refused invocation: %s",
                    command_id, exc)
