"""The reconciler: finishes what a submit or a collector left half-done.

Run by a timer (template.yml ``ReconcileTimer``, every 5 minutes by default). What it looks at
is this deployment's *request records* (``shared.ledger``): a request is "ours" when its record
is in the deployment's bucket, and what is unfinished is named by its **open markers**, each
due at a time written in its key. Until then the work is someone else's (the submit that wrote
the intent, or the batch's follow-ups, which end by the collector's deadline); past it, nothing
live is doing it. Cloud Assistant is the source of truth for what ran: an invocation not in the
record is looked up with ``DescribeInvocations`` by the command's id (a saved command, or one
created for the request) or by the request's command name (RunCommand), matched on its
instances, the script's hash and its creation time.

One run, bounded (``LIST_PAGES`` pages of open markers from a random point, at most
``MAX_REQUESTS`` requests, at most ``LOOKUP_LIMIT`` invocations per lookup, and no new request
once half the function's Timeout is spent):

* an intent marker due (the submit died, or batches wait to be resumed): each batch not known
  to run is looked up — found, it is handed to the collector (its record, a follow-up, its
  marker); not found, looked for again later (5 min, doubling), and after ``RESUME_WINDOW``
  (a day: the request queue's retry horizon) given up as ``Failed`` / ``NotResumed``. A batch
  known to run without marker or summary (its hand-over failed) is handed over again;
* a batch marker due: its ``summary.json`` stored, the marker goes; otherwise no follow-up is
  live, so one is sent (the collector stores what finished; past its deadline it stops waiting
  and writes the summary), and the marker moves on — ``MAX_TRIES`` times, then it is given up
  and logged. A periodic invocation still running is only looked at again an hour later (a
  second follow-up chain would run beside the first until the schedule ends);
* a request with an ad-hoc command and no open marker left (every batch invoked and collected,
  or given up): the command is deleted.

Everything it writes is what dispatch or the collector would write (``shared.handoff``), so it
races with neither: a follow-up sent twice stores the same bytes, and the notification is
claimed once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.clients import Clients, CloudAssistant
from shared.errors import CloudCallError
from shared.handoff import for_batch, hand_over
from shared.ledger import (
    FAILED,
    FINISHED_INVOCATION,
    INVOKED,
    OPEN_PREFIX,
    SUBMIT,
    Batch,
    Marker,
    RequestRecord,
    adoption_deadline,
    collect_due,
    marker_key,
    open_markers,
    read_request,
    save_request,
)
from shared.record import read_record
from shared.results import summary_key
from shared.retry import patience

log = logging.getLogger("assistflow.reconcile")

LIST_PAGES = 5  # ListObjects pages (1000 markers each) per run
MAX_REQUESTS = 25  # requests acted on per run; the rest wait for the next run
LOOKUP_LIMIT = 200  # invocations read per DescribeInvocations lookup (4 pages of 50)
LOOKUP_BATCHES = 20  # batches looked up one by one per request and run
CLOCK_SKEW = 60  # seconds an invocation may seem to predate the record that intended it
RECHECK = 300  # seconds before looking again, doubled per try
MAX_RECHECK = 6 * 3600
MAX_TRIES = 5  # follow-ups sent for one batch before it is given up
RESUME_WINDOW = 86400  # how long batches that did not start may wait for a redelivery
PERIODIC_RECHECK = 3600
PATIENCE = 1.0  # seconds of backoff per run; throttling is not waited on (the next run is)


@dataclass
class Report:
    """What one run did (the function's answer, and its log)."""

    due: int = 0
    requests: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # invocations found and handed over
    followed_up: list[str] = field(default_factory=list)  # follow-ups sent again
    closed: int = 0  # markers removed: the work was done
    given_up: list[str] = field(default_factory=list)  # "{RequestId}/{batch}"
    commands_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"Due": self.due, "Requests": self.requests, "Adopted": self.adopted,
                "FollowedUp": self.followed_up, "Closed": self.closed,
                "GivenUp": self.given_up, "CommandsDeleted": self.commands_deleted,
                "Errors": self.errors}


