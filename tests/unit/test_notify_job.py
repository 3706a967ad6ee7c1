"""The notification job: its schedule, its bound, its record in summary.json, and how
duplicates and interrupted attempts converge (in memory; the reliability suite runs it in the
local cloud)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared import notify
from shared.collector_events import message_item
from shared.config import Credentials, Settings
from shared.errors import CloudCallError
from shared.notify import CLAIM_STALE, NotifyJob, backoff
from shared.record import notified_key
from shared.results import dumps, notification_document

INVOKE = "t-notify0001"
SUMMARY_KEY = f"results/{INVOKE}/summary.json"
MARKER = notified_key(INVOKE)
TARGET = "assistflow-notify-ops"


class Store:
    """A bucket: put, get, claim (create if absent), delete."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes: list[str] = []

    def named(self, name: str) -> Store:
        return self

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data
        self.writes.append(key)

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def claim(self, key: str, data: bytes = b"") -> bool:
        if key in self.objects:
            return False
        self.put(key, data, "")
        return True

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    release = delete


@dataclass
class Queues:
    """The follow-up queue (messages kept with their delay) and the notify target."""

    answers: list[Exception | None] = field(default_factory=list)  # per send to TARGET
    sent: list[tuple[str, int]] = field(default_factory=list)  # follow-up queue: (body, delay)
    delivered: list[str] = field(default_factory=list)  # what TARGET received

    def send(self, name: str, body: str, delay_seconds: int = 0) -> str:
        if name != TARGET:
            self.sent.append((body, delay_seconds))
            return "m"
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.delivered.append(body)
        return "m"


class Clients:
    def __init__(self, answers: list[Exception | None], window: int = 86400) -> None:
        self.settings = Settings(region="cn-hangzhou", credentials=Credentials("ak", "sk"),
                                 followup_queue="assistflow-followups",
                                 results_bucket="assistflow-results",
                                 notify_retry_seconds=window)
        self.results = Store()
        self.queues = Queues(answers)


SUMMARY = {"InvokeId": INVOKE, "Status": "Success", "Counts": {"Success": 1},
           "Notification": notification_document()}


def started(answers: list[Exception | None], window: int = 86400) -> tuple[Clients, NotifyJob]:
    clients = Clients(answers, window)
    clients.results.put(SUMMARY_KEY, dumps(SUMMARY), "application/json")
    job = NotifyJob(INVOKE, "", "results", {"Queue": TARGET}, window=window)
    return clients, job


def notification(clients: Clients) -> dict[str, Any]:
    return dict(json.loads(clients.results.objects[SUMMARY_KEY])["Notification"])


def run_until_quiet(clients: Clients, job: NotifyJob, now: float = 1_000_000.0
                    ) -> list[tuple[float, str]]:
    """Run the job as the queue would: each message when its delay is over. (time, outcome)."""
    pending = [(now, job)]
    outcomes = []
    while pending:
        pending.sort(key=lambda item: item[0])
        at, message = pending.pop(0)
        before = len(clients.queues.sent)
        outcomes.append((at, notify.run(message, clients, now=lambda at=at: at)))
        for body, delay in clients.queues.sent[before:]:
            item = message_item(body)
            assert isinstance(item, NotifyJob)
            pending.append((at + delay, item))
    return outcomes


def unavailable() -> CloudCallError:
    return CloudCallError("SendMessage", "QueueNotExist", "The queue name you provided is "
                          "not exist.")


def test_the_schedule_doubles_from_15_s_to_an_hour_with_jitter() -> None:
    delays = [backoff(INVOKE, n) for n in range(1, 16)]
    for n, delay in enumerate(delays, start=1):
        base = min(3600, 15 * 2 ** (n - 1))
        assert 0.8 * base - 1 <= delay <= min(3600, 1.2 * base + 1)
    assert delays == [backoff(INVOKE, n) for n in range(1, 16)]  # the same for a redelivery
    assert backoff("t-other", 3) != backoff(INVOKE, 3) or backoff("t-other", 4) != delays[3]


def test_a_target_that_keeps_failing_is_retried_for_about_a_day_then_given_up() -> None:
    clients, job = started([unavailable()] * 100)
    outcomes = run_until_quiet(clients, job)
    attempts = [o for o in outcomes if o[1] in ("Retrying", "GaveUp")]
    assert 25 <= len(attempts) <= 40 and attempts[-1][1] == "GaveUp"
    assert attempts[-1][0] - attempts[0][0] <= 86400  # the bound: NotifyRetrySeconds
    state = notification(clients)
    assert state["Status"] == "GaveUp" and state["Attempts"] == len(attempts)
    assert "QueueNotExist" in state["LastError"] and "retried for" in state["LastError"]
    assert state["NextAttemptAt"] == ""
    assert json.loads(clients.results.objects[MARKER])["Outcome"] == "GaveUp"
    # only summary.json (its Notification) and the marker were ever written
    assert set(clients.results.writes) == {SUMMARY_KEY, MARKER}


def test_a_compressed_window_gives_up_after_three_attempts() -> None:
    clients, job = started([unavailable()] * 10, window=60)
    outcomes = [o for _, o in run_until_quiet(clients, job)]
    assert outcomes == ["Retrying", "Retrying", "GaveUp"]


