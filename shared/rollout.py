"""The end of a batch, and what it starts: the next wave, or the end of the request.

Called by the collector once a batch's ``summary.json`` is stored (``close_batch``), and by the
dispatcher for a batch refused for good (``batch_done``):

* a request of one batch: the request summary is written beside the invocation's (from that
  summary), the batch's open marker goes, the ad-hoc command of a periodic script is deleted,
  and the notification job starts (once per request, ``shared.notify``);
* a request of several batches: the batch's marker goes. "No batch marker left" is the
  moment the last batch of a wave — or of the request — is collected; to be sure somebody sees
  it when two last batches finish together, each closer first puts an ``advance`` marker, then
  deletes its batch marker, then lists: the last one to delete sees none left (the one before
  may see none too — every step below is idempotent). A closer that dies after deleting leaves
  its ``advance`` marker to the reconciler, which calls ``advance`` in its place. The collector
  puts it beside the batch's report, before the summary, to spare the close a round trip; one
  that dies before the summary leaves it too, and ``advance`` finds the batch still open (its
  batch marker, still there, brings it back).

``advance`` decides from the request record and the stored summaries: the next wave starts
(claimed once, ``Results.claim`` on ``wave-{k}``, through the dispatch queue) when every batch
before it is collected and the error budget (``MaxErrors``) is not exceeded; else, once every
invoked batch is collected, ``finish`` (claimed once too, on ``finish``, by a closer; the
reconciler finishes without a claim): each instance never started gets its ``NotStarted``
``result.json`` (``MaxErrorsExceeded``, or its batch's refusal), the request summary is written
(``shared.request_summary``; the same bytes again), the ad-hoc command is deleted, and the
notification job starts.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared import notify
from shared.clients import Clients, CloudAssistant, Results
from shared.errors import CloudCallError
from shared.fanout import start_wave, token_for
from shared.followup import InvocationRecord
from shared.ledger import (
    FAILED,
    FINISHED_INVOCATION,
    INVOKED,
    PENDING,
    SUBMIT,
    RequestRecord,
    batch_open,
    delete_command,
    finish_claim_key,
    load_request,
    marker_key,
    open_markers,
    put_marker,
    wave_claim_key,
)
from shared.parallel import STORE_POOL_SIZE, run_all, run_each
from shared.ratecontrol import MAX_ERRORS_EXCEEDED, exceeded, is_error
from shared.reporting import command_of, write_report
from shared.request_summary import (
    not_started_document,
    not_started_key,
    request_summary,
    request_summary_key,
)
from shared.results import dumps, notification_document, summary_key

log = logging.getLogger("assistflow.rollout")

ADVANCE = "advance"  # the slot of a closer's marker while it looks for what comes next
ADVANCE_DUE = 300  # seconds: a closer that has not removed its advance marker by then died


def advance_marker(request_id: str) -> str:
    """A new ``advance`` marker of ``request_id``, due when its closer must have died."""
    return marker_key(request_id, ADVANCE, time.time() + ADVANCE_DUE)


def holds_advance(invocation: InvocationRecord) -> bool:
    """Does closing this batch take an ``advance`` marker (``batch_done``)?"""
    return invocation.batches > 1 and bool(invocation.marker)


def close_batch(clients: Clients, ecs: CloudAssistant, invocation: InvocationRecord,
                summary: dict[str, Any] | None = None,
                outputs: Mapping[str, str] | None = None,
                reported: dict[str, Any] | None = None, held: str = "") -> None:
    """After an invocation's summary (``summary`` and the decoded ``outputs`` by instance, if
    the caller has them: a one-batch request's report then reads no output back;
    ``reported``: a one-batch request's summary document whose report the caller stored
    already, beside the invocation's; ``held``: the ``advance`` marker the caller put already,
    if ``holds_advance``). A transient error (throttling, a 5xx) propagates, so
    the collector looks again after its short retry delay and closes the batch then (every
    step is idempotent) — converging in seconds, not at the reconciler's next run; anything
    else is logged and left to the reconciler."""
    try:
        if invocation.batches <= 1:
            _one_batch(clients, ecs, invocation, summary, outputs, reported)
        elif not invocation.marker:  # a follow-up from before request records
            _legacy(clients, ecs, invocation)
        else:
            batch_done(clients, ecs, invocation.request_id, invocation.marker, held)
    except CloudCallError as exc:
        if exc.transient:
            raise
        log.warning("%s: could not close the batch (the reconciler will): %s",
                    invocation.invoke_id, exc)


def one_batch_summary(invocation: InvocationRecord, summary: dict[str, Any]) -> dict[str, Any]:
    """The request summary of a request of one batch, from that batch's summary."""
    return request_summary(invocation, invoke_ids=[invocation.invoke_id], summaries=[summary],
                           not_started={}, targets=len(summary.get("Instances", {})),
                           notification=notification_document() if invocation.notify else None)