@dataclass
class _Pass:
    """One request's turn in a run."""

    clients: Clients
    ecs: CloudAssistant
    record: RequestRecord
    now: float
    report: Report
    changed: bool = False
    unwatched: bool = False  # a batch it handed over did not fully land
    handed: set[int] = field(default_factory=set)  # batches handed over in this pass


def reconcile(clients: Clients, now: Callable[[], float] = time.time,
              budget: float | None = None, rng: random.Random | None = None) -> Report:
    """One run over the due open markers. ``budget``: seconds after which no new request is
    taken on (half the function's Timeout)."""
    report = Report()
    started = time.monotonic()
    with patience(PATIENCE, throttling=False):
        due = due_markers(clients, now(), rng)
        report.due = len(due)
        for request_id, markers in list(due.items())[:MAX_REQUESTS]:
            if budget is not None and time.monotonic() - started > budget:
                break
            report.requests.append(request_id)
            try:
                _reconcile_request(clients, request_id, markers, now(), report)
            except CloudCallError as exc:  # the next run tries again
                log.warning("request %s: %s", request_id, exc)
                report.errors.append(f"{request_id}: {exc.message}")
    log.info("reconciled: %s", report.to_dict())
    return report


def due_markers(clients: Clients, now: float, rng: random.Random | None = None
                ) -> dict[str, list[Marker]]:
    """Open markers due by ``now``, per request, the longest overdue first. Read from a random
    request id on and around to it again, at most ``LIST_PAGES`` pages, so a backlog larger
    than one run is spread over the runs."""
    start = f"{OPEN_PREFIX}/r-{(rng or random).getrandbits(96):024x}"
    keys: list[str] = []
    pages = 0
    for cursor, below in ((start, ""), ("", start)):  # start → end, then beginning → start
        while pages < LIST_PAGES:
            page, cursor = clients.results.list_page(OPEN_PREFIX + "/", cursor)
            pages += 1
            kept = [k for k in page if not below or k < below]
            keys += kept
            if not cursor or len(kept) < len(page):
                break
        if pages >= LIST_PAGES:
            break
    found: dict[str, list[Marker]] = {}
    for marker in map(Marker.parse, dict.fromkeys(keys)):
        if marker is not None and marker.due <= now:
            found.setdefault(marker.request_id, []).append(marker)
    return dict(sorted(found.items(), key=lambda item: min(m.due for m in item[1])))


def _reconcile_request(clients: Clients, request_id: str, due: list[Marker], now: float,
                       report: Report) -> None:
    record = read_request(clients.results, request_id)
    if record is None:  # nothing to act on (expired, or a refusal's leftover)
        for marker in due:
            clients.results.delete(marker.key)
            report.closed += 1
        return
    if record.queued:  # fanned out through the dispatch queue
        from shared.reconcile_fanout import reconcile_request

        reconcile_request(clients, record, due, now, report)
        return
    work = _Pass(clients, clients.ecs_in(record.followup.region), record, now, report)
    for marker in sorted(due, key=lambda m: m.slot != SUBMIT):  # the intent first
        if marker.slot == SUBMIT:
            _intent(work, marker)
        elif marker.batch is not None and marker.batch < len(record.batches):
            _batch(work, marker)
        else:
            _close(work, marker)
    record = work.record
    if record.settled and not record.invoked and not record.deletes_command:
        clients.results.delete(record.key)  # nothing ran, nothing to clean: as if refused
        return
    if work.changed:
        save_request(clients.results, record)
    if record.settled and record.invoked and not open_markers(clients.results, request_id):
        # every batch invoked and collected: the request summary, the ad-hoc command, the
        # notification (shared.rollout; what a collector that stopped half-way left undone)
        from shared.rollout import advance

        if advance(clients, work.ecs, request_id) == "finished" and record.deletes_command:
            report.commands_deleted.append(record.command_id)
            log.info("request %s: every batch invoked and collected; command %s deleted",
                     request_id, record.command_id)


