"""Completion notifications: one durable, bounded job per request, sent at most once.

Targets (the request's ``Notify``): ``Url`` receives a POST of the summary signed like the
webhook (``X-Assistflow-Timestamp`` / ``X-Assistflow-Signature`` with the webhook secret, plus
``X-Assistflow-Event: invocation.completed`` and ``X-Assistflow-Attempt``), through
``shared.notify_url`` (public addresses only, the checked address pinned, no redirects);
``Queue`` receives the summary as an MNS message; ``Topic`` gets it published. The summary
sent is ``summary.json`` without its ``Notification`` part, the same bytes at every attempt.

The job is a message of its own kind in the follow-up queue (``NotifyJob``), started when the
summary is stored (``start``) and handled by the collector (``run``), which nobody waits for:
the ad-hoc command is deleted as soon as the results are stored. Each attempt records its
outcome in ``summary.json``'s ``Notification`` (``shared.results.notification_document``);
no other object is written again.

Schedule: attempt 1 at once; after failed attempt n, attempt n+1 follows ``backoff(n)``
seconds later — 15 s doubling to at most 1 h, ±20 % jitter (seeded by invocation and attempt,
so a redelivered message keeps its schedule) — as a delayed message, never a sleep. A job
retries while the delays it has waited stay within ``NotifyRetrySeconds`` (default 86400 s,
about 30 attempts), then stops as ``GaveUp`` with its last error.

What an attempt's outcome means:

* a 2xx answer, a queue or topic that took the message: ``Sent``;
* any other answer — 3xx included, since redirects are never followed — a network error, a
  DNS failure, a transient MNS error, and a queue or topic that does not exist
  (``QueueNotExist`` / ``TopicNotExist``: an operator can still create it, and the retries
  are cheap and bounded): a failed attempt, retried (``Retrying``, with ``NextAttemptAt``);
* a URL whose host now resolves to an address that is not allowed, and any other MNS refusal
  (``AccessDenied``, …): ``GaveUp`` at once, since trying again cannot help.

At most once, and duplicates converge. The marker ``invocations/{InvokeId}.notified``
(``shared.record.notified_key``) is claimed (created only if absent) before each attempt and
says where that attempt is: ``{"Attempt": n, "ClaimedAt": t}`` while sending, then
``Outcome`` ``Failed`` (released once the next attempt is queued and recorded), ``Sent`` or
``GaveUp`` (kept: every later message stops there; an empty marker, as older versions left
it, reads as ``Sent``). A message whose attempt is already recorded in the summary is a
duplicate and stops. A message that finds the marker held looks again once the holder must
have finished (``CLAIM_STALE`` s; the collector's Timeout is 60 s): a ``Failed`` holder's
attempt is then taken over, while a holder that stopped *while sending* leaves it unknown
whether the receiver got the notification, so the job stops as ``GaveUp`` rather than risk
sending it twice.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from shared import webhook
from shared.clients import Clients, Results
from shared.errors import AssistflowError, CloudCallError
from shared.followup import InvocationRecord
from shared.record import notified_key
from shared.results import (
    GAVE_UP,
    RETRYING,
    SENT,
    dumps,
    notification_document,
    summary_key,
)
from shared.retry import COLLECT_PATIENCE, patience

log = logging.getLogger("assistflow.notify")

JOB_KEY = "notification"  # the follow-up queue message's key for a job
EVENT_HEADER = "X-Assistflow-Event"
ATTEMPT_HEADER = "X-Assistflow-Attempt"
FIRST_DELAY = 15  # seconds after the first failed attempt
MAX_DELAY = 3600
CLAIM_STALE = 90  # seconds after which a claim's holder has surely stopped
RETRIED_MNS_CODES = frozenset({"QueueNotExist", "TopicNotExist"})
FAILED = "Failed"  # the marker's outcome of an attempt that failed (not a summary status)


class NotifyJobInvalidError(AssistflowError):
    code = "InvalidNotificationJob"
    status = 400


@dataclass(frozen=True)
class NotifyJob:
    """Attempt ``attempt`` of notifying ``target`` that ``invoke_id`` finished."""

    invoke_id: str
    bucket: str
    prefix: str
    target: dict[str, str]
    attempt: int = 1
    waited: int = 0  # seconds of backoff the job has waited before this attempt
    window: int = 86400  # NotifyRetrySeconds when the job started

    def to_json(self) -> str:
        return json.dumps({JOB_KEY: asdict(self)}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> NotifyJob:
        try:
            job = cls(**data)
        except TypeError as exc:
            raise NotifyJobInvalidError(f"notification job has missing or unknown fields: "
                                        f"{exc}") from None
        types_ok = (all(isinstance(v, str) for v in (job.invoke_id, job.bucket, job.prefix))
                    and isinstance(job.target, dict) and len(job.target) == 1
                    and all(isinstance(v, int) for v in (job.attempt, job.waited, job.window)))
        if not types_ok or next(iter(job.target)) not in ("Url", "Queue", "Topic"):
            raise NotifyJobInvalidError("notification job has fields of the wrong type")
        return job


def backoff(invoke_id: str, attempt: int) -> int:
    """Seconds between failed attempt ``attempt`` and the next: 15 s doubling, ≤ 1 h, ±20 %."""
    base = min(MAX_DELAY, FIRST_DELAY * 2 ** min(attempt - 1, 20))
    jitter = random.Random(f"{invoke_id}/{attempt}").uniform(0.8, 1.2)
    return max(1, min(MAX_DELAY, round(base * jitter)))


def start(clients: Clients, invocation: InvocationRecord) -> None:
    """Queue attempt 1 of the notification of ``invocation``'s request (its request summary
    is stored: ``{prefix}/requests/{RequestId}/summary.json``). One job per request: its
    ``invoke_id`` field holds the RequestId and its ``prefix`` the requests folder, so the
    summary, the claim marker and the schedule are the request's. Sending it again is
    harmless: the job's attempts are deduplicated."""
    from shared.request_summary import requests_prefix

    if not invocation.notify:
        return
    job = NotifyJob(invocation.request_id, invocation.bucket, requests_prefix(invocation.prefix),
                    dict(invocation.notify), window=clients.settings.notify_retry_seconds)
    clients.queues.send(clients.settings.followup_queue, job.to_json())