def _one_batch(clients: Clients, ecs: CloudAssistant, invocation: InvocationRecord,
               summary: dict[str, Any] | None, outputs: Mapping[str, str] | None,
               reported: dict[str, Any] | None) -> None:
    bucket = clients.results.named(invocation.bucket)
    if reported is not None:
        _put_summary(bucket, invocation, reported, report=False)
    else:
        if summary is None:
            raw = bucket.get(summary_key(invocation.prefix, invocation.invoke_id))
            summary = json.loads(raw) if raw is not None else None
        if summary is not None:
            _put_summary(bucket, invocation, one_batch_summary(invocation, summary), outputs)
    if invocation.adhoc:  # a periodic script's command, created for it
        delete_command(ecs, invocation.command_id)
    notify.start(clients, invocation)
    if invocation.marker:  # last: while it is there, the close is not over (needs_closing)
        clients.results.delete(invocation.marker)


def needs_closing(clients: Clients, invocation: InvocationRecord) -> bool:
    """Was the close of this (collected) batch cut short, so that it must run again? Its
    marker is still there; or, in a request of several batches, a closer's ``advance`` marker
    is left (a closer failed after removing its batch marker: the next wave or the request's
    end may be undone)."""
    if not invocation.marker:
        return False
    if invocation.batches <= 1:
        return clients.results.exists(invocation.marker)
    return any(m.key == invocation.marker or m.slot == ADVANCE
               for m in open_markers(clients.results, invocation.request_id))


def _legacy(clients: Clients, ecs: CloudAssistant, invocation: InvocationRecord) -> None:
    if not invocation.adhoc:
        return
    busy = [i["InvokeId"] for i in ecs.describe_invocations(command_id=invocation.command_id)
            if i.get("InvocationStatus") not in FINISHED_INVOCATION]
    if not busy:
        delete_command(ecs, invocation.command_id)


def batch_done(clients: Clients, ecs: CloudAssistant, record_or_id: RequestRecord | str,
               marker: str, held: str = "") -> None:
    """Batch ``marker``'s work is over (collected, or refused for good): see the module
    docstring for the order of the marker operations. ``held``: this closer's ``advance``
    marker, if it put it already.

    Only batch markers mean work in flight here. An intent (``submit``) marker does not: it
    says whether every batch was started, which ``advance`` reads from the request record
    itself (a batch not started is ``Pending`` there). Waiting for it would stall the request
    when it outlives its batches — a submit that removes it only after they finished, or a
    removal that failed — as nobody looks again once the last batch is closed."""
    request_id = record_or_id if isinstance(record_or_id, str) else record_or_id.request_id
    results = clients.results
    if not held:
        held = advance_marker(request_id)
        put_marker(results, held)
    if marker:
        results.delete(marker)
    if not batch_open(results, request_id):
        advance(clients, ecs, request_id, claim=True)
    results.delete(held)


