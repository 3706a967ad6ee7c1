"""Hand a running invocation over to the collector.

Once a batch runs, three things make it collected: its record (``invocations/{InvokeId}.json``,
which TaskCompleted events are matched against), its first follow-up in the follow-up queue, and
its open marker (``shared.ledger``: until its due time the follow-ups own the batch; after it,
the reconciler). The first batch also carries the instances pre-flight skipped, and writes a
``result.json`` for each. All of it goes out side by side, and every write is idempotent, so
dispatch and the reconciler share this and either may repeat it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace

from shared.clients import Clients
from shared.config import Settings
from shared.followup import FollowUp, first_delay
from shared.ledger import Skipped, put_marker
from shared.parallel import settle
from shared.record import write_record
from shared.results import dumps, result_key, skipped_document

log = logging.getLogger("assistflow.handoff")

MAX_FOLLOWUP_BYTES = 60 * 1024  # MNS takes 64 KB per message


def for_batch(template: FollowUp, settings: Settings, invoke_id: str,
              group: tuple[str, ...], events: bool, marker: str) -> FollowUp:
    """The first follow-up of one batch. ``events``: the command's TaskCompleted events reach
    the collector (``shared.dispatch.events_reach``); then small batches are stored by events,
    and the follow-ups only watch."""
    watchdog = events and settings.completion_events and \
        len(group) <= settings.events_max_instances
    return replace(template, invoke_id=invoke_id, pending=group, watchdog=watchdog,
                   marker=marker)


def hand_over(clients: Clients, followup: FollowUp, skipped: tuple[Skipped, ...] = ()) -> bool:
    """Record the invocation, queue its first follow-up and put its open marker, side by side
    (with the skipped instances' results). True if every write landed; a failure is logged, not
    raised — the invocation runs either way, and the open marker the submit keeps (or this
    batch's, if it landed) brings the reconciler."""
    calls: list[Callable[[], object]] = []
    if skipped:
        followup = _with_skipped(followup, skipped)
        calls += _skipped_writes(clients, followup, skipped)
    calls.append(lambda: write_record(clients.results, followup))
    calls.append(lambda: clients.queues.send(clients.settings.followup_queue,
                                             followup.to_json(), first_delay(followup.watchdog)))
    if followup.marker:
        calls.append(lambda: put_marker(clients.results, followup.marker))
    failures = [o for o in settle(calls, stop_on_error=False) if isinstance(o, BaseException)]
    for failure in failures:
        log.warning("%s runs, but handing it to the collector failed (the reconciler will "
                    "finish it): %s", followup.invoke_id, failure)
    return not failures


def _with_skipped(followup: FollowUp, skipped: tuple[Skipped, ...]) -> FollowUp:
    """Carry the skipped instances with the first batch, as many as fit in one message."""
    pairs = tuple((instance_id, reason) for instance_id, reason, _ in skipped)
    candidate = replace(followup, skipped=pairs, skipped_count=len(pairs))
    while len(candidate.to_json()) > MAX_FOLLOWUP_BYTES and candidate.skipped:
        candidate = replace(candidate, skipped=candidate.skipped[: len(candidate.skipped) // 2])
    return candidate


def _skipped_writes(clients: Clients, followup: FollowUp,
                    skipped: tuple[Skipped, ...]) -> list[Callable[[], object]]:
    """A ``result.json`` per skipped instance, so every target has a result in OSS."""
    results = clients.results.named(followup.bucket)

    def write(item: Skipped) -> None:
        instance_id, reason, message = item
        results.put(result_key(followup.prefix, followup.invoke_id, instance_id),
                    dumps(skipped_document(instance_id, reason, message, followup)),
                    "application/json")

    return [functools.partial(write, item) for item in skipped]
