"""The dispatch function's work: invoke one batch of a fanned-out request (``shared.fanout``).

One ``DispatchJob`` names the request and the batch, and carries what the dispatcher needs of
the request record (the batch's instances, the InvokeCommand parameters, the first follow-up);
the first batch of a request with skipped instances reads the record instead.
In order, each step idempotent, so a redelivered job (or two at once) converges:

1. the batch's own state object says it runs and was handed over: only its dispatch marker
   is removed; it runs and was not handed over: step 3's hand-over again (same deadline, same
   open marker); it was refused for good: its end again (``batch_done``, idempotent);
2. InvokeCommand on the batch with its own ClientToken (the same token again returns the same
   InvokeId — "How to ensure idempotence", https://www.alibabacloud.com/help/en/doc-detail/
   25693.html); a transient error (throttling, 5xx) is retried within the invocation's
   patience (``shared.retry``: jittered backoff) and then fails the invocation, so the trigger
   delivers the job again; a refusal for good (an instance stopped meanwhile, the command
   deleted) is recorded in the batch (``Failed`` with the code: its instances get
   ``NotStarted`` with that reason in the request summary) and ends as a collected batch
   would (``shared.rollout.batch_done``), so the rest of the request goes on;
3. the batch state ``Invoked`` (its InvokeId and its follow-ups' deadline), then the
   hand-over to the collector (record, first follow-up, open marker: ``shared.handoff``), then
   ``handed``, then the dispatch marker goes. A hand-over that did not land fully fails the
   invocation, so the trigger delivers the job again; a job that dies in between leaves a
   marker the reconciler acts on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from shared.clients import Clients
from shared.errors import AssistflowError, CloudCallError
from shared.fanout import DispatchJob
from shared.followup import DEADLINE_MARGIN, FollowUp
from shared.handoff import for_batch, hand_over
from shared.ledger import (
    FAILED,
    INVOKED,
    Batch,
    Skipped,
    batch_from,
    batch_key,
    collect_due,
    marker_key,
    read_request,
    save_batch,
)

log = logging.getLogger("assistflow.dispatch_batch")


class HandOverIncompleteError(AssistflowError):
    """The batch runs, but its record, first follow-up or marker did not land (a transient
    error): the job is to be delivered again."""

    code = "HandOverIncomplete"
    status = 503


class RequestGoneError(AssistflowError):
    """The job's request record is not there (expired, or never written): nothing to do."""

    code = "RequestNotFound"
    status = 404


@dataclass(frozen=True)
class _Batch:
    """What the dispatcher needs of the request: from a self-contained job, or the record."""

    request_id: str
    index: int
    instances: tuple[str, ...]
    invoke: dict[str, Any]
    template: FollowUp  # the first follow-up every batch shares, with the command id
    command_name: str
    deletes_command: bool
    skipped: tuple[Skipped, ...] = ()


def _batch_of(job: DispatchJob, clients: Clients) -> _Batch:
    if job.self_contained:
        return _Batch(job.request_id, job.batch, job.instances, job.invoke,
                      FollowUp.from_json(json.dumps(job.followup)), job.command_name,
                      job.deletes_command)
    record = read_request(clients.results, job.request_id)
    if record is None or job.batch >= len(record.batches):
        raise RequestGoneError(f"request {job.request_id} has no record with a batch "
                               f"{job.batch}")
    return _Batch(record.request_id, job.batch, record.batches[job.batch].instances,
                  record.invoke, replace(record.followup, command_id=record.command_id),
                  record.command_name, record.deletes_command,
                  record.skipped if job.batch == 0 else ())


