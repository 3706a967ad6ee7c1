"""The request record and its open markers, the partial answer, and the reconciler's pure parts:
which markers are due, and which Cloud Assistant invocation belongs to which batch."""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import replace
from typing import Any

import pytest

from shared.deadletter import can_never_succeed
from shared.errors import CloudCallError, IneligibleInstancesError
from shared.followup import FollowUp
from shared.intent import PartiallyStartedError, accepted_from, not_run, permanent
from shared.ledger import (
    FAILED,
    INVOKED,
    NOT_STARTED,
    PENDING,
    Batch,
    Marker,
    RequestRecord,
    batch_open,
    marker_key,
    put_marker,
)
from shared.reconcile import LIST_PAGES, _Pass, due_markers, find_invocations

TEMPLATE = FollowUp(invoke_id="", command_id="c-1", region="cn-hangzhou", pending=(),
                    attempt=1, deadline=1000.0, bucket="b", prefix="results", request_id="r-1",
                    adhoc=True, source="http", submitted_at=900.0, batches=2)


def record(*batches: Batch, **changes: Any) -> RequestRecord:
    fields: dict[str, Any] = dict(
        request_id="r-1", fingerprint="f", created_at=900.0, lease_until=930.0,
        command_name="assistflow", content_sha256=hashlib.sha256(b"echo hi").hexdigest(),
        command_id="", deletes_command=True, followup=TEMPLATE, batches=batches,
        skipped=(("i-gone", "InstanceNotRunning", "stopped"),),
        marker=marker_key("r-1", "submit", 940))
    fields.update(changes)
    return RequestRecord(**fields)


def test_a_batch_is_open_while_any_batch_marker_is_there(server: Any, bucket: Any) -> None:
    """``batch_open`` lists one key: the batch markers sort before every other slot."""
    from tests.unit.test_oss_writes import results_on

    results = results_on(server.url)
    assert not batch_open(results, "r-1")  # no marker at all
    for slot in ("submit", "advance", "advance"):
        put_marker(results, marker_key("r-1", slot, 940 + random.randint(0, 99)))
    put_marker(results, marker_key("r-10", 0, 940))  # another request's, beside it
    assert not batch_open(results, "r-1")
    for slot in (99, 10, 7):
        put_marker(results, marker_key("r-1", slot, 950))
    assert batch_open(results, "r-1")
    for slot in (7, 10):
        results.delete(marker_key("r-1", slot, 950))
    assert batch_open(results, "r-1")  # the 99th is left
    results.put("invocations/open/r-1/0-not-a-marker", b"", "text/plain")  # sorts first
    assert batch_open(results, "r-1")  # looked past, with the whole listing
    results.delete(marker_key("r-1", 99, 950))
    assert not batch_open(results, "r-1")


def test_a_request_record_round_trips() -> None:
    original = record(Batch(("i-a", "i-b"), INVOKED, "t-1", handed=True),
                      Batch(("i-c",), NOT_STARTED, code="Throttling", message="slow down"))
    assert RequestRecord.from_json(original.to_json()) == original
    assert not original.settled and original.invoked == [(0, original.batches[0])]


@pytest.mark.parametrize("key", [
    "invocations/open/r-1/submit.940.0", "invocations/open/r-1/3.1200.2"])
def test_marker_keys_carry_their_slot_due_time_and_tries(key: str) -> None:
    marker = Marker.parse(key)
    assert marker is not None and marker.key == key
    assert marker_key(marker.request_id, marker.slot, marker.due, marker.tries) == key
    assert marker.batch == (None if marker.slot == "submit" else 3)


@pytest.mark.parametrize("key", ["invocations/open/r-1", "invocations/open/r-1/submit",
                                 "invocations/open/r-1/0.x.0", "invocations/r-1/0.1.0", ""])
def test_other_keys_are_not_markers(key: str) -> None:
    assert Marker.parse(key) is None


class Listing:
    """``Results.list_page`` over a fixed set of keys, counting its pages."""

    def __init__(self, keys: list[str], page: int = 3) -> None:
        self.keys = sorted(keys)
        self.page = page
        self.pages = 0

    def list_page(self, prefix: str, marker: str = "", max_keys: int = 1000
                  ) -> tuple[list[str], str]:
        self.pages += 1
        after = [k for k in self.keys if k.startswith(prefix) and k > marker][:self.page]
        more = bool(after) and after[-1] != [k for k in self.keys if k.startswith(prefix)][-1]
        return after, after[-1] if more else ""

    def get(self, key: str) -> bytes | None:
        return None


class Clients:
    def __init__(self, results: Any, ecs: Any = None) -> None:
        self.results = results
        self.ecs = ecs


def test_due_markers_are_found_on_both_sides_of_the_random_start_longest_overdue_first(
        ) -> None:
    keys = [marker_key(f"r-{n:024x}", "submit", 100 + n) for n in range(0, 10)]
    keys += [marker_key(f"r-{n:024x}", 0, 10_000) for n in range(10, 14)]  # not due yet
    listing = Listing(keys)
    rng = random.Random(7)  # a start in the middle of the ids
    due = due_markers(Clients(listing), now=500, rng=rng)  # type: ignore[arg-type]
    assert list(due) == [f"r-{n:024x}" for n in range(10)]
    assert listing.pages <= LIST_PAGES


