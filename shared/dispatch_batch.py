"""The dispatch function's work: invoke one batch of a fanned-out request (``shared.fanout``).

One ``DispatchJob`` names the request and the batch; the request record says on what and how.
In order, each step idempotent, so a redelivered job (or two at once) converges:

1. the batch's own state object says it runs and was handed over: only its dispatch marker
   is removed;
2. InvokeCommand on the batch with its own ClientToken (the same token again returns the same
   InvokeId — "How to ensure idempotence", https://www.alibabacloud.com/help/en/doc-detail/
   25693.html); a transient error (throttling, 5xx) is retried within the invocation's
   patience (``shared.retry``: jittered backoff) and then fails the invocation, so the trigger
   delivers the job again; a refusal for good (an instance stopped meanwhile, the command
   deleted) is recorded in the batch (``Failed`` with the code: its instances get
   ``NotStarted`` with that reason in the request summary) and ends as a collected batch
   would (``shared.rollout.batch_done``), so the rest of the request goes on;
3. the batch state ``Invoked`` (its InvokeId), then the hand-over to the collector (record,
   first follow-up, open marker: ``shared.handoff``), then ``handed``, then the dispatch marker
   goes. A job that dies in between leaves a marker the reconciler acts on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from shared.clients import Clients
from shared.errors import AssistflowError, CloudCallError
from shared.fanout import DispatchJob
from shared.followup import DEADLINE_MARGIN
from shared.handoff import for_batch, hand_over
from shared.ledger import (
    FAILED,
    INVOKED,
    RequestRecord,
    collect_due,
    marker_key,
    read_batch,
    read_request,
    save_batch,
)

log = logging.getLogger("assistflow.dispatch_batch")


class RequestGoneError(AssistflowError):
    """The job's request record is not there (expired, or never written): nothing to do."""

    code = "RequestNotFound"
    status = 404


def run(job: DispatchJob, clients: Clients) -> dict[str, Any]:
    results = clients.results
    record = read_request(results, job.request_id)
    if record is None or job.batch >= len(record.batches):
        raise RequestGoneError(f"request {job.request_id} has no record with a batch "
                               f"{job.batch}")
    batch = read_batch(results, record, job.batch)
    if batch.state == FAILED or (batch.state == INVOKED and batch.handed):
        _quietly_delete(clients, job.marker)
        return {"Batch": job.batch, "InvokeId": batch.invoke_id, "State": batch.state,
                "Duplicate": True}
    ecs = clients.ecs_in(record.followup.region)
    invoke = record.invoke
    try:
        invoke_id = ecs.invoke_command(
            command_id=record.command_id, instance_ids=list(batch.instances),
            client_token=job.token, parameters=invoke.get("Parameters"),
            timeout=invoke.get("Timeout"), working_dir=invoke.get("WorkingDir") or "",
            username=invoke.get("Username") or "", repeat_mode="Once", frequency="")
    except CloudCallError as exc:
        if exc.transient:
            raise  # the trigger delivers the job again (its retry policy, then its DLQ)
        log.warning("request %s: batch %d refused for good: %s", record.request_id, job.batch,
                    exc)
        save_batch(results, record.request_id, job.batch,
                   replace(batch, state=FAILED, code=exc.error_code, message=exc.message))
        from shared.rollout import batch_done

        batch_done(clients, ecs, record, job.marker)
        return {"Batch": job.batch, "State": FAILED, "Code": exc.error_code}
    invoked = replace(batch, state=INVOKED, invoke_id=invoke_id, code="", message="")
    save_batch(results, record.request_id, job.batch, invoked)
    handed = _hand_over(clients, record, job.batch, invoke_id)
    if handed:
        save_batch(results, record.request_id, job.batch, replace(invoked, handed=True))
        _quietly_delete(clients, job.marker)
    log.info("request %s: batch %d (%d instances) runs as %s", record.request_id, job.batch,
             len(batch.instances), invoke_id)
    return {"Batch": job.batch, "InvokeId": invoke_id, "State": INVOKED, "Handed": handed}


def _hand_over(clients: Clients, record: RequestRecord, index: int, invoke_id: str) -> bool:
    """Hand the batch to the collector. A later wave starts long after the submit: its
    deadline counts from now (the command's Timeout is the template's deadline less its
    submit time and margin)."""
    base = record.followup
    timeout = base.deadline - base.submitted_at - DEADLINE_MARGIN
    template = replace(base, command_id=record.command_id,
                       deadline=max(base.deadline, time.time() + timeout + DEADLINE_MARGIN))
    group = record.batches[index].instances
    marker = marker_key(record.request_id, index, collect_due(template.deadline))
    # TaskCompleted events reach the collector for an ad-hoc command named with the trigger's
    # prefix (shared.dispatch.events_reach); small waves are then stored as they finish.
    events = record.deletes_command and \
        record.command_name.startswith(clients.settings.events_command_prefix)
    followup = for_batch(template, clients.settings, invoke_id, group, events, marker)
    return hand_over(clients, followup, record.skipped if index == 0 else ())


def _quietly_delete(clients: Clients, key: str) -> None:
    try:
        clients.results.delete(key)
    except CloudCallError as exc:  # the reconciler finds the batch handed over
        log.warning("could not remove dispatch marker %s: %s", key, exc)
