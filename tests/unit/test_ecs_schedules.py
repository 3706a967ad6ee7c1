"""Scheduled invocations (rate, at, cron, reboots) driven by the clock, and StopInvocation."""

from __future__ import annotations

import calendar
import itertools
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest
from aliyunsdkecs.request.v20140526.RunCommandRequest import RunCommandRequest
from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

from local.emulators.ecs.errors import InvalidParamFrequency
from local.emulators.ecs.frequency import parse_frequency
from tests.unit.processes import host_pids, sleep_marker
from tests.unit.test_ecs_emulator import SIM_IDS, Ecs, alive, b64, make, start_ecs


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path) as driver:
        yield driver


def _utc(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def _history(ecs: Ecs, invoke_id: str) -> list[tuple[str, int]]:
    return [(r["InvocationStatus"], r["Repeats"])
            for r in ecs.results(invoke_id, IncludeHistory=True)]


# --- periodic runs on the emulator clock --------------------------------------------------

def test_rate_one_minute_gives_one_result_per_period_in_the_history(ecs: Ecs) -> None:
    invoke_id = ecs.run("echo tick", ["i-sim00001"], Frequency="rate(1m)", Timeout=30)["InvokeId"]
    assert _history(ecs, invoke_id) == [("Scheduled", 0)]  # nothing runs at creation
    for _ in range(3):
        ecs.advance(60)
    ecs.advance(5)
    assert _history(ecs, invoke_id) == [("Success", 1), ("Success", 2), ("Success", 3)]
    [current] = ecs.results(invoke_id)
    assert (current["InvocationStatus"], current["Repeats"]) == ("Scheduled", 3)
    assert ecs.invocation(invoke_id)["RepeatMode"] == "Period"


def test_runs_start_at_their_due_times_even_when_the_clock_jumps(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00001"], Frequency="rate(2m)", Timeout=30)["InvokeId"]
    ecs.advance(3 * 120 + 5)
    starts = [_utc(r["StartTime"].replace("T", " ").rstrip("Z"))
              for r in ecs.results(invoke_id, IncludeHistory=True)]
    assert [b - a for a, b in itertools.pairwise(starts)] == [120, 120]


def test_the_seed_cron_every_20_minutes_runs_three_times_an_hour(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00002"], Frequency="0 */20 * * * *")["InvokeId"]
    ecs.advance(3600)
    ecs.advance(5)
    assert [s for s, _ in _history(ecs, invoke_id)] == ["Success"] * 3


def test_at_runs_once_at_the_given_time_in_its_time_zone(ecs: Ecs) -> None:
    when = datetime.fromtimestamp(ecs.app.clock.now() + 8 * 3600 + 600, timezone.utc)
    frequency = f"at({when:%Y-%m-%d %H:%M:%S} GMT+8:00)"  # 10 minutes from now, in UTC+8
    invoke_id = ecs.run("true", ["i-sim00003"], Frequency=frequency)["InvokeId"]
    ecs.advance(590)
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Scheduled"
    ecs.advance(15)
    assert _history(ecs, invoke_id) == [("Success", 1)]
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Success"  # the schedule is over


@pytest.mark.parametrize("frequency", ["rate(30s)", "rate(8d)", "rate(1m)", "at(2001-01-01 00:00:00)",
                                       "* * * * * *", "0 0 12 1 * MON", "0 0 0 * * ? 2024 GMT+08:00",
                                       "every minute"])
def test_a_bad_frequency_is_invalid(ecs: Ecs, frequency: str) -> None:
    # rate(1m) fails because the default Timeout (60 s) is not shorter than the interval
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], Frequency=frequency))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidParam.Frequency", 400)


def test_period_without_a_frequency_is_missing_it(ecs: Ecs) -> None:
    err = ecs.fails(make(RunCommandRequest, Type="RunShellScript", CommandContent="true",
                         InstanceIds=["i-sim00001"], RepeatMode="Period"))
    assert (err.get_error_code(), err.get_http_status()) == ("MissingParam.Frequency", 400)


def test_the_deprecated_timed_flag_has_no_effect(ecs: Ecs) -> None:
    command_id = ecs.create(b64("true"))
    invoke_id = ecs.call(make(InvokeCommandRequest, CommandId=command_id, InstanceIds=["i-sim00001"],
                              Timed=True, Frequency=""))["InvokeId"]
    assert ecs.invocation(invoke_id)["RepeatMode"] == "Once"


