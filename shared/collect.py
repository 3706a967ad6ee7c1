"""The collector: read an invocation's results, store each finished instance, re-queue the rest.

One call handles one follow-up and never waits for instances: whatever is still running goes
back to the queue as a new follow-up with a longer delay, so the function is billed only for
its API calls. When nothing is pending, ``summary.json`` is written, the ad-hoc command is
deleted once every batch of its request was invoked and collected (``shared.rollout.close_batch``),
and the notification, if the request asked for one, starts as a job of its own
(``shared.notify``) that nothing here waits for.

Periodic invocations (RepeatMode other than Once) never run out of instances: each run is
stored under ``{InstanceId}/runs/{n}/`` as it finishes (and the latest run at the usual keys),
``summary.json`` is kept current, and the follow-ups end when the invocation is stopped.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shared.clients import Clients, CloudAssistant, Results
from shared.collector_events import LateEvent, TaskCompleted
from shared.errors import CloudCallError
from shared.followup import FollowUp, InvocationRecord, delay_for
from shared.ledger import FINISHED_INVOCATION, put_marker
from shared.parallel import STORE_POOL_SIZE, run_all, settle
from shared.record import finishing_key, followed_command, read_record
from shared.reporting import command_of, decoded_outputs, report_invocation, write_report
from shared.request_summary import request_summary_key
from shared.results import (
    TERMINAL,
    Put,
    collector_timeout_document,
    decode_output,
    dumps,
    instance_prefix,
    result_document,
    result_key,
    run_prefix,
    skipped_document,
    summary_document,
    summary_key,
)
from shared.retry import COLLECT_PATIENCE, patience
from shared.rollout import (
    advance_marker,
    close_batch,
    holds_advance,
    needs_closing,
    one_batch_summary,
)

log = logging.getLogger("assistflow.collect")

@dataclass(frozen=True)
class Collected:
    """What one collector call did (for logs and tests)."""

    stored: tuple[str, ...]
    pending: tuple[str, ...]
    next_delay: int | None  # seconds until the next follow-up, None if none was sent
    finished: bool


def handle(followup: FollowUp, clients: Clients, now: Callable[[], float] = time.time,
           rng: random.Random | None = None) -> Collected:
    """``collect``, with transient cloud errors turned into a delayed retry.

    Throttling, 5xx or a network error mid-way re-queues the same follow-up with a growing,
    jittered delay (1, 2, 4 … 30 s) instead of waiting in-process (billed: the collector never
    waits on throttling and little on anything else, ``shared.retry``) or for the message's
    visibility timeout. ECS counts calls per minute; the growing delays cross into the next
    minute within a few looks, and their jitter spreads the follow-ups of a large fan-out over
    it instead of sending them all back at the same second. What was stored already is simply
    stored again. Permanent errors (an invocation Cloud Assistant no longer knows, results the
    role may not write) propagate: the collector function parks the follow-up in its
    dead-letter queue (``shared.deadletter``).
    """
    try:
        with patience(COLLECT_PATIENCE, throttling=False):
            return collect(followup, clients, now, rng)
    except CloudCallError as exc:
        if not exc.transient:
            raise
        return _retry(clients, followup, exc, rng)


def _retry(clients: Clients, followup: FollowUp, error: CloudCallError,
           rng: random.Random | None, stored: tuple[str, ...] = ()) -> Collected:
    """The same look again (for the instances still pending) after a transient error."""
    again = followup.retry()
    delay = delay_for(again.retries, rng)  # a retry is prompt even for a watchdog
    clients.queues.send(clients.settings.followup_queue, again.to_json(), delay)
    log.warning("%s: %s; looking again in %d s", followup.invoke_id, error, delay)
    return Collected(stored, followup.pending, delay, finished=False)


def collect(followup: FollowUp, clients: Clients, now: Callable[[], float] = time.time,
            rng: random.Random | None = None) -> Collected:
    ecs = clients.ecs_in(followup.region)
    bucket = clients.results.named(followup.bucket)
    if followup.periodic:
        return _collect_periodic(followup, clients, ecs, bucket, now, rng)
    if followup.watchdog and _summarized(clients, bucket, followup):
        return Collected((), (), None, finished=True)  # events did all the work already
    results, stored, failure = _look_and_store(ecs, bucket, followup)
    pending = tuple(i for i in followup.pending if i not in stored)
    if failure is not None:  # keep what was stored: the retry looks only at the rest
        if not isinstance(failure, CloudCallError) or not failure.transient:
            raise failure
        return _retry(clients, replace(followup, pending=pending), failure, rng,
                      tuple(stored))
    if pending and now() < followup.deadline:
        return _again(clients, followup.next(pending), tuple(stored), rng)
    _finish(clients, ecs, bucket, followup, results)
    return Collected(tuple(stored), pending, None, finished=True)


def _look_and_store(ecs: CloudAssistant, bucket: Results, followup: FollowUp
                    ) -> tuple[dict[str, dict[str, Any]], list[str], BaseException | None]:
    """DescribeInvocationResults, and the objects of every pending instance it shows finished.

    The listing comes 50 results a page, one page after another (NextToken); the instances of
    the first page are stored while the later pages are fetched, so a look over 100 instances
    does not wait for its second page before its first write (a page is a round trip to ECS),
    ``WRITES_AT_ONCE`` writes at a time from one thread (``Results.writes``); the later
    pages' writes queue behind the first page's, so the writes never run dry between the two.
    Returns every result seen (by InstanceId), the instances stored, and the first failure (or
    None): a failure leaves whatever was stored, and the caller retries the rest.
    """
    pending = set(followup.pending)
    pages = ecs.invocation_result_pages(followup.invoke_id)
    first = next(pages, [])
    later: list[dict[str, Any]] = []

    def finished(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in results
                if r["InstanceId"] in pending and r.get("InvocationStatus") in TERMINAL]

    def store(results: list[dict[str, Any]]) -> list[list[Put]]:
        return [_objects(followup, r) for r in results]

    early = finished(first)
    late: list[dict[str, Any]] = []
    fetched: BaseException | None = None
    writes = bucket.writes()
    try:
        writes.extend(store(early))
        try:  # here, while the first page's objects are written
            for page in pages:
                later.extend(page)
        except Exception as exc:  # the first page's writes still count
            fetched = exc
        late = finished(later)
        writes.extend(store(late))
    finally:
        outcomes = writes.settle()
    stored = [r["InstanceId"] for r, outcome in zip(early + late, outcomes, strict=True)
              if not isinstance(outcome, BaseException)]
    failure = next((o for o in (fetched, *outcomes) if isinstance(o, BaseException)), None)
    return {r["InstanceId"]: r for r in first + later}, stored, failure


LATE_EVENT_TRIES = 3  # an event can beat the index of its own invocation; look again 3 times


def on_task_completed(event: TaskCompleted, clients: Clients, tries: int = 0
                      ) -> Collected | None:
    """Store one instance's result the moment Cloud Assistant says its run ended.

    Invocations assistflow did not make (no record under ``invocations/``), and large batches
    its follow-ups collect, are ignored — those of a fan-out whose follow-ups collect every
    batch without reading a record, once one record said so (``shared.record``). A fast
    command can finish before its submitter wrote the record, so an unknown invocation is
    looked at again a few times (2, 4, 8 s later, as a ``LateEvent`` through the follow-up
    queue; ``tries`` counts them) before it is let go. When this was the invocation's last
    instance, the summary is written and the requester notified right away; the follow-ups,
    then a watchdog, find the work done.

    One DescribeInvocationResults answers everything: this instance's result and whether the
    others are done too. The event's own fields name the run; one the documented sample does
    not promise (``invokeId``, ``repeats``) is looked up when it is missing.
    """
    with patience(COLLECT_PATIENCE, throttling=False):
        return _on_task_completed(event, clients, tries)


def _on_task_completed(event: TaskCompleted, clients: Clients, tries: int) -> Collected | None:
    if followed_command(str(event.data.get("commandId") or "")):
        return None  # a batch of a fan-out whose follow-ups collect every batch
    instance_id = event.instance_id
    invoke_id = event.invoke_id or _invoke_id_of(event, clients)
    record = read_record(clients.results, invoke_id)
    if record is None:
        if invoke_id and tries < LATE_EVENT_TRIES:
            clients.queues.send(clients.settings.followup_queue,
                                LateEvent(event, tries + 1).to_json(), 2 ** (tries + 1))
        else:
            log.debug("TaskCompleted for %s is not ours; ignored", invoke_id or "?")
        return None
    if not record.watchdog:  # a batch the follow-ups collect (see events_max_instances)
        return None
    ecs = clients.ecs_in(record.region)
    bucket = clients.results.named(record.bucket)
    if record.periodic:  # keep the run; the follow-ups keep latest and summary current
        _store_run(bucket, record, event, ecs.invocation_results(
            invoke_id, include_history=True, instance_id=instance_id))
        return Collected((instance_id,), (), None, finished=False)
    single = len(record.pending) == 1
    results = {r["InstanceId"]: r for r in ecs.invocation_results(
        invoke_id, instance_id=instance_id if single else "")}
    mine = results.get(instance_id)
    if mine is None or mine.get("InvocationStatus") not in TERMINAL:
        # not visible yet (eventually consistent): the watchdog will store it
        return Collected((), (instance_id,), None, finished=False)
    done = all(results.get(i, {}).get("InvocationStatus") in TERMINAL for i in record.pending)
    # The last instances' events arrive together; one of them finishes the invocation. If it
    # dies half-way, the watchdog follow-up (which ignores this claim) finishes instead.
    if not done or not (single or clients.results.claim(finishing_key(invoke_id))):
        _store(bucket, record, mine)
        return Collected((instance_id,), (), None, finished=False)
    _finish(clients, ecs, bucket, record, results, frozenset(results))
    return Collected((instance_id,), (), None, finished=True)


def _invoke_id_of(event: TaskCompleted, clients: Clients) -> str:
    """The invocation an event without ``invokeId`` is about: the newest one of its command
    on its instance (DescribeInvocations), "" if there is none."""
    command_id, instance_id = event.data.get("commandId"), event.instance_id
    if not command_id or not instance_id:
        return ""
    found = clients.ecs.describe_invocations(command_id=str(command_id), instance_id=instance_id,
                                            limit=1)
    return str(found[0].get("InvokeId", "")) if found else ""


def _store_run(bucket: Results, record: InvocationRecord, event: TaskCompleted,
               runs: list[dict[str, Any]]) -> None:
    """Store the run the event names (by ``repeats``; without it, the latest finished run)."""
    finished = [r for r in runs if r.get("InvocationStatus") in TERMINAL]
    wanted = event.repeats if event.has_repeats else max(
        (int(r.get("Repeats") or 0) for r in finished), default=0)
    run_all([functools.partial(_store, bucket, record, r,
                               run_prefix(record.prefix, record.invoke_id, r["InstanceId"],
                                          wanted))
             for r in finished if int(r.get("Repeats") or 0) == wanted])


def _again(clients: Clients, followup: FollowUp, stored: tuple[str, ...],
           rng: random.Random | None) -> Collected:
    delay = delay_for(followup.attempt - 1, rng, followup.watchdog)
    clients.queues.send(clients.settings.followup_queue, followup.to_json(), delay)
    log.info("%s: stored %d, %d still running, next look in %d s", followup.invoke_id,
             len(stored), len(followup.pending), delay)
    return Collected(stored, followup.pending, delay, finished=False)


def _store(bucket: Results, invocation: InvocationRecord, result: dict[str, Any],
           base: str = "") -> None:
    """Write ``output.txt``, then ``result.json``, of one finished per-instance result
    (idempotent). ``result.json`` comes second on purpose: once a reader sees it, the output is
    there too (instances are stored side by side, their two objects in order). ``base`` is the
    key prefix to write under; by default the instance's own folder."""
    for put in _objects(invocation, result, base):
        bucket.put(put.key, put.data, put.content_type)