def run(job: NotifyJob, clients: Clients, now: Callable[[], float] = time.time) -> str:
    """One attempt of ``job`` (or nothing, for a duplicate); what happened, for logs.

    A transient cloud error of the job's own bookkeeping sends the same message again a
    little later; anything permanent propagates (the collector parks the message)."""
    try:
        with patience(COLLECT_PATIENCE, throttling=False):
            return _run(job, clients, now)
    except CloudCallError as exc:
        if not exc.transient:
            raise
        delay = random.randint(5, 15)
        clients.queues.send(clients.settings.followup_queue, job.to_json(), delay)
        log.warning("notification of %s: %s; trying again in %d s", job.invoke_id, exc, delay)
        return "later"


@dataclass
class _Attempt:
    job: NotifyJob
    clients: Clients
    bucket: Results
    summary: dict[str, Any]
    now: float

    @property
    def marker(self) -> str:
        return notified_key(self.job.invoke_id)

    def record(self, status: str, attempts: int, error: str = "", next_at: str = "") -> None:
        """Write ``summary.json`` again with only its ``Notification`` changed."""
        state = notification_document(status, attempts, _iso(self.now), error, next_at)
        self.bucket.put(summary_key(self.job.prefix, self.job.invoke_id),
                        dumps({**self.summary, "Notification": state}), "application/json")

    def mark(self, outcome: str) -> None:
        """Say in the claim marker how this attempt ended."""
        self.clients.results.put(self.marker, json.dumps(
            {"Attempt": self.job.attempt, "ClaimedAt": self.now, "Outcome": outcome}).encode(),
            "application/json")


def _run(job: NotifyJob, clients: Clients, now: Callable[[], float]) -> str:
    bucket = clients.results.named(job.bucket)
    raw = bucket.get(summary_key(job.prefix, job.invoke_id))
    if raw is None:
        raise NotifyJobInvalidError(f"notification job for {job.invoke_id}: its summary.json is "
                                    "not in the results bucket; nothing to send")
    summary = json.loads(raw)
    state = summary.get("Notification") or notification_document()
    if state["Status"] in (SENT, GAVE_UP) or state["Attempts"] >= job.attempt:
        return "duplicate"
    attempt = _Attempt(job, clients, bucket, summary, now())
    marker_data = json.dumps({"Attempt": job.attempt, "ClaimedAt": attempt.now}).encode()
    for _ in range(3):  # a released or stale Failed marker: claim it again (twice at most)
        if clients.results.claim(attempt.marker, marker_data):
            return _try(attempt)
        raw_marker = clients.results.get(attempt.marker)
        if raw_marker is None:
            continue  # released between the claim and the read
        outcome = _when_held(attempt, _marker(raw_marker), state)
        if outcome != "retake":
            return outcome
        clients.results.delete(attempt.marker)
    return _later(attempt, CLAIM_STALE)


