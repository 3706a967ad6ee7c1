"""Fan-out: a request of several batches is invoked by the dispatch function, one batch each.

The intake of a request of more than one batch (over 100 instances, or ``RateControl`` waves)
validates, checks and pre-flights it as before, then (``submit``):

1. creates the ad-hoc command once (CreateCommand with its ClientToken);
2. writes the request record (``shared.ledger``; ``queued``: every batch ``Pending``, its wave,
   the error budget, the InvokeCommand parameters) with its intent marker;
3. starts wave 0 (``start_wave``): for each of its batches an open marker (due when the
   dispatcher must have handed it over) and a ``DispatchJob`` message in the dispatch queue
   (BatchSendMessage, 16 a call);
4. removes the intent marker and answers 202 with the RequestId, where the request summary will
   be, and the plan. The InvokeIds appear in the request record and summary as batches run.

Each dispatch invocation (``shared.dispatch_batch``) invokes its batch with its own
ClientToken, hands it to the collector and records its state in its own object. The collector
that stores the last summary of a wave starts the next one (``shared.rollout``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from shared.clients import Clients
from shared.errors import AssistflowError, CloudCallError
from shared.ledger import (
    SUBMIT,
    Batch,
    RequestRecord,
    fingerprint,
    marker_key,
    put_marker,
    read_request,
    save_request,
)
from shared.parallel import STORE_POOL_SIZE, run_all, settle
from shared.ratecontrol import waves

if TYPE_CHECKING:
    from shared.intent import Accepted
    from shared.preflight import Plan
    from shared.request import CommandRequest

log = logging.getLogger("assistflow.fanout")

JOB_KEY = "dispatch"
BATCH_SIZE = 100
DISPATCH_DUE = 600  # seconds: a queued batch not handed over by then is the reconciler's
SEND_BATCH = 16  # MNS BatchSendMessage takes at most 16 messages


class DispatchJobInvalidError(AssistflowError):
    code = "InvalidDispatchJob"
    status = 400


@dataclass(frozen=True)
class DispatchJob:
    """Invoke batch ``batch`` of request ``request_id`` (its record says on what, how)."""

    request_id: str
    batch: int
    marker: str  # this batch's dispatch marker, removed once it is handed over
    token: str  # the batch's InvokeCommand ClientToken
    # What the dispatcher needs from the request record, carried along (a few KB) so that it
    # does not read the whole record (10,000 instances: ~300 KB) for each batch: the batch's
    # instances, the InvokeCommand parameters, and the first follow-up every batch shares.
    # Empty: read the record (the first batch, which also carries what pre-flight skipped).
    instances: tuple[str, ...] = ()
    invoke: dict[str, Any] = field(default_factory=dict)
    followup: dict[str, Any] = field(default_factory=dict)
    command_name: str = ""
    deletes_command: bool = False

    def to_json(self) -> str:
        data = asdict(self)
        data["instances"] = list(self.instances)
        return json.dumps({JOB_KEY: data}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_body(cls, body: str) -> DispatchJob:
        try:
            data: Any = json.loads(body)[JOB_KEY]
            job = cls(**{**data, "instances": tuple(data.get("instances") or ())})
        except (ValueError, TypeError, KeyError) as exc:
            raise DispatchJobInvalidError(f"not a dispatch job: {exc}") from None
        if not (isinstance(job.request_id, str) and isinstance(job.batch, int)
                and isinstance(job.marker, str) and isinstance(job.token, str)
                and all(isinstance(i, str) for i in job.instances)
                and isinstance(job.invoke, dict) and isinstance(job.followup, dict)):
            raise DispatchJobInvalidError("dispatch job has fields of the wrong type")
        return job

    @property
    def self_contained(self) -> bool:
        return bool(self.instances and self.followup)


def job_for(record: RequestRecord, index: int, marker: str, token: str) -> DispatchJob:
    """Batch ``index``'s job; self-contained unless it carries what pre-flight skipped."""
    if index == 0 and record.skipped:
        return DispatchJob(record.request_id, index, marker, token)
    template = replace(record.followup, command_id=record.command_id)
    return DispatchJob(record.request_id, index, marker, token,
                       record.batches[index].instances, dict(record.invoke),
                       json.loads(template.to_json()), record.command_name,
                       record.deletes_command)