def _objects(invocation: InvocationRecord, result: dict[str, Any], base: str = "") -> list[Put]:
    """The objects of one finished per-instance result, in the order they are written:
    ``output.txt``, then ``result.json`` (``_store``)."""
    text, raw_len = decode_output(result.get("Output", ""))
    base = base or instance_prefix(invocation.prefix, invocation.invoke_id, result["InstanceId"])
    return [Put(base + "output.txt", text.encode("utf-8"), "text/plain; charset=utf-8"),
            Put(base + "result.json", dumps(result_document(result, invocation, raw_len)),
                "application/json")]


def _finish(clients: Clients, ecs: CloudAssistant, bucket: Results,
            invocation: InvocationRecord, results: dict[str, dict[str, Any]],
            store: frozenset[str] = frozenset()) -> None:
    """Every instance is stored (or given up on): summary, notification, command clean-up.

    ``store`` names finished instances whose objects this call must still write (the event
    path finishes an invocation while other instances' events may still be on their way).
    """
    documents: dict[str, dict[str, Any]] = {}
    writes: list[Callable[[], None]] = [
        functools.partial(_store, bucket, invocation, r) for i, r in results.items()
        if i in store and r.get("InvocationStatus") in TERMINAL]
    for instance_id, result in results.items():
        if result.get("InvocationStatus") in TERMINAL:
            _, raw_len = decode_output(result.get("Output", ""))
            documents[instance_id] = result_document(result, invocation, raw_len)
        else:  # past the deadline and still not finished
            documents[instance_id] = collector_timeout_document(instance_id, invocation)
            writes.append(functools.partial(
                bucket.put, result_key(invocation.prefix, invocation.invoke_id, instance_id),
                dumps(documents[instance_id]), "application/json"))
    # every instance's objects before the summary that points at them
    run_all(writes, STORE_POOL_SIZE)
    for instance_id, reason in invocation.skipped:
        documents[instance_id] = skipped_document(instance_id, reason, "", invocation)
    summary = summary_document(invocation, documents)
    key = summary_key(invocation.prefix, invocation.invoke_id)
    outputs = decoded_outputs(results)
    pages: list[Callable[[], object]] = [functools.partial(
        report_invocation, bucket, key, summary, documents, results, invocation)]
    request: dict[str, Any] | None = None
    if invocation.batches <= 1 and not invocation.notify:
        # the request's only batch: the request's report goes out beside the invocation's (a
        # request with a Notify keeps the order that leaves a stored Notification alone)
        request = one_batch_summary(invocation, summary)
        pages.append(functools.partial(
            write_report, bucket, request_summary_key(invocation.prefix, invocation.request_id),
            request, outputs=outputs, command=command_of(bucket, invocation)))
    held = _with_advance_marker(clients, invocation, pages)
    bucket.put(key, dumps(summary), "application/json")
    log.info("%s: finished, %s %s -> oss://%s/%s", invocation.invoke_id, summary["Status"],
             summary["Counts"], bucket.name, key)
    # its open marker; the next wave, or the request summary, the ad-hoc command and the
    # notification (once per request) when it was the request's last batch
    close_batch(clients, ecs, invocation, summary, outputs, reported=request, held=held)