def _when_held(attempt: _Attempt, held: dict[str, Any], state: dict[str, Any]) -> str:
    job, outcome = attempt.job, held.get("Outcome", "")
    if outcome in (SENT, GAVE_UP):  # over; repair a summary that missed saying so
        if state["Status"] != outcome:
            attempt.record(outcome, max(state["Attempts"], int(held.get("Attempt", 0))),
                           state["LastError"] if outcome == GAVE_UP else "")
        return "duplicate"
    age = attempt.now - float(held.get("ClaimedAt", attempt.now))
    if age < CLAIM_STALE:  # its holder may still be at work: look again once it cannot be
        return _later(attempt, math.ceil(CLAIM_STALE - age) + 1)
    if outcome == FAILED:
        return "retake"  # that attempt failed for sure: try again
    interrupted = int(held.get("Attempt", job.attempt))
    attempt.mark(GAVE_UP)
    attempt.record(GAVE_UP, interrupted, f"attempt {interrupted} was interrupted while sending; "
                   "whether it arrived is unknown, and a notification is sent at most once")
    log.error("notification of %s: attempt %d interrupted; not sent again", job.invoke_id,
              interrupted)
    return GAVE_UP


def _later(attempt: _Attempt, delay: int) -> str:
    """Send this same message again in ``delay`` s (another delivery holds the claim)."""
    attempt.clients.queues.send(attempt.clients.settings.followup_queue,
                                attempt.job.to_json(), delay)
    return "later"


def _try(attempt: _Attempt) -> str:
    """The attempt itself, holding the claim; then its outcome, recorded."""
    job = attempt.job
    error, retried = _deliver(attempt)
    if not error:
        try:  # either record is enough for a redelivery to see it was sent
            attempt.mark(SENT)
        finally:
            attempt.record(SENT, job.attempt)
        log.info("notified %s of %s (attempt %d)", next(iter(job.target)), job.invoke_id,
                 job.attempt)
        return SENT
    try:
        attempt.mark(FAILED)
    except CloudCallError:
        attempt.clients.results.release(attempt.marker)  # a retry of this message takes over
        raise
    delay = backoff(job.invoke_id, job.attempt)
    if retried and job.waited + delay <= job.window:
        again = replace(job, attempt=job.attempt + 1, waited=job.waited + delay)
        try:
            attempt.clients.queues.send(attempt.clients.settings.followup_queue,
                                        again.to_json(), delay)
            attempt.record(RETRYING, job.attempt, error, _iso(attempt.now + delay))
        finally:  # this attempt failed for sure: whoever comes next may try
            attempt.clients.results.release(attempt.marker)
        log.warning("notification of %s, attempt %d: %s; next in %d s", job.invoke_id,
                    job.attempt, error, delay)
        return RETRYING
    attempt.mark(GAVE_UP)
    why = (f"; retried for {job.waited} s (NotifyRetrySeconds {job.window})" if retried
           else "; not retried: trying again cannot help")
    attempt.record(GAVE_UP, job.attempt, error + why)
    log.error("notification of %s gave up after attempt %d: %s%s", job.invoke_id, job.attempt,
              error, why)
    return GAVE_UP


def _deliver(attempt: _Attempt) -> tuple[str, bool]:
    """Send the summary once: ('', _) when it was taken, else (why not, whether to retry)."""
    from shared import notify_url

    clients, job = attempt.clients, attempt.job
    summary = {k: v for k, v in attempt.summary.items() if k != "Notification"}
    body = json.dumps(summary, ensure_ascii=False, sort_keys=True)
    kind, target = next(iter(job.target.items()))
    try:
        if kind == "Url":
            headers = {"Content-Type": "application/json", EVENT_HEADER: "invocation.completed",
                       ATTEMPT_HEADER: str(job.attempt)}
            if clients.settings.webhook_secret:
                headers.update(webhook.sign(clients.settings.webhook_secret, body.encode()))
            allowed = notify_url.Allowed.parse(clients.settings.notify_allowed_hosts)
            answer = notify_url.post(target, body.encode(), headers, allowed)
            if 200 <= answer.status < 300:
                return "", False
            moved = (f" (a redirect to {answer.location!r}, not followed: name the final URL "
                     "in Notify.Url)" if 300 <= answer.status < 400 else "")
            return _clean(f"the receiver answered {answer.status} {answer.reason}{moved}"), True
        if kind == "Queue":
            clients.queues.send(target, body)
        else:
            clients.queues.publish(target, body)
        return "", False
    except notify_url.UrlRefused as exc:
        return _clean(exc.message), exc.rule == "unresolvable"  # DNS may answer again
    except OSError as exc:
        return _clean(f"the receiver could not be reached: {type(exc).__name__}: {exc}"), True
    except CloudCallError as exc:
        return _clean(exc.message), exc.transient or exc.error_code in RETRIED_MNS_CODES


def _marker(raw: bytes | None) -> dict[str, Any]:
    """A claim marker's content; an empty or unreadable one (older versions) reads as Sent."""
    try:
        data = json.loads(raw or b"")
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"Outcome": SENT}


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def _clean(text: str) -> str:
    """A receiver's words as they go into summary.json: printable ASCII, at most 300."""
    return _UNPRINTABLE.sub("?", text)[:300]


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