def plan_batches(instance_ids: tuple[str, ...], per_wave: int
                 ) -> tuple[list[tuple[str, ...]], tuple[int, ...]]:
    """Batches of at most 100 instances, none spanning two waves, and each one's wave."""
    groups: list[tuple[str, ...]] = []
    wave_of: list[int] = []
    for wave, members in enumerate(waves(instance_ids, per_wave)):
        for i in range(0, len(members), BATCH_SIZE):
            groups.append(members[i:i + BATCH_SIZE])
            wave_of.append(wave)
    return groups, tuple(wave_of)


def start_wave(clients: Clients, record: RequestRecord, wave: int,
               token: Callable[[int], str], now: float | None = None) -> list[int]:
    """Queue the dispatch jobs of ``wave``'s batches that are not started (their markers
    first, so that a job lost between here and the dispatcher is the reconciler's). Wave 0's
    markers are due from the record's creation, so queueing it again puts the same ones.

    A marker that did not land does not hold its job back: the jobs are sent, then the
    marker's error is raised — the caller keeps its own marker meanwhile (the submit its
    intent marker, a closer its ``advance`` marker), which brings the reconciler should that
    job be lost; the batch itself runs now rather than at the reconciler's next run."""
    at = (record.created_at if wave == 0 else time.time()) if now is None else now
    todo = [n for n, b in enumerate(record.batches)
            if record.wave_of(n) == wave and not b.resolved and not b.invoke_id]
    jobs = [job_for(record, n, marker_key(record.request_id, n, at + DISPATCH_DUE), token(n))
            for n in todo]
    marked = settle([functools.partial(put_marker, clients.results, job.marker)
                     for job in jobs], STORE_POOL_SIZE, stop_on_error=False)
    send_jobs(clients, jobs)
    failure = next((o for o in marked if isinstance(o, BaseException)), None)
    if failure is not None:
        raise failure
    log.info("request %s: wave %d, %d batch(es) queued for dispatch", record.request_id, wave,
             len(jobs))
    return todo


def send_jobs(clients: Clients, jobs: list[DispatchJob]) -> None:
    """BatchSendMessage, 16 jobs a call, the calls side by side."""
    queue = clients.settings.dispatch_queue
    chunks = [[j.to_json() for j in jobs[i:i + SEND_BATCH]]
              for i in range(0, len(jobs), SEND_BATCH)]
    run_all([functools.partial(clients.queues.send_batch, queue, chunk) for chunk in chunks])


def intent_for_queue(record: RequestRecord, groups: list[tuple[str, ...]],
                     wave_of: tuple[int, ...], *, error_budget: int | None,
                     invoke: dict[str, Any], rate_control: dict[str, Any]) -> RequestRecord:
    """The request record of a fanned-out request (every batch Pending)."""
    return replace(record, batches=tuple(Batch(g) for g in groups), waves=wave_of,
                   queued=True, error_budget=error_budget, invoke=invoke,
                   rate_control=rate_control)


def submit_marker(request_id: str, due: float) -> str:
    return marker_key(request_id, SUBMIT, due)


def batches_for(request: CommandRequest, instance_ids: tuple[str, ...]
                ) -> tuple[list[tuple[str, ...]], tuple[int, ...]]:
    """The request's batches and their waves (one wave without RateControl)."""
    rate = request.rate_control
    per_wave = rate.concurrency(len(instance_ids)) if rate else len(instance_ids)
    return plan_batches(instance_ids, per_wave)