def _with_advance_marker(clients: Clients, invocation: InvocationRecord,
                         pages: list[Callable[[], object]]) -> str:
    """Write ``pages`` (the batch's report) and, beside them, the close's ``advance`` marker
    when its close takes one (``shared.rollout.holds_advance``): the close then waits for one
    round trip less after the summary. Returns the marker put; "" if none was, or if OSS
    refused it for good — the close then tries its own, and a refusal there is logged and
    left to the reconciler (``close_batch``)."""
    if not holds_advance(invocation):
        run_all(pages)
        return ""
    held = advance_marker(invocation.request_id)
    calls: list[Callable[[], object]] = [*pages, functools.partial(put_marker, clients.results,
                                                                   held)]
    # a marker refused does not stop the report
    *outcomes, marked = settle(calls, stop_on_error=False)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    if isinstance(marked, BaseException):
        if not isinstance(marked, CloudCallError) or marked.transient:
            raise marked
        return ""
    return held


def _summarized(clients: Clients, bucket: Results, followup: FollowUp) -> bool:
    """Is the invocation's summary stored (by the event path)? Then make sure the batch was
    closed: the event handler that wrote the summary may have stopped or failed part-way
    (``shared.rollout.needs_closing``; its retry finds the finishing claim taken and does not
    close again); closing again is idempotent. Both looks go out side by side: the usual
    answer (stored, closed) then costs one round trip."""
    stored, unclosed = run_all([
        functools.partial(bucket.exists, summary_key(followup.prefix, followup.invoke_id)),
        functools.partial(needs_closing, clients, followup)])
    if not stored:
        return False
    if unclosed:
        close_batch(clients, clients.ecs_in(followup.region), followup)
    return True


