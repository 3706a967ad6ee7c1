"""The reconciler's side of a fanned-out request (``shared.fanout``): nothing is lost.

A request whose batches go through the dispatch queue has, besides the markers of any request
(``shared.ledger``), a marker per batch waiting for its dispatcher and an ``advance`` marker
per batch closer at work (``shared.rollout``). Due markers (``shared.reconcile`` finds them):

* ``submit`` — the submit died before wave 0 was queued: wave 0 is queued now
  (``shared.fanout.start_wave``: markers, then jobs; each batch keeps its ClientToken), and
  the marker goes as a batch's does (``shared.rollout.batch_done``: when every batch is over
  already, the next wave or the end of the request);
* ``{n}`` for a batch not invoked — its dispatch job died (or keeps failing): Cloud Assistant
  is asked first (DescribeInvocations by the command, an invocation on exactly the batch's
  instances, created after the request) — found, the batch is recorded and handed to the
  collector; else its job is queued again, ``MAX_TRIES`` times (5 min doubling), then the batch
  is given up (``Failed`` / ``NotDispatched``: its instances ``NotStarted`` with that reason);
* ``{n}`` for a batch invoked — as for any batch: its summary stored, the batch is closed
  (which may start the next wave or finish the request); else a follow-up is sent again;
* ``advance`` — a closer died after removing its batch marker: ``advance`` runs in its place
  (the next wave, claimed or not — dispatch is idempotent —, or the end of the request).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shared.fanout import DISPATCH_DUE, job_for, send_jobs, start_wave, token_for
from shared.handoff import for_batch, hand_over
from shared.ledger import (
    FAILED,
    INVOKED,
    SUBMIT,
    Marker,
    RequestRecord,
    collect_due,
    load_request,
    marker_key,
    put_marker,
    save_batch,
    save_request,
)
from shared.results import summary_key
from shared.rollout import ADVANCE, advance, batch_done

if TYPE_CHECKING:
    from shared.clients import Clients, CloudAssistant
    from shared.reconcile import Report

log = logging.getLogger("assistflow.reconcile")

MAX_TRIES = 5
RECHECK = 300
LOOKUP_LIMIT = 200


def reconcile_request(clients: Clients, record: RequestRecord, due: list[Marker], now: float,
                      report: Report) -> None:
    """Act on the due markers of one fanned-out request (module docstring)."""
    loaded = load_request(clients.results, record.request_id) or record
    ecs = clients.ecs_in(loaded.followup.region)
    for marker in sorted(due, key=lambda m: m.slot != SUBMIT):
        if marker.slot == SUBMIT:
            start_wave(clients, loaded, 0, token_for(loaded))  # the submit's markers again
            save_request(clients.results, replace(record, marker=""))
            # its batches may all be over already (the marker outlived them): the request
            # goes on as after a batch (the next wave, or its end); else their closers do it
            batch_done(clients, ecs, loaded, marker.key)
            report.followed_up.append(f"{loaded.request_id}/wave-0")
        elif marker.slot == ADVANCE:
            outcome = advance(clients, ecs, loaded.request_id, force=True)
            clients.results.delete(marker.key)
            report.closed += 1
            log.info("request %s: a closer's work finished: %s", loaded.request_id, outcome)
        elif marker.batch is not None and marker.batch < len(loaded.batches):
            _batch(clients, ecs, loaded, marker, now, report)
        else:
            clients.results.delete(marker.key)
            report.closed += 1


def _batch(clients: Clients, ecs: CloudAssistant, record: RequestRecord, marker: Marker,
           now: float, report: Report) -> None:
    index = int(marker.slot)
    batch = record.batches[index]
    if batch.state == FAILED:
        batch_done(clients, ecs, record, marker.key)
        report.closed += 1
        return
    if batch.state != INVOKED:
        found = _find(ecs, record, index)
        if found:
            batch = replace(batch, state=INVOKED, invoke_id=found, code="", message="")
            save_batch(clients.results, record.request_id, index, batch)
            report.adopted.append(found)
            log.warning("request %s: found batch %d in Cloud Assistant as %s (its dispatcher "
                        "did not finish)", record.request_id, index, found)
        elif marker.tries >= MAX_TRIES:
            save_batch(clients.results, record.request_id, index, replace(
                batch, state=FAILED, code="NotDispatched",
                message=f"its dispatch job failed {MAX_TRIES} times"))
            report.given_up.append(f"{record.request_id}/{index}")
            batch_done(clients, ecs, record, marker.key)
            return
        else:
            job = job_for(record, index, marker_key(
                record.request_id, index, now + min(RECHECK * 2 ** marker.tries, 6 * 3600)
                + DISPATCH_DUE, marker.tries + 1), token_for(record)(index))
            put_marker(clients.results, job.marker)
            send_jobs(clients, [job])
            clients.results.delete(marker.key)
            report.followed_up.append(f"{record.request_id}/{index}")
            return
    template = record.followup
    stored = clients.results.named(template.bucket).exists(
        summary_key(template.prefix, batch.invoke_id))
    if stored:
        batch_done(clients, ecs, record, marker.key)
        report.closed += 1
        return
    if marker.tries >= MAX_TRIES:
        log.error("request %s: %s still has no summary after %d follow-ups; given up",
                  record.request_id, batch.invoke_id, marker.tries)
        report.given_up.append(f"{record.request_id}/{index}")
        clients.results.delete(marker.key)
        return
    due = now + min(RECHECK * 2 ** marker.tries, 6 * 3600)
    followup = for_batch(replace(template, command_id=record.command_id), clients.settings,
                         batch.invoke_id, batch.instances, False,
                         marker_key(record.request_id, index, max(due, collect_due(
                             template.deadline)), marker.tries + 1))
    if hand_over(clients, followup, record.skipped if index == 0 else ()):
        save_batch(clients.results, record.request_id, index, replace(batch, handed=True))
        clients.results.delete(marker.key)
        report.followed_up.append(batch.invoke_id)


def _find(ecs: CloudAssistant, record: RequestRecord, index: int) -> str:
    """The InvokeId of an invocation of the request's command on exactly batch ``index``'s
    instances, made after the request was recorded; "" if there is none."""
    from shared.reconcile import CLOCK_SKEW, _created, _instances

    wanted = set(record.batches[index].instances)
    found: list[dict[str, Any]] = ecs.describe_invocations(command_id=record.command_id,
                                                          limit=LOOKUP_LIMIT)
    matches = sorted((i for i in found if set(_instances(i)) == wanted
                      and _created(i) >= record.created_at - CLOCK_SKEW), key=_created)
    return str(matches[0]["InvokeId"]) if matches else ""