def test_next_reboot_only_runs_on_the_next_reboot_only(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00004"], RepeatMode="NextRebootOnly")["InvokeId"]
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Scheduled"
    for _ in range(2):
        ecs.control("POST", "reboot", {"InstanceIds": ["i-sim00004"]})
        ecs.advance(5)
    assert _history(ecs, invoke_id) == [("Success", 1)]


def test_every_reboot_runs_on_each_reboot(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00005"], RepeatMode="EveryReboot")["InvokeId"]
    for _ in range(2):
        ecs.control("POST", "reboot", {"InstanceIds": ["i-sim00005"]})
        ecs.advance(5)
    assert _history(ecs, invoke_id) == [("Success", 1), ("Success", 2)]
    assert ecs.results(invoke_id)[0]["InvocationStatus"] == "Scheduled"


# --- StopInvocation -----------------------------------------------------------------------

def test_stopping_a_running_process_terminates_it_with_its_children(ecs: Ecs) -> None:
    marker = sleep_marker()
    invoke_id = ecs.run(f"sleep {marker} & wait", ["i-proc1"])["InvokeId"]
    _wait_for(lambda: host_pids(marker))
    [child] = host_pids(marker)
    ecs.call(make(StopInvocationRequest, InvokeId=invoke_id))
    record = ecs.wait_done(invoke_id)["i-proc1"]
    assert record["InvocationStatus"] == "Terminated" and record["StopTime"]
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Stopped"
    _wait_for(lambda: not alive(child), timeout=2)


def test_termination_mode_process_kills_only_the_script_process(ecs: Ecs) -> None:
    marker = sleep_marker()
    invoke_id = ecs.run(f"sleep {marker} & wait", ["i-proc1"],
                        TerminationMode="Process")["InvokeId"]
    _wait_for(lambda: host_pids(marker))
    [child] = host_pids(marker)
    ecs.call(make(StopInvocationRequest, InvokeId=invoke_id))
    assert ecs.wait_done(invoke_id)["i-proc1"]["InvocationStatus"] == "Terminated"
    try:
        time.sleep(0.1)
        assert alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_stopping_a_run_still_waiting_for_the_agent_cancels_it(tmp_path: Path) -> None:
    with start_ecs(tmp_path, agent_workers=1) as ecs:  # one run at a time: the second waits
        busy = ecs.run("sleep 30", ["i-proc1"])["InvokeId"]
        waiting = ecs.run("echo never", ["i-proc2"])["InvokeId"]
        _wait_for(lambda: ecs.by_instance(busy)["i-proc1"]["InvocationStatus"] == "Running")
        assert ecs.by_instance(waiting)["i-proc2"]["InvocationStatus"] == "Pending"
        ecs.call(make(StopInvocationRequest, InvokeId=waiting))
        ecs.call(make(StopInvocationRequest, InvokeId=busy))
        assert ecs.wait_done(busy)["i-proc1"]["InvocationStatus"] == "Terminated"
        time.sleep(0.2)  # the freed worker must not run the cancelled one
        record = ecs.by_instance(waiting)["i-proc2"]
        assert (record["InvocationStatus"], record["Output"]) == ("Cancelled", "")


def test_stopping_a_scheduled_task_cancels_its_future_runs(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00001", "i-sim00002"], Frequency="rate(1m)",
                        Timeout=30)["InvokeId"]
    ecs.advance(65)
    ecs.call(make(StopInvocationRequest, InvokeId=invoke_id, InstanceIds=["i-sim00001"]))
    ecs.advance(120)
    records = ecs.by_instance(invoke_id)
    assert (records["i-sim00001"]["InvocationStatus"], records["i-sim00001"]["Repeats"]) == \
        ("Cancelled", 1)
    assert records["i-sim00002"]["Repeats"] == 3


def test_stopping_a_running_simulated_run_terminates_it(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-slow", "i-sim00001"], Timeout=3600)["InvokeId"]
    ecs.advance(5)
    ecs.call(make(StopInvocationRequest, InvokeId=invoke_id))
    ecs.advance(1000)
    records = ecs.by_instance(invoke_id)
    assert records["i-slow"]["InvocationStatus"] == "Terminated"
    assert records["i-sim00001"]["InvocationStatus"] == "Success"  # finished before the stop
    # documented: stopped instances beside successful ones leave the invocation Success
    assert ecs.invocation(invoke_id)["InvocationStatus"] == "Success"


def test_stop_invocation_takes_at_most_50_instances(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", SIM_IDS[:60])["InvokeId"]
    err = ecs.fails(make(StopInvocationRequest, InvokeId=invoke_id, InstanceIds=SIM_IDS[:51]))
    assert (err.get_error_code(), err.get_http_status()) == ("InstanceIds.ExceedLimit", 403)


def test_stop_invocation_of_an_instance_outside_the_invocation_is_not_found(ecs: Ecs) -> None:
    invoke_id = ecs.run("true", ["i-sim00001"])["InvokeId"]
    err = ecs.fails(make(StopInvocationRequest, InvokeId=invoke_id, InstanceIds=["i-sim00009"]))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidInstanceId.NotFound", 404)


def test_stop_invocation_of_an_unknown_invoke_id_is_not_found(ecs: Ecs) -> None:
    err = ecs.fails(make(StopInvocationRequest, InvokeId="t-missing"))
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidInvokeId.NotFound", 404)


# --- Frequency expressions ----------------------------------------------------------------

NOW = _utc("2026-11-29 10:00:00")  # a Sunday


@pytest.mark.parametrize(("frequency", "first"), [
    ("rate(5m)", "2026-11-29 10:05:00"),
    ("0 0 12 ? * 1", "2026-11-30 12:00:00"),  # 1 is Monday for Cloud Assistant
    ("0 0 12 ? * MON-FRI UTC", "2026-11-30 12:00:00"),
    ("0 15 10 L * ?", "2026-11-30 10:15:00"),
    ("0 15 10 ? * 6L", "2026-12-26 10:15:00"),  # last Saturday of December
    ("0 15 10 ? * 6#3", "2026-12-19 10:15:00"),  # third Saturday
    ("0 0 9 5W * ?", "2026-12-04 09:00:00"),  # the 5th is a Saturday: the Friday before
    ("0 0 12 * * ? 2026 Asia/Shanghai", "2026-11-30 04:00:00"),
    ("0 30 8 * * ? * GMT-7:00", "2026-11-29 15:30:00"),
    ("0 0 0 1 1 ? 2022/3", "2028-01-01 00:00:00"),  # every third year from 2022
    ("at(2026-12-01 08:00:00 GMT+8:00)", "2026-12-01 00:00:00"),
])
def test_frequency_first_run(frequency: str, first: str) -> None:
    assert parse_frequency(frequency, NOW, 60).next_after(NOW) == _utc(first)


def test_a_cron_with_a_year_in_the_past_is_invalid() -> None:
    with pytest.raises(InvalidParamFrequency, match="Frequency"):
        parse_frequency("0 0 12 * * ? 2020", NOW, 60)


def _wait_for(probe: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not callable(probe) or not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)