def test_each_failed_attempt_is_recorded_with_its_next_time() -> None:
    clients, job = started([unavailable(), None])
    assert notify.run(job, clients, now=lambda: 1_000_000.0) == "Retrying"
    state = notification(clients)
    assert state == {"Status": "Retrying", "Attempts": 1, "LastAttemptAt": "1970-01-12T13:46:40Z",
                     "LastError": state["LastError"], "NextAttemptAt": state["NextAttemptAt"]}
    assert "QueueNotExist" in state["LastError"]
    [(body, delay)] = clients.queues.sent
    assert delay == backoff(INVOKE, 1)
    assert MARKER not in clients.results.objects  # released for the next attempt
    again = message_item(body)
    assert isinstance(again, NotifyJob) and (again.attempt, again.waited) == (2, delay)
    assert notify.run(again, clients, now=lambda: 1_000_000.0 + delay) == "Sent"
    state = notification(clients)
    assert (state["Status"], state["Attempts"], state["LastError"]) == ("Sent", 2, "")
    assert clients.queues.delivered == [clients.queues.delivered[0]]
    summary = json.loads(clients.queues.delivered[0])
    assert "Notification" not in summary and summary["InvokeId"] == INVOKE


def test_a_refusal_that_cannot_pass_gives_up_at_once() -> None:
    denied = CloudCallError("SendMessage", "AccessDenied", "denied")
    clients, job = started([denied])
    assert notify.run(job, clients) == "GaveUp"
    state = notification(clients)
    assert state["Attempts"] == 1 and "not retried" in state["LastError"]
    assert clients.queues.sent == []


def test_duplicate_deliveries_send_once() -> None:
    clients, job = started([])
    assert notify.run(job, clients) == "Sent"
    written = clients.results.objects[SUMMARY_KEY]
    for _ in range(3):  # the same message again, or a second start
        assert notify.run(job, clients) == "duplicate"
    assert len(clients.queues.delivered) == 1
    assert clients.results.objects[SUMMARY_KEY] == written


def test_a_delivery_meeting_a_claim_in_progress_looks_again_when_it_is_over() -> None:
    clients, job = started([])
    clients.results.put(MARKER, json.dumps({"Attempt": 1, "ClaimedAt": 1000.0}).encode(), "")
    assert notify.run(job, clients, now=lambda: 1010.0) == "later"
    [(body, delay)] = clients.queues.sent
    assert message_item(body) == job and delay == CLAIM_STALE - 10 + 1
    assert clients.queues.delivered == []


def test_an_attempt_interrupted_while_sending_is_not_sent_again() -> None:
    clients, job = started([])
    clients.results.put(MARKER, json.dumps({"Attempt": 1, "ClaimedAt": 1000.0}).encode(), "")
    assert notify.run(job, clients, now=lambda: 1000.0 + CLAIM_STALE + 1) == "GaveUp"
    state = notification(clients)
    assert state["Status"] == "GaveUp" and "interrupted" in state["LastError"]
    assert clients.queues.delivered == []  # at most once: it may have arrived


def test_an_attempt_that_failed_before_its_holder_stopped_is_taken_over() -> None:
    clients, job = started([])
    clients.results.put(MARKER, json.dumps({"Attempt": 1, "ClaimedAt": 1000.0,
                                            "Outcome": "Failed"}).encode(), "")
    assert notify.run(job, clients, now=lambda: 1000.0 + CLAIM_STALE + 1) == "Sent"
    assert len(clients.queues.delivered) == 1


def test_a_sent_marker_repairs_a_summary_that_missed_it() -> None:
    clients, job = started([])
    clients.results.put(MARKER, b"", "")  # as older versions left it: sent
    assert notify.run(job, clients) == "duplicate"
    assert notification(clients)["Status"] == "Sent"
    assert clients.queues.delivered == []


def test_bookkeeping_that_fails_after_a_failed_attempt_hands_the_attempt_on() -> None:
    clients, job = started([unavailable()])
    put = clients.results.put

    def failing_put(key: str, data: bytes, content_type: str) -> None:
        if key == SUMMARY_KEY:
            raise CloudCallError("PutObject", "InternalError", "oss down", transient=True)
        put(key, data, content_type)

    clients.results.put = failing_put  # type: ignore[method-assign]
    assert notify.run(job, clients, now=lambda: 1000.0) == "later"
    assert MARKER not in clients.results.objects  # released: the retry can claim it
    bodies = [message_item(b) for b, _ in clients.queues.sent]
    assert job in bodies  # the same attempt again, a little later
    clients.results.put = put  # type: ignore[method-assign]
    assert notify.run(job, clients, now=lambda: 1010.0) == "Sent"


def test_a_job_message_with_bad_fields_is_refused() -> None:
    from shared.notify import NotifyJobInvalidError

    for data in ({"invoke_id": 1}, {**json.loads(NotifyJob(INVOKE, "", "r", {"Ftp": "x"})
                                                  .to_json())["notification"]}):
        with pytest.raises(NotifyJobInvalidError):
            message_item(json.dumps({"notification": data}))