def fans_out(request: CommandRequest, clients: Clients, targets: int) -> bool:
    """Is this request invoked through the dispatch queue? When it has more than one batch
    (over 100 instances, or RateControl waves) and the deployment has the queue."""
    if not clients.settings.dispatch_queue or request.periodic:
        return False
    rate = request.rate_control
    per_wave = rate.concurrency(targets) if rate else targets
    return targets > BATCH_SIZE or per_wave < targets


def token_for(record: RequestRecord) -> Callable[[int], str]:
    """Batch n's InvokeCommand ClientToken, from the seed the record keeps."""
    from shared.commands import client_token

    seed = str(record.invoke.get("TokenSeed", ""))
    return lambda n: client_token(seed, f"invoke-{n}")


def submit(request: CommandRequest, plan: Plan, clients: Clients, *, source: str,
           idempotency_key: str, request_id: str, lease: float,
           now: Callable[[], float] = time.time) -> Accepted:
    """Record the request, create its command, queue wave 0 and answer (module docstring)."""
    from shared import commands
    from shared.dispatch import intent_record
    from shared.intent import accepted_from, check_same, open_request
    from shared.ledger import load_request

    results = clients.results
    existing = read_request(results, request_id)
    if existing is not None:  # a redelivery: the record answers
        check_same(existing, fingerprint(request))
        loaded = load_request(results, request_id) or existing
        if existing.marker:  # wave 0 not known to be queued (the delivery before failed)
            put_marker(results, existing.marker)  # the reconciler's, should this fail again
            return _queue_wave_zero(clients, loaded)
        return accepted_from(loaded)
    ecs = clients.ecs_in(request.region)
    started = now()
    timeout = commands.command_timeout(request, plan)
    command_id = commands.resolve_command(request, ecs, idempotency_key, timeout)
    groups, wave_of = batches_for(request, plan.instance_ids)
    template = commands.first_followup(
        request, clients.settings, command_id, source=source, request_id=request_id,
        submitted_at=started, timeout=timeout, batches=len(groups), delete=request.adhoc)
    # the command is this request's own and every batch too large for events: the collector
    # lets its events go once one record said so (shared.record.followed_command)
    template = replace(template, events_unused=template.adhoc and min(map(len, groups))
                       > clients.settings.events_max_instances)
    rate = request.rate_control
    intent = intent_for_queue(
        intent_record(request, plan, template, started + lease), groups, wave_of,
        error_budget=rate.error_budget(len(plan.instance_ids)) if rate else None,
        rate_control=rate.to_json() if rate else {},
        invoke={"TokenSeed": commands.client_token(idempotency_key, "fanout"),
                "Parameters": dict(request.parameters) if request.enable_parameter else None,
                "Timeout": request.timeout if request.command_id else None,
                "WorkingDir": request.working_dir if request.command_id else "",
                "Username": request.username})
    record = open_request(clients, intent)
    if record is not intent:
        return accepted_from(record)
    log.info("request %s: %d instance(s) in %d batch(es), %d wave(s)", request_id,
             len(plan.instance_ids), len(groups), record.wave_count)
    return _queue_wave_zero(clients, record)


def _queue_wave_zero(clients: Clients, record: RequestRecord) -> Accepted:
    """Queue wave 0 and remove the intent marker. Its batch markers are due from the record's
    creation, so a redelivery that queues it again puts the same ones (one per batch: a second
    would keep the request open). Queueing that fails is answered 202 all the same (the
    request is recorded): its intent marker stays, for a redelivery or the reconciler."""
    from shared.intent import accepted_from

    try:
        start_wave(clients, record, 0, token_for(record))
    except CloudCallError as exc:
        log.warning("request %s: wave 0 not (fully) queued; its intent marker stays for a "
                    "redelivery or the reconciler: %s", record.request_id, exc)
        return accepted_from(record)
    queued = replace(record, marker="")
    try:
        save_request(clients.results, queued)
        clients.results.delete(record.marker)
    except CloudCallError as exc:  # the batches' closers do not wait for it (shared.rollout)
        log.warning("request %s: its intent marker stays (the reconciler removes it): %s",
                    record.request_id, exc)
    return accepted_from(queued)