def run(job: DispatchJob, clients: Clients) -> dict[str, Any]:
    results = clients.results
    work = _batch_of(job, clients)
    raw = results.get(batch_key(job.request_id, job.batch))
    batch = batch_from(raw) if raw is not None else Batch(work.instances)
    ecs = clients.ecs_in(work.template.region)
    if batch.state == FAILED:  # its end again (idempotent): the delivery before may have
        from shared.rollout import batch_done  # failed part-way through it

        batch_done(clients, ecs, job.request_id, job.marker)
        return {"Batch": job.batch, "State": FAILED, "Duplicate": True}
    if batch.state == INVOKED and batch.handed:
        _quietly_delete(clients, job.marker)
        return {"Batch": job.batch, "InvokeId": batch.invoke_id, "State": batch.state,
                "Duplicate": True}
    if batch.state == INVOKED and batch.invoke_id:  # runs; its hand-over did not land
        return _handed(clients, job, work, replace(batch, deadline=batch.deadline
                                                   or _deadline(work.template)))
    invoke = work.invoke
    try:
        invoke_id = ecs.invoke_command(
            command_id=work.template.command_id, instance_ids=list(batch.instances),
            client_token=job.token, parameters=invoke.get("Parameters"),
            timeout=invoke.get("Timeout"), working_dir=invoke.get("WorkingDir") or "",
            username=invoke.get("Username") or "", repeat_mode="Once", frequency="")
    except CloudCallError as exc:
        if exc.transient:
            raise  # the trigger delivers the job again (its retry policy, then its DLQ)
        log.warning("request %s: batch %d refused for good: %s", job.request_id, job.batch,
                    exc)
        save_batch(results, job.request_id, job.batch,
                   replace(batch, state=FAILED, code=exc.error_code, message=exc.message))
        from shared.rollout import batch_done

        batch_done(clients, ecs, job.request_id, job.marker)
        return {"Batch": job.batch, "State": FAILED, "Code": exc.error_code}
    invoked = replace(batch, state=INVOKED, invoke_id=invoke_id, code="", message="",
                      deadline=_deadline(work.template))
    save_batch(results, job.request_id, job.batch, invoked)
    log.info("request %s: batch %d (%d instances) runs as %s", job.request_id, job.batch,
             len(batch.instances), invoke_id)
    return _handed(clients, job, work, invoked)


def _handed(clients: Clients, job: DispatchJob, work: _Batch, invoked: Batch
            ) -> dict[str, Any]:
    """Hand the invoked batch over, then record that and remove the dispatch marker. A part
    that did not land fails the invocation (``HandOverIncompleteError``): the trigger delivers
    the job again in seconds, and that delivery hands the batch over again (every write is
    idempotent) — not the reconciler once the dispatch marker is due, minutes later."""
    if not _hand_over(clients, work, invoked.invoke_id, invoked.deadline):
        raise HandOverIncompleteError(f"request {job.request_id}: batch {job.batch} runs as "
                                      f"{invoked.invoke_id}, but its hand-over did not land")
    save_batch(clients.results, job.request_id, job.batch, replace(invoked, handed=True))
    _quietly_delete(clients, job.marker)
    return {"Batch": job.batch, "InvokeId": invoked.invoke_id, "State": INVOKED,
            "Handed": True}


def _deadline(base: FollowUp) -> float:
    """A batch invoked now: its follow-ups' deadline. A later wave starts long after the
    submit: its deadline counts from now (the command's Timeout is the template's deadline
    less its submit time and margin)."""
    timeout = base.deadline - base.submitted_at - DEADLINE_MARGIN
    return max(base.deadline, time.time() + timeout + DEADLINE_MARGIN)


def _hand_over(clients: Clients, work: _Batch, invoke_id: str, deadline: float) -> bool:
    """Hand the batch to the collector, its follow-ups ending at ``deadline``."""
    template = replace(work.template, deadline=deadline)
    marker = marker_key(work.request_id, work.index, collect_due(template.deadline))
    # TaskCompleted events reach the collector for an ad-hoc command named with the trigger's
    # prefix (shared.dispatch.events_reach); small waves are then stored as they finish.
    events = work.deletes_command and \
        work.command_name.startswith(clients.settings.events_command_prefix)
    followup = for_batch(template, clients.settings, invoke_id, work.instances, events, marker)
    return hand_over(clients, followup, work.skipped)


def _quietly_delete(clients: Clients, key: str) -> None:
    try:
        clients.results.delete(key)
    except CloudCallError as exc:  # the reconciler finds the batch handed over
        log.warning("could not remove dispatch marker %s: %s", key, exc)
