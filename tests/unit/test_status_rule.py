"""One table for the overall Status of an invocation: the product's and the emulator's rule.

``shared.results.overall_status`` (what ``summary.json`` says) and the ECS emulator's
``rules.overall_status`` (what the local DescribeInvocations says) are two implementations of
one documented rule; they must agree with it, and so with each other, for every pair and
triple of per-instance statuses. ``documented`` below is written from the documentation's own
words, not from either implementation, so a drift in both at once is caught too.

Sources: DescribeInvocations, response parameter ``InvocationStatus``
(https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-describeinvocations),
and the ``InvokeStatus`` docstring of ``DescribeInvocationsRequest`` in
``alibabacloud-ecs20140526`` 7.11.8 (installed by ``make test``):

* Success: "The command execution status on each instance is Stopped or Success, and the
  command execution status on at least one instance is Success";
* Failed: every instance Stopped or Failed, where Failed covers Invalid, Aborted, Failed,
  Timeout and Error;
* Stopped: every instance Stopped, which covers Cancelled and Terminated;
* PartialFailed: some instances succeeded and some failed;
* Pending / Scheduled / Running / Stopping: at least one instance is in that state.
"""

from __future__ import annotations

from itertools import combinations_with_replacement

import pytest

from local.emulators.ecs import rules as emulator
from shared import results as product

FAILED_LIKE = ("Invalid", "Aborted", "Failed", "Timeout", "Error")
STOPPED_LIKE = ("Cancelled", "Terminated")
FINAL = ("Success", *FAILED_LIKE, *STOPPED_LIKE)
IN_FLIGHT = ("Pending", "Scheduled", "Running", "Stopping")


def documented(statuses: tuple[str, ...]) -> str:
    """The documented overall status of finished per-instance statuses."""
    kinds = {"Success" if s == "Success" else "Failed" if s in FAILED_LIKE else "Stopped"
             for s in statuses}
    if kinds == {"Stopped"}:
        return "Stopped"
    if kinds <= {"Success", "Stopped"}:
        return "Success"
    if kinds <= {"Failed", "Stopped"}:
        return "Failed"
    return "PartialFailed"


CASES = [c for n in (1, 2, 3) for c in combinations_with_replacement(FINAL, n)]


def test_the_table_covers_every_pair_and_triple() -> None:
    assert len(CASES) == 8 + 36 + 120
    assert {documented(c) for c in CASES} == {"Success", "Failed", "Stopped", "PartialFailed"}


@pytest.mark.parametrize("statuses", CASES, ids="+".join)
def test_summary_and_describe_invocations_aggregate_as_documented(
        statuses: tuple[str, ...]) -> None:
    expected = documented(statuses)
    assert product.overall_status(list(statuses)) == expected
    assert emulator.overall_status(list(statuses)) == expected


def documented_legacy(statuses: tuple[str, ...]) -> str:
    """The deprecated ``InvokeStatus``: an instance that finished, with any exit code, is
    ``Finished``; one that could not run (Invalid, Aborted, Timeout, Error) ``Failed``."""
    kinds = {"Finished" if s in ("Success", "Failed") else "Stopped" if s in STOPPED_LIKE
             else "Failed" for s in statuses}
    if kinds == {"Stopped"}:
        return "Stopped"
    if kinds <= {"Finished", "Stopped"}:
        return "Finished"
    if kinds <= {"Failed", "Stopped"}:
        return "Failed"
    return "PartialFailed"


@pytest.mark.parametrize("statuses", CASES, ids="+".join)
def test_the_legacy_invoke_status_aggregates_as_documented(statuses: tuple[str, ...]) -> None:
    assert emulator.legacy_overall(list(statuses)) == documented_legacy(statuses)


@pytest.mark.parametrize("statuses", [
    ("Success", "Cancelled"), ("Success", "Terminated"), ("Terminated", "Success", "Success"),
])
def test_stopped_beside_success_is_success_not_partial_failed(statuses: tuple[str, ...]) -> None:
    """The case that drifted: the documentation counts stopped instances as neither."""
    assert product.overall_status(list(statuses)) == "Success"
    assert emulator.overall_status(list(statuses)) == "Success"
    assert emulator.legacy_overall(list(statuses)) == "Finished"


@pytest.mark.parametrize("in_flight", IN_FLIGHT)
@pytest.mark.parametrize("final", FINAL)
def test_an_instance_in_flight_decides_the_emulators_status(in_flight: str, final: str) -> None:
    assert emulator.overall_status([final, in_flight]) == in_flight


def test_collector_timeout_counts_as_failed_in_the_summary() -> None:
    assert product.overall_status(["Success", product.COLLECTOR_TIMEOUT]) == "PartialFailed"
    assert product.overall_status(["Cancelled", product.COLLECTOR_TIMEOUT]) == "Failed"
