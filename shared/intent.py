"""The submit's side of the request record (``shared.ledger``): opened before the first call
that could run anything, closed after the calls.

* ``open_request`` writes the intent (every batch ``Pending``) and its intent marker, due when
  this submit has certainly ended — or, for a redelivery, returns the record a former delivery
  left, so only what did not run is started now.
* ``not_run`` is what a failed call leaves in its batch: ``NotStarted`` (may pass: a redelivery
  resumes it), ``Failed`` (for good), ``Pending`` (an unexpected error: the outcome is unknown
  until the reconciler looks in Cloud Assistant).
* ``close_request`` saves the record and places the intent marker: gone when every batch runs
  (or failed for good) with its follow-up queued; due at once when a batch runs but could not be
  handed to the collector; due in a few minutes while batches wait to be resumed.
* ``drop_request``: a refusal, with nothing run, leaves no record behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shared.clients import Clients
from shared.errors import AssistflowError, CloudCallError
from shared.ledger import (
    FAILED,
    INVOKED,
    NOT_STARTED,
    PENDING,
    SUBMIT,
    Batch,
    RequestRecord,
    claim_request,
    marker_key,
    put_marker,
    save_request,
)
from shared.parallel import settle
from shared.preflight import Ineligible
from shared.results import invoke_prefix

log = logging.getLogger("assistflow.intent")

RECHECK = 300  # seconds: when the reconciler first looks at batches waiting to be resumed


@dataclass(frozen=True)
class NotStarted:
    """An instance whose batch could not start: ``retryable`` if the same idempotency key
    delivered again starts it (a throttled or briefly failing call), else refused for good."""

    instance_id: str
    reason: str  # Cloud Assistant's error code (or ours)
    message: str
    retryable: bool


@dataclass(frozen=True)
class Accepted:
    """What the caller is told: which invocations run and where their results will be, and
    (after a partial start) which instances could not start, and why."""

    command_id: str
    invoke_ids: tuple[str, ...]
    locations: tuple[str, ...]
    request_id: str
    skipped: tuple[Ineligible, ...] = ()
    batches: tuple[tuple[str, ...], ...] = field(default=(), repr=False)
    not_started: tuple[NotStarted, ...] = ()
    # where the request summary will be (oss://…/requests/{RequestId}/summary.json), and, for
    # a request fanned out through the dispatch queue, its plan (Instances, Batches, Waves,
    # MaxConcurrency, MaxErrors): its InvokeIds then come later, in the request summary
    summary: str = ""
    plan: dict[str, object] | None = None

    @property
    def retryable(self) -> bool:
        """Some instances may still start if the request is delivered again."""
        return any(n.retryable for n in self.not_started)

    def raise_if_retryable(self) -> None:
        """For a trigger that retries failed invocations (the queues, the timer): fail this
        one while instances wait to be started, so the platform's retry — the same idempotency
        key — starts them (and answers the rest from the request record)."""
        if self.retryable:
            waiting = sum(n.retryable for n in self.not_started)
            raise PartiallyStartedError(
                f"{', '.join(self.invoke_ids)} run(s); {waiting} instance(s) could not start "
                f"yet ({self.not_started[0].reason}): delivering the request again starts them")

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "InvokeIds": list(self.invoke_ids),
            "CommandId": self.command_id,
            "Results": list(self.locations),
            "RequestId": self.request_id,
        }
        if self.invoke_ids:  # absent for a fanned-out request: its batches run later
            body["InvokeId"] = self.invoke_ids[0]
        if self.summary:
            body["Summary"] = self.summary
        if self.plan is not None:
            body["Plan"] = self.plan
        if self.skipped:
            body["Skipped"] = [{"InstanceId": i.instance_id, "Reason": i.reason,
                                "Message": i.message} for i in self.skipped]
        if self.not_started:
            body["NotStarted"] = [{"InstanceId": n.instance_id, "Reason": n.reason,
                                   "Message": n.message, "Retryable": n.retryable}
                                  for n in self.not_started]
        return body


def accepted_from(record: RequestRecord) -> Accepted:
    """The answer a request record gives: what runs, and what could not start."""
    invoked = [b for b in record.batches if b.state == INVOKED]
    template = record.followup
    if record.queued:  # fanned out: what runs so far, the rest is the dispatchers'
        return Accepted(
            command_id=record.command_id, invoke_ids=tuple(b.invoke_id for b in invoked),
            locations=tuple(f"oss://{template.bucket}/"
                            f"{invoke_prefix(template.prefix, b.invoke_id)}" for b in invoked),
            request_id=record.request_id,
            skipped=tuple(Ineligible(*item) for item in record.skipped),
            summary=summary_location(record), plan=plan_of(record))
    return Accepted(
        command_id=record.command_id,
        invoke_ids=tuple(b.invoke_id for b in invoked),
        locations=tuple(f"oss://{template.bucket}/{invoke_prefix(template.prefix, b.invoke_id)}"
                        for b in invoked),
        request_id=record.request_id,
        skipped=tuple(Ineligible(*item) for item in record.skipped),
        batches=tuple(b.instances for b in invoked),
        not_started=tuple(NotStarted(i, b.code, b.message, b.state != FAILED)
                          for b in record.batches if b.state != INVOKED for i in b.instances),
        summary=summary_location(record),
    )


def summary_location(record: RequestRecord) -> str:
    from shared.request_summary import request_summary_key

    template = record.followup
    return f"oss://{template.bucket}/{request_summary_key(template.prefix, record.request_id)}"


def plan_of(record: RequestRecord) -> dict[str, object]:
    """The 202's ``Plan`` of a fanned-out request."""
    plan: dict[str, object] = {
        "Instances": sum(len(b.instances) for b in record.batches),
        "Batches": len(record.batches), "Waves": record.wave_count}
    plan.update(record.rate_control)
    return plan