def test_a_backlog_larger_than_one_run_is_read_a_bounded_number_of_pages() -> None:
    spread = 2 ** 96 // 100  # request ids are hashes: spread over their whole range
    keys = [marker_key(f"r-{n * spread:024x}", "submit", 1) for n in range(100)]
    listing = Listing(keys, page=2)
    seen: set[str] = set()
    for seed in range(20):  # each run reads a bounded slice, from a random point
        listing.pages = 0
        due = due_markers(Clients(listing), now=500, rng=random.Random(seed))  # type: ignore[arg-type]
        assert listing.pages == LIST_PAGES and 2 * LIST_PAGES - 1 <= len(due) <= 2 * LIST_PAGES
        seen |= set(due)
    assert len(seen) > 80  # and the runs together cover nearly all of the backlog


@pytest.mark.parametrize(("error", "state", "code", "final"), [
    (CloudCallError("InvokeCommand", "ServiceUnavailable", "x", transient=True), NOT_STARTED,
     "ServiceUnavailable", False),
    (CloudCallError("InvokeCommand", "InvalidInstance.NotMatch", "x"), FAILED,
     "InvalidInstance.NotMatch", True),
    (IneligibleInstancesError("no", []), FAILED, "IneligibleInstances", True),
    (KeyError("bug"), PENDING, "InternalError", False),
])
def test_a_failed_call_leaves_its_batch_waiting_refused_or_unknown(
        error: BaseException, state: str, code: str, final: bool) -> None:
    batch = not_run(Batch(("i-a",)), error)
    assert (batch.state, batch.code, batch.invoke_id) == (state, code, "")
    assert permanent(error) is final


def test_a_partial_start_answers_what_runs_and_per_instance_what_did_not() -> None:
    accepted = accepted_from(record(
        Batch(("i-a", "i-b"), INVOKED, "t-1"),
        Batch(("i-c",), NOT_STARTED, code="Throttling.User", message="too fast"),
        Batch(("i-d",), FAILED, code="InvalidInstance.NotMatch", message="stopped")))
    body = accepted.to_dict()
    assert body["InvokeIds"] == ["t-1"] and body["Results"] == ["oss://b/results/t-1/"]
    assert body["NotStarted"] == [
        {"InstanceId": "i-c", "Reason": "Throttling.User", "Message": "too fast",
         "Retryable": True},
        {"InstanceId": "i-d", "Reason": "InvalidInstance.NotMatch", "Message": "stopped",
         "Retryable": False}]
    assert body["Skipped"][0]["InstanceId"] == "i-gone"
    with pytest.raises(PartiallyStartedError) as raised:
        accepted.raise_if_retryable()
    assert raised.value.status == 503 and not can_never_succeed(raised.value)
    settled = accepted_from(record(Batch(("i-a",), INVOKED, "t-1"),
                                   Batch(("i-d",), FAILED, code="X")))
    settled.raise_if_retryable()  # nothing more would start: the queue keeps nothing
    assert "NotStarted" in settled.to_dict()


class Ecs:
    def __init__(self, found: list[dict[str, Any]]) -> None:
        self.found = found
        self.asked: list[dict[str, Any]] = []

    def describe_invocations(self, **filters: Any) -> list[dict[str, Any]]:
        self.asked.append(filters)
        return self.found


class Records(Listing):
    """Invocation records: ``t-theirs`` was recorded by another request."""

    def get(self, key: str) -> bytes | None:
        if key != "invocations/t-theirs.json":
            return None
        return replace(TEMPLATE, invoke_id="t-theirs", request_id="r-2").to_json().encode()


def invocation(invoke_id: str, instances: list[str], created: str,
               content: bytes = b"echo hi", name: str = "assistflow") -> dict[str, Any]:
    return {"InvokeId": invoke_id, "CommandId": "c-run", "CreationTime": created,
            "CommandName": name,
            "CommandContent": base64.b64encode(content).decode(), "Timeout": 60,
            "InvokeInstances": {"InvokeInstance": [{"InstanceId": i} for i in instances]}}


def test_invocations_are_matched_to_batches_by_instances_script_name_and_time() -> None:
    # 900.0 is 1970-01-01T00:15:00Z; newest first, as DescribeInvocations answers
    ecs = Ecs([invocation("t-other-script", ["i-c"], "1970-01-01T00:16:00Z", b"rm -rf"),
               invocation("t-other-name", ["i-c"], "1970-01-01T00:16:00Z", name="x"),
               invocation("t-two-batches", ["i-a", "i-c"], "1970-01-01T00:16:00Z"),
               invocation("t-c", ["i-c"], "1970-01-01T00:15:30Z"),
               invocation("t-theirs", ["i-a"], "1970-01-01T00:15:05Z"),
               invocation("t-a", ["i-a"], "1970-01-01T00:15:10Z"),  # i-b left out (Skip)
               invocation("t-old", ["i-a", "i-b"], "1970-01-01T00:10:00Z")])
    rec = record(Batch(("i-a", "i-b")), Batch(("i-c",)))
    work = _Pass(Clients(Records([])), ecs, rec, 2000.0, None)  # type: ignore[arg-type]
    found = find_invocations(work, [0, 1])
    assert {n: i["InvokeId"] for n, i in found.items()} == {0: "t-a", 1: "t-c"}
    # asked per batch, by one of its instances (a busy command name would bury them)
    assert ecs.asked == [{"instance_id": "i-a", "command_id": "", "limit": 200},
                         {"instance_id": "i-c", "command_id": "", "limit": 200}]


def test_a_command_made_for_the_request_is_asked_for_by_its_id_once() -> None:
    ecs = Ecs([])
    rec = record(Batch(("i-a",)), Batch(("i-c",)), command_id="c-9")
    find_invocations(_Pass(Clients(Listing([])), ecs, rec, 2000.0, None),  # type: ignore[arg-type]
                     [0, 1])
    assert ecs.asked == [{"command_id": "c-9", "limit": 200}]