def _intent(work: _Pass, marker: Marker) -> None:
    """The submit that wrote this request's intent is over: find what it ran."""
    record = work.record
    waiting = [n for n, b in enumerate(record.batches) if not b.resolved]
    for index, invocation in find_invocations(work, waiting).items():
        _adopt(work, index, invocation)
    for index, batch in work.record.invoked:  # runs, but its hand-over did not land
        if not batch.handed and index not in work.handed and not _stored(work, batch) \
                and _follow(work, index, collect_due(work.record.followup.deadline), 0):
            work.report.followed_up.append(batch.invoke_id)
    waiting = [n for n, b in enumerate(work.record.batches) if not b.resolved]
    if waiting and work.now >= record.created_at + RESUME_WINDOW:
        for index in waiting:
            _give_up(work, index, "NotResumed", "not started, and not delivered again within "
                     f"{RESUME_WINDOW} s to resume it")
        waiting = []
    moved = marker_key(record.request_id, SUBMIT, _later(work.now, marker.tries),
                       marker.tries + 1) if waiting or work.unwatched else ""
    if moved:
        work.clients.results.put(moved, b"", "application/octet-stream")
    if work.record.marker and work.record.marker not in (moved, marker.key):  # one per request
        work.clients.results.delete(work.record.marker)
    if work.record.marker != moved:
        work.record = replace(work.record, marker=moved)
        work.changed = True
    _close(work, marker)


def _batch(work: _Pass, marker: Marker) -> None:
    """A batch's follow-ups should be over: is its summary stored?"""
    index = int(marker.slot)
    batch = work.record.batches[index]
    if index in work.handed or batch.state == FAILED:
        _close(work, marker)
        return
    if batch.state != INVOKED:  # the record missed its start (its update failed): look it up
        _intent(work, marker)
        return
    if work.record.followup.periodic:
        status = work.ecs.invocation_status(batch.invoke_id)
        if status not in FINISHED_INVOCATION:  # its schedule goes on: look again later
            _move(work, marker, work.now + PERIODIC_RECHECK, marker.tries)
            return
    elif _stored(work, batch):
        _close(work, marker)
        return
    if marker.tries >= MAX_TRIES:
        log.error("request %s: %s still has no summary after %d follow-ups; given up",
                  work.record.request_id, batch.invoke_id, marker.tries)
        work.report.given_up.append(f"{work.record.request_id}/{index}")
        _close(work, marker)
        return
    due = _later(work.now, marker.tries)
    if _follow(work, index, due, marker.tries + 1):
        work.report.followed_up.append(batch.invoke_id)
        _close(work, marker)
    else:  # counts as a try all the same: an outage does not keep it going for ever
        _move(work, marker, due, marker.tries + 1)


def find_invocations(work: _Pass, waiting: list[int]) -> dict[int, dict[str, Any]]:
    """The invocations Cloud Assistant has of the ``waiting`` batches (by index).

    A command made for this request alone is asked for by its id: every invocation of it is
    this request's. Otherwise (RunCommand, or a saved command others invoke too) each batch is
    asked for by one of its instances — far fewer invocations than a busy command name has.
    With ``InstanceId`` "the system queries all the execution records of the instance"
    (DescribeInvocations, https://www.alibabacloud.com/help/en/ecs/developer-reference/
    api-ecs-2014-05-26-describeinvocations), so the command's id (or a RunCommand's name) is
    compared here. A match has only instances of that batch, the script's hash (an ad-hoc
    script), and no record naming another request; the oldest one created after the intent
    (less ``CLOCK_SKEW``) wins."""
    record = work.record
    ecs = work.ecs
    if not waiting:
        return {}
    if record.deletes_command and record.command_id:
        found = ecs.describe_invocations(command_id=record.command_id, limit=LOOKUP_LIMIT)
    else:
        found = [invocation for index in waiting[:LOOKUP_BATCHES]
                 for invocation in ecs.describe_invocations(
                     instance_id=record.batches[index].instances[0],
                     command_id=record.command_id, limit=LOOKUP_LIMIT)]
    owner = {i: n for n in waiting for i in record.batches[n].instances}
    candidates: dict[int, list[dict[str, Any]]] = {}
    for invocation in {str(i["InvokeId"]): i for i in found}.values():
        batches = {owner.get(i) for i in _instances(invocation)}
        index = batches.pop() if len(batches) == 1 else None
        if index is not None and _created(invocation) >= record.created_at - CLOCK_SKEW \
                and (str(invocation.get("CommandId", "")) == record.command_id
                     if record.command_id  # else RunCommand's: known by name and script
                     else str(invocation.get("CommandName", "")) == record.command_name) \
                and (not record.content_sha256 or _sha256(invocation) == record.content_sha256):
            candidates.setdefault(index, []).append(invocation)
    matched: dict[int, dict[str, Any]] = {}
    for index, invocations in candidates.items():
        for invocation in sorted(invocations, key=_created):
            other = read_record(work.clients.results, str(invocation["InvokeId"]))
            if other is None or other.request_id == record.request_id:
                matched[index] = invocation
                break
    return matched


