"""RateControl (pure): percentages, waves, the error budget; the request's new fields."""

from __future__ import annotations

import pytest

from shared.errors import RequestInvalidError
from shared.fanout import plan_batches
from shared.ratecontrol import RateControl, exceeded, is_error, resolve, waves
from shared.request import parse_request

BASE = {"Type": "RunShellScript", "CommandContent": "echo", "InstanceIds": ["i-abcdefgh01"]}


@pytest.mark.parametrize(("value", "targets", "expected"), [
    (10, 50, 10), ("10%", 50, 5), ("10%", 15, 1), ("33%", 10, 3), ("100%", 7, 7),
    ("0%", 50, 0), ("1%", 50, 0)])
def test_a_percentage_is_of_the_targets_rounded_down(value: int | str, targets: int,
                                                    expected: int) -> None:
    assert resolve(value, targets) == expected


def test_concurrency_is_at_least_one_and_all_without_a_limit() -> None:
    assert RateControl("1%").concurrency(50) == 1
    assert RateControl().concurrency(6) == 6
    assert RateControl(2).concurrency(6) == 2


def test_max_errors_stops_on_the_one_past_the_budget() -> None:
    budget = RateControl(1, "10%").error_budget(50)
    assert budget == 5
    assert not exceeded(5, budget) and exceeded(6, budget)  # SSM: the sixth error stops it
    assert exceeded(1, 0) and not exceeded(0, 0)
    assert not exceeded(10_000, RateControl(3).error_budget(10))  # no MaxErrors: no limit


def test_what_counts_as_an_error() -> None:
    assert all(is_error(s) for s in ("Failed", "Timeout", "Error", "Invalid", "Aborted",
                                     "CollectorTimeout"))
    assert not any(is_error(s) for s in ("Success", "Cancelled", "Terminated", "Skipped",
                                         "NotStarted"))


def test_waves_of_more_than_100_are_several_batches_none_across_two_waves() -> None:
    ids = tuple(f"i-{n:010d}" for n in range(250))
    assert [len(w) for w in waves(ids, 120)] == [120, 120, 10]
    groups, wave_of = plan_batches(ids, 120)
    assert [len(g) for g in groups] == [100, 20, 100, 20, 10]
    assert wave_of == (0, 0, 1, 1, 2)
    assert sum(groups, ()) == ids


def test_the_request_reads_dry_run_and_rate_control() -> None:
    request = parse_request({**BASE, "DryRun": True,
                             "RateControl": {"MaxConcurrency": "50%", "MaxErrors": 0}})
    assert request.dry_run and request.rate_control == RateControl("50%", 0)
    assert parse_request(BASE).rate_control is None and not parse_request(BASE).dry_run


@pytest.mark.parametrize(("rate", "path"), [
    ({}, "$.RateControl"), ({"MaxConcurrency": 0}, "$.RateControl.MaxConcurrency"),
    ({"MaxConcurrency": "0%"}, "$.RateControl.MaxConcurrency"),
    ({"MaxConcurrency": "101%"}, "$.RateControl.MaxConcurrency"),
    ({"MaxConcurrency": "10"}, "$.RateControl.MaxConcurrency"),
    ({"MaxConcurrency": "10%\n"}, "$.RateControl.MaxConcurrency"),
    ({"MaxErrors": -1}, "$.RateControl.MaxErrors"), ({"MaxErrors": 1.5}, "$.RateControl.MaxErrors"),
    ({"MaxErrors": True}, "$.RateControl.MaxErrors"),
    ({"Mode": "Batch"}, "$.RateControl.Mode")])
def test_a_bad_rate_control_is_refused_naming_the_field(rate: dict[str, object],
                                                        path: str) -> None:
    with pytest.raises(RequestInvalidError) as refused:
        parse_request({**BASE, "RateControl": rate})
    assert path in {v.path for v in refused.value.violations}


def test_rate_control_needs_a_run_that_ends() -> None:
    with pytest.raises(RequestInvalidError) as refused:
        parse_request({**BASE, "RepeatMode": "Period", "Frequency": "rate(5m)",
                       "RateControl": {"MaxConcurrency": 1}})
    assert [v.path for v in refused.value.violations] == ["$.RateControl"]
    with pytest.raises(RequestInvalidError):
        parse_request({**BASE, "DryRun": "yes"})
