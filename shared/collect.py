"""The collector: read an invocation's results, store each finished instance, re-queue the rest.

One call handles one follow-up and never waits for instances: whatever is still running goes
back to the queue as a new follow-up with a longer delay, so the function is billed only for
its API calls. When nothing is pending, ``summary.json`` is written and the ad-hoc command is
deleted once every invocation made from it is finished.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.clients import Clients
from shared.errors import CloudCallError
from shared.followup import FollowUp, delay_for
from shared.results import (
    TERMINAL,
    collector_timeout_document,
    decode_output,
    dumps,
    output_key,
    result_document,
    result_key,
    summary_document,
    summary_key,
)

log = logging.getLogger("assistflow.collect")


@dataclass(frozen=True)
class Collected:
    """What one collector call did (for logs and tests)."""

    stored: tuple[str, ...]
    pending: tuple[str, ...]
    next_delay: int | None  # seconds until the next follow-up, None if none was sent
    finished: bool


def collect(followup: FollowUp, clients: Clients, now: Callable[[], float] = time.time,
            rng: random.Random | None = None) -> Collected:
    records = {r["InstanceId"]: r for r in clients.ecs.invocation_results(followup.invoke_id)}
    stored = []
    for instance_id in followup.pending:
        record = records.get(instance_id)
        if record is not None and record.get("InvocationStatus") in TERMINAL:
            _store(clients, followup, record)
            stored.append(instance_id)
    pending = tuple(i for i in followup.pending if i not in stored)
    if pending and now() < followup.deadline:
        delay = delay_for(followup.attempt, rng)
        clients.queues.send(clients.settings.followup_queue,
                            followup.next(pending).to_json(), delay)
        log.info("%s: stored %d, %d still running, next look in %d s",
                 followup.invoke_id, len(stored), len(pending), delay)
        return Collected(tuple(stored), pending, delay, finished=False)
    _finish(clients, followup, records, now())
    return Collected(tuple(stored), pending, None, finished=True)


def _store(clients: Clients, followup: FollowUp, record: dict[str, Any]) -> dict[str, Any]:
    text, raw_len = decode_output(record.get("Output", ""))
    instance_id = record["InstanceId"]
    document = result_document(record, followup, raw_len)
    clients.results.put(output_key(followup.prefix, followup.invoke_id, instance_id),
                        text.encode("utf-8"), "text/plain; charset=utf-8")
    clients.results.put(result_key(followup.prefix, followup.invoke_id, instance_id),
                        dumps(document), "application/json")
    return document


def _finish(clients: Clients, followup: FollowUp, records: dict[str, dict[str, Any]],
            finished_at: float) -> None:
    """Every instance is stored (or given up on): write the summary, clean up the command."""
    documents: dict[str, dict[str, Any]] = {}
    for instance_id, record in records.items():
        if record.get("InvocationStatus") in TERMINAL:
            _, raw_len = decode_output(record.get("Output", ""))
            documents[instance_id] = result_document(record, followup, raw_len)
        else:  # past the deadline and still not finished
            documents[instance_id] = collector_timeout_document(instance_id, followup)
            clients.results.put(result_key(followup.prefix, followup.invoke_id, instance_id),
                                dumps(documents[instance_id]), "application/json")
    summary = summary_document(followup, documents, finished_at)
    clients.results.put(summary_key(followup.prefix, followup.invoke_id), dumps(summary),
                        "application/json")
    log.info("%s: finished, %s (%s)", followup.invoke_id, summary["Status"], summary["Counts"])
    if followup.adhoc:
        _delete_command_when_idle(clients, followup.command_id)


def _delete_command_when_idle(clients: Clients, command_id: str) -> None:
    """Delete the ad-hoc command once no invocation made from it is still running.

    Several collectors (one per batch of 100) may race here; a second delete that finds the
    command gone is fine.
    """
    try:
        invocations = clients.ecs.invocations_of(command_id)
        busy = [i["InvokeId"] for i in invocations
                if i.get("InvocationStatus") not in ("Success", "Failed", "PartialFailed",
                                                     "Stopped")]
        if busy:
            return
        clients.ecs.delete_command(command_id)
    except CloudCallError as exc:
        if exc.error_code != "InvalidCmdId.NotFound":
            log.warning("could not delete ad-hoc command %s: %s", command_id, exc)
