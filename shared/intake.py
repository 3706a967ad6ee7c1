"""From a trigger's raw request to Cloud Assistant work: the path every adapter shares.

validate (schema) -> allow-list -> pre-flight -> dispatch. Each step raises an
``AssistflowError`` with a code, an HTTP-ish status and, where it has several reasons, the
``Errors`` list — the one JSON shape all triggers answer with. Nothing is created unless every
check before dispatch passed.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.clients import Clients
from shared.dispatch import Accepted, submit
from shared.errors import IneligibleInstancesError, Violation
from shared.policy import check_allowed
from shared.preflight import ineligible_instances
from shared.request import CommandRequest, parse_request

log = logging.getLogger("assistflow.intake")


def accept(body: bytes | str | dict[str, Any], clients: Clients, *, source: str,
           idempotency_key: str, request_id: str) -> Accepted:
    """Validate, check and submit one command request. See the module docstring."""
    request = parse_request(body)
    check_allowed(request, clients.settings)
    return run(request, clients, source=source, idempotency_key=idempotency_key,
               request_id=request_id)


def run(request: CommandRequest, clients: Clients, *, source: str, idempotency_key: str,
        request_id: str) -> Accepted:
    """Pre-flight and dispatch an already validated and allowed request."""
    ecs = clients.ecs_in(request.region)
    command_type, command_timeout = request.type, None
    if request.command_id:  # a saved command: its type decides which OS it fits
        saved = ecs.describe_command(request.command_id)
        command_type = command_type or str(saved.get("Type", ""))
        command_timeout = int(saved.get("Timeout") or 0) or None
    targets = request.instance_ids
    skipped: tuple[Any, ...] = ()
    if clients.settings.preflight:
        ineligible = ineligible_instances(ecs, request.instance_ids, command_type)
        if ineligible and (not request.skip_ineligible or len(ineligible) == len(targets)):
            index = {instance_id: n for n, instance_id in enumerate(request.instance_ids)}
            raise IneligibleInstancesError(
                f"{len(ineligible)} of {len(targets)} instance(s) cannot run the command now"
                + ("" if request.skip_ineligible else
                   "; fix them, drop them, or send OnIneligible: Skip to run on the rest"),
                [Violation(f"$.InstanceIds[{index[i.instance_id]}]", i.reason, i.message,
                           i.instance_id) for i in ineligible])
        if ineligible:
            skipped = tuple(ineligible)
            gone = {i.instance_id for i in ineligible}
            targets = tuple(i for i in targets if i not in gone)
            log.info("skipping %d ineligible instance(s): %s", len(skipped),
                     ", ".join(f"{i.instance_id} ({i.reason})" for i in skipped))
    return submit(request, clients, source=source, idempotency_key=idempotency_key,
                  request_id=request_id, targets=targets, skipped=skipped,
                  command_timeout=command_timeout)