class PartiallyStartedError(AssistflowError):
    """Some batches run, others could not start for a reason that may pass: try again."""

    code = "PartiallyStarted"
    status = 503


class RequestMismatchError(AssistflowError):
    """The idempotency key (``ClientToken``) was used before for a different request."""

    code = "IdempotentParameterMismatch"
    status = 422


class RequestAbandonedError(AssistflowError):
    """Nothing of the request ever started, and the reconciler gave it up."""

    code = "RequestAbandoned"
    status = 422


def open_request(clients: Clients, intent: RequestRecord) -> RequestRecord:
    """The record in force for this request: ``intent``, written now with its intent marker,
    or the one an earlier delivery wrote (``RequestMismatchError`` if that was another
    request under the same key). Raises ``CloudCallError`` when the intent cannot be written:
    nothing runs then."""
    outcome: list[RequestRecord] = []

    def claim() -> None:
        outcome.append(claim_request(clients.results, intent)[0])

    claimed, marked = settle([claim, lambda: put_marker(clients.results, intent.marker)],
                             stop_on_error=False)
    if isinstance(claimed, BaseException):
        # Nothing is recorded, so nothing may stay open: a marker left here would name work
        # that does not exist, and its due time (this attempt's) differs from the one the
        # next attempt writes, so the request would keep two intent markers.
        if not isinstance(marked, BaseException):
            _quietly(lambda: clients.results.delete(intent.marker), "unclaimed intent marker")
        raise claimed
    if isinstance(marked, BaseException):
        raise marked  # recorded, its marker not: a redelivery finds the record and resumes
    record = outcome[0]
    if record is not intent:  # a redelivery: the earlier record and its marker stand
        _quietly(lambda: clients.results.delete(intent.marker), "stray intent marker")
        check_same(record, intent.fingerprint)
    return record


def check_same(record: RequestRecord, fingerprint: str) -> None:
    if record.fingerprint != fingerprint:
        raise RequestMismatchError(
            "this idempotency key (ClientToken) was used for a different request; send a new "
            "ClientToken for a new request")


def not_run(batch: Batch, error: BaseException) -> Batch:
    """The batch after its call failed with ``error``."""
    if isinstance(error, CloudCallError):
        state = NOT_STARTED if error.transient else FAILED
        code = error.error_code
    elif isinstance(error, AssistflowError):
        state, code = FAILED, error.code
    else:  # a failure of our own: whether the call reached Cloud Assistant is not known
        state, code = PENDING, "InternalError"
    message = getattr(error, "message", "") or str(error)
    return replace(batch, state=state, invoke_id="", code=code, message=message)


def permanent(error: BaseException) -> bool:
    """A refusal that no retry changes (the cloud's, or pre-flight's)."""
    return isinstance(error, AssistflowError) and not (
        isinstance(error, CloudCallError) and error.transient)


def turned_away(error: BaseException) -> bool:
    """The service answered that it did not take the call (throttled, unavailable): it ran
    nothing. (An internal error or a lost answer may have been processed.)"""
    return isinstance(error, CloudCallError) and (
        error.throttled or error.error_code == "ServiceUnavailable")


def close_request(clients: Clients, record: RequestRecord, unwatched: bool,
                  now: float) -> RequestRecord:
    """Save ``record`` and move its intent marker (see the module docstring); a failure here is
    logged, never raised: what runs, runs, and the marker still there brings the reconciler."""
    old = record.marker
    if unwatched:
        due: float | None = now
    elif not record.settled:
        due = now + RECHECK
    else:
        due = None
    record = replace(record, marker=marker_key(record.request_id, SUBMIT, due)
                     if due is not None else "")
    results = clients.results
    if not record.marker:  # the usual end: both at once
        _all_quietly([lambda: save_request(results, record),
                      lambda: results.delete(old) if old else None], record.request_id)
        return record
    if _all_quietly([lambda: save_request(results, record),
                     lambda: put_marker(results, record.marker)], record.request_id) \
            and old and old != record.marker:
        _quietly(lambda: results.delete(old), "old intent marker")
    return record


def drop_request(clients: Clients, record: RequestRecord) -> None:
    """A refused request (nothing runs) leaves no record and no marker."""
    _all_quietly([lambda: clients.results.delete(record.key),
                  lambda: clients.results.delete(record.marker) if record.marker else None],
                 record.request_id)


def _all_quietly(calls: list[Callable[[], object]], request_id: str) -> bool:
    failures = [o for o in settle(calls, stop_on_error=False) if isinstance(o, BaseException)]
    for failure in failures:
        log.warning("request %s: its record could not be updated (the reconciler will look "
                    "when its marker is due): %s", request_id, failure)
    return not failures


def _quietly(call: Callable[[], object], what: str) -> None:
    try:
        call()
    except CloudCallError as exc:
        log.warning("could not remove the %s: %s", what, exc)