def _collect_periodic(followup: FollowUp, clients: Clients, ecs: CloudAssistant,
                      bucket: Results, now: Callable[[], float],
                      rng: random.Random | None) -> Collected:
    """Store every newly finished run; end when the invocation is stopped or over."""
    runs = dict(followup.runs)
    stored = []
    latest: dict[str, dict[str, Any]] = {}
    for result in ecs.invocation_results(followup.invoke_id, include_history=True):
        instance_id = result["InstanceId"]
        run = int(result.get("Repeats") or 0)
        if result.get("InvocationStatus") not in TERMINAL or run < 1:
            continue
        if run > runs.get(instance_id, 0):
            _store(bucket, followup, result, run_prefix(followup.prefix, followup.invoke_id,
                                                        instance_id, run))
            stored.append(instance_id)
        if run >= int(latest.get(instance_id, {}).get("Repeats") or 0):
            latest[instance_id] = result
    for instance_id, result in latest.items():
        if int(result.get("Repeats") or 0) > runs.get(instance_id, 0):
            _store(bucket, followup, result)  # the latest run at the usual keys
            runs[instance_id] = int(result["Repeats"])
    status = ecs.invocation_status(followup.invoke_id)
    current = replace(followup, runs=tuple(sorted(runs.items())))
    if stored or status in FINISHED_INVOCATION:
        documents = {}
        for instance_id, result in latest.items():
            _, raw_len = decode_output(result.get("Output", ""))
            documents[instance_id] = result_document(result, current, raw_len)
        key, summary = summary_key(followup.prefix, followup.invoke_id), {
            **summary_document(current, documents), "InvocationStatus": status,
            "Runs": dict(runs)}
        report_invocation(bucket, key, summary, documents, latest, current)
        bucket.put(key, dumps(summary), "application/json")
    if status in FINISHED_INVOCATION:
        log.info("%s: periodic invocation %s after %s", followup.invoke_id, status, runs)
        close_batch(clients, ecs, followup)
        return Collected(tuple(stored), (), None, finished=True)
    return _again(clients, current.next(followup.pending), tuple(stored), rng)