def _adopt(work: _Pass, index: int, invocation: dict[str, Any]) -> None:
    record = work.record
    instances = _instances(invocation)
    invoke_id = str(invocation["InvokeId"])
    left_out = tuple((i, "NotInvoked", "the submit left it out of the invocation it made")
                     for i in record.batches[index].instances if i not in instances
                     and i not in {s[0] for s in record.skipped})
    work.record = replace(record.with_batch(index, Batch(instances, INVOKED, invoke_id)),
                          command_id=record.command_id or str(invocation.get("CommandId", "")),
                          skipped=record.skipped + left_out,
                          followup=replace(record.followup, deadline=adoption_deadline(
                              record, invocation)))
    work.changed = True
    if _stored(work, work.record.batches[index]):  # handed over before the submit died
        work.record = work.record.with_batch(index, replace(work.record.batches[index],
                                                            handed=True))
        return
    log.warning("request %s: found %s in Cloud Assistant (its submit did not finish); "
                "collecting it", record.request_id, invoke_id)
    work.report.adopted.append(invoke_id)
    _follow(work, index, collect_due(work.record.followup.deadline), 0)


def _follow(work: _Pass, index: int, due: float, tries: int) -> bool:
    """Hand batch ``index`` over to the collector again: record, follow-up, a new marker."""
    record = work.record
    batch = record.batches[index]
    template = replace(record.followup, command_id=record.command_id)
    followup = for_batch(template, work.clients.settings, batch.invoke_id, batch.instances,
                         events=False, marker=marker_key(record.request_id, index, due, tries))
    skipped = tuple(item for item in record.skipped if item[0] not in batch.instances) \
        if index == 0 else ()
    work.handed.add(index)
    if hand_over(work.clients, followup, skipped):
        if not batch.handed:
            work.record = work.record.with_batch(index, replace(batch, handed=True))
            work.changed = True
        return True
    work.unwatched = True
    return False


def _give_up(work: _Pass, index: int, code: str, message: str) -> None:
    batch = work.record.batches[index]
    work.record = work.record.with_batch(index, replace(batch, state=FAILED, code=code,
                                                        message=message))
    work.changed = True
    work.report.given_up.append(f"{work.record.request_id}/{index}")
    log.warning("request %s: batch %d (%d instances) given up: %s", work.record.request_id,
                index, len(batch.instances), message)


def _move(work: _Pass, marker: Marker, due: float, tries: int) -> None:
    moved = marker_key(marker.request_id, marker.slot, due, tries)
    if moved != marker.key:
        work.clients.results.put(moved, b"", "application/octet-stream")
        work.clients.results.delete(marker.key)


def _close(work: _Pass, marker: Marker) -> None:
    work.clients.results.delete(marker.key)
    work.report.closed += 1


def _stored(work: _Pass, batch: Batch) -> bool:
    template = work.record.followup
    return work.clients.results.named(template.bucket).exists(
        summary_key(template.prefix, batch.invoke_id))


def _later(now: float, tries: int) -> float:
    return now + min(RECHECK * 2 ** tries, MAX_RECHECK)


def _instances(invocation: dict[str, Any]) -> tuple[str, ...]:
    items = (invocation.get("InvokeInstances") or {}).get("InvokeInstance") or []
    return tuple(str(item["InstanceId"]) for item in items)


def _created(invocation: dict[str, Any]) -> float:
    text = str(invocation.get("CreationTime") or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")  # unknown: not ruled out by its age


def _sha256(invocation: dict[str, Any]) -> str:
    try:
        return hashlib.sha256(base64.b64decode(str(invocation.get("CommandContent") or ""))
                              ).hexdigest()
    except ValueError:
        return ""