def advance(clients: Clients, ecs: CloudAssistant, request_id: str, force: bool = False,
            claim: bool = False) -> str:
    """Start the next wave, or finish the request, or nothing (work still open): which.

    ``claim`` (a closer's call): the request's end is written by the closer that claims it
    (``Results.claim`` on ``finish``), as a wave is started by the one that claims it — two
    last batches that finish together would each write it (the same bytes, a 10,000-instance
    request's report and summary rendered twice, side by side, on the critical path). A
    closer that dies with the claim keeps its ``advance`` marker, and the reconciler, which
    calls without ``claim``, finishes in its place."""
    results = clients.results
    record = load_request(results, request_id)
    if record is None:
        return "gone"
    bucket = results.named(record.followup.bucket)
    invoked = [(n, b) for n, b in enumerate(record.batches) if b.state == INVOKED]
    found = run_each(lambda item: bucket.get(summary_key(record.followup.prefix,
                                                         item[1].invoke_id)), invoked)
    summaries = {n: json.loads(raw) for (n, _), raw in zip(invoked, found, strict=True)
                 if raw is not None}
    waiting = sorted({record.wave_of(n) for n, b in enumerate(record.batches)
                      if record.queued and b.state == PENDING and not b.invoke_id})
    if not record.queued and not record.settled:
        return "open"  # a batch waits for a redelivery or the reconciler
    errors = sum(int(count) for s in summaries.values()
                 for status, count in s.get("Counts", {}).items() if is_error(status))
    if waiting and not exceeded(errors, record.error_budget):
        wave = waiting[0]
        earlier_open = [n for n, b in enumerate(record.batches) if record.wave_of(n) < wave
                        and b.state != FAILED and n not in summaries]
        if earlier_open:
            return "open"
        if force or results.claim(wave_claim_key(request_id, wave)):
            try:
                start_wave(clients, record, wave, token_for(record))
            except CloudCallError:  # the claim goes, so that the retry starts it (again:
                results.release(wave_claim_key(request_id, wave))  # dispatch is idempotent)
                raise
            log.info("request %s: wave %d started (%d error(s) so far)", request_id, wave,
                     errors)
            return f"wave {wave}"
        return "claimed"
    if any(n not in summaries for n, _ in invoked):
        return "open"
    if claim and not results.claim(finish_claim_key(request_id)):
        return "claimed"
    try:
        finish(clients, ecs, record, [summaries[n] for n, _ in invoked], errors)
    except CloudCallError:
        if claim:  # the claim goes, so that the retry finishes (finish is idempotent)
            results.release(finish_claim_key(request_id))
        raise
    return "finished"


def finish(clients: Clients, ecs: CloudAssistant, record: RequestRecord,
           summaries: list[dict[str, Any]], errors: int) -> None:
    """Every batch collected or never to start: NotStarted results, the request summary,
    the command, the notification."""
    template = replace(record.followup, command_id=record.command_id, invoke_id="")
    bucket = clients.results.named(template.bucket)
    not_started: dict[str, tuple[str, str]] = {}
    for batch in record.batches:
        if batch.state == INVOKED:
            continue
        if batch.state == PENDING:
            reason, message = MAX_ERRORS_EXCEEDED, (
                f"not started: {errors} instance(s) failed, more than MaxErrors "
                f"({record.error_budget}) allows")
        else:
            reason, message = batch.code or "NotStarted", batch.message
        not_started.update({i: (reason, message) for i in batch.instances})
    _write_not_started(bucket, template, not_started)
    document = request_summary(
        template, invoke_ids=[b.invoke_id for b in record.batches if b.state == INVOKED],
        summaries=summaries, not_started=not_started,
        targets=sum(len(b.instances) for b in record.batches) + len(record.skipped),
        rate_control=record.rate_control or None, waves=record.wave_count,
        notification=notification_document() if template.notify else None)
    _put_summary(bucket, template, document)
    log.info("request %s: finished, %s %s", record.request_id, document["Status"],
             document["Counts"])
    if record.deletes_command and record.command_id:
        delete_command(ecs, record.command_id)
    notify.start(clients, template)
    # last (until then a closer's advance marker says the close is not over: needs_closing),
    # the markers that outlived the request: an intent marker whose removal failed, the
    # advance marker of a closer that failed after removing its batch's
    run_all([functools.partial(clients.results.delete, m.key)
             for m in open_markers(clients.results, record.request_id)
             if m.slot in (SUBMIT, ADVANCE)])


def _write_not_started(bucket: Results, template: InvocationRecord,
                       not_started: dict[str, tuple[str, str]]) -> None:
    def write(instance_id: str, reason: str, message: str) -> None:
        bucket.put(not_started_key(template.prefix, template.request_id, instance_id),
                   dumps(not_started_document(instance_id, reason, message,
                                              request_id=template.request_id,
                                              command_id=template.command_id,
                                              source=template.source)), "application/json")

    run_all([functools.partial(write, i, reason, message)
             for i, (reason, message) in sorted(not_started.items())], STORE_POOL_SIZE)


def _put_summary(bucket: Results, template: InvocationRecord, document: dict[str, Any],
                 outputs: Mapping[str, str] | None = None, report: bool = True) -> None:
    """Write the request summary (``report``: its report first); once stored with a Notify,
    its Notification part is the notification job's: it is left as it is."""
    key = request_summary_key(template.prefix, template.request_id)
    if not (template.notify and bucket.exists(key)):
        # its report first, as for an invocation: who sees the summary finds the report
        if report:
            write_report(bucket, key, document, outputs=outputs,
                         command=command_of(bucket, template))
        bucket.put(key, dumps(document), "application/json")
