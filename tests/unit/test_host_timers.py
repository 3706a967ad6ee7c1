"""Timer and HTTP triggers of the function host, on tests/fixtures/host/timers.yml."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from local.host.http_trigger import HttpTrigger
from local.host.template import TemplateError
from local.host.timer_trigger import (
    TimerSchedule,
    TimerTrigger,
    build_timer_event,
    parse_duration,
)
from tests.fixtures.host.harness import HostHarness


@pytest.fixture(scope="module")
def timers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostHarness]:
    harness = HostHarness(tmp_path_factory.mktemp("timers"), "timers.yml")
    with harness:
        harness.started = time.time()  # type: ignore[attr-defined]
        yield harness
    assert harness.leftover_threads == []  # stop() ended every thread the host started


def _request(url: str, method: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# --- schedules (no host) ----------------------------------------------------------------------
def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def test_six_field_cron_reads_seconds_first_in_utc() -> None:
    daily = TimerSchedule.parse("0 0 4 * * *")
    assert _iso(daily.next_after(_utc("2026-01-01T03:59:59"))) == "2026-01-01T04:00:00"
    assert _iso(daily.next_after(_utc("2026-01-01T04:00:00"))) == "2026-01-02T04:00:00"
    every_2s = TimerSchedule.parse("*/2 * * * * *")
    assert _iso(every_2s.next_after(_utc("2026-01-01T00:00:00"))) == "2026-01-01T00:00:02"
    # day-of-week 1-7 = MON-SUN and '?' as FC documents them
    monday = TimerSchedule.parse("0 30 9 ? * MON")
    assert _iso(monday.next_after(_utc("2026-01-01T00:00:00"))) == "2026-01-05T09:30:00"
    assert TimerSchedule.parse("0 30 9 ? * 1").next_after(_utc("2026-01-01T00:00:00")) == \
        monday.next_after(_utc("2026-01-01T00:00:00"))


def test_cron_tz_prefix_shifts_the_schedule() -> None:
    beijing = TimerSchedule.parse("CRON_TZ=Asia/Shanghai 0 0 4 * * *")
    assert _iso(beijing.next_after(_utc("2026-01-01T00:00:00"))) == "2026-01-01T20:00:00"


def test_every_counts_from_its_anchor_and_never_replays_the_past() -> None:
    schedule = TimerSchedule.parse("@every 4m", anchor=1000.0)
    assert schedule.next_after(1000.0) == 1240.0
    assert schedule.next_after(1239.9) == 1240.0
    assert schedule.next_after(1240.0) == 1480.0
    # A host that was down for an hour resumes at the next tick after now.
    assert schedule.next_after(1000.0 + 3600 + 1) == 1000.0 + 16 * 240
    assert parse_duration("1h30m") == 5400 and parse_duration("2s") == 2
    assert parse_duration("1.5s") == 1.5 and parse_duration("250ms") == 0.25


@pytest.mark.parametrize("bad", ["0 4 * * *", "0 0 0 4 * * * *", "61 * * * * *", "@every",
                                 "@every 5", "@every -1s", "@every 2x", "CRON_TZ=Mars/Base 0 * * * * *"])
def test_bad_schedules_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError):
        TimerSchedule.parse(bad)


def test_timer_event_is_fcs_shape_with_a_string_payload() -> None:
    event = build_timer_event("nightly", _utc("2026-11-26T04:00:00.730"), '{"a": 1}')
    assert event == {"triggerTime": "2026-11-26T04:00:00Z", "triggerName": "nightly",
                     "payload": '{"a": 1}'}


def test_a_bad_timer_config_fails_the_host_start_naming_the_trigger(tmp_path: Path) -> None:
    harness = HostHarness(tmp_path, "timers.yml", {"TickSchedule": "0 4 * * *"})
    with pytest.raises(TemplateError, match="trigger tick"):
        harness.__enter__()
    assert harness.leftover_threads == []


# --- timers on a running host -------------------------------------------------------------------
def test_every_2s_fires_at_least_twice_in_5s_with_the_timer_event(timers: HostHarness) -> None:
    elapsed = time.time() - timers.started  # type: ignore[attr-defined]
    time.sleep(max(0.0, 5.0 - elapsed))
    fired = [json.loads(r["event"]) for r in timers.recorded("tick")]
    assert len(fired) >= 2
    for event in fired:
        assert set(event) == {"triggerTime", "triggerName", "payload"}
        assert event["triggerName"] == "tick"
        assert isinstance(event["payload"], str)
        assert json.loads(event["payload"])["InstanceIds"] == ["i-local00000000000001"]
        assert time.strptime(event["triggerTime"], "%Y-%m-%dT%H:%M:%SZ")
    # scheduled exactly 2 s apart, and run about then (not bunched, not late)
    scheduled = sorted(_utc(e["triggerTime"][:-1]) for e in fired)
    assert all(b - a == 2 for a, b in itertools.pairwise(scheduled))
    ran = sorted(r["at"] for r in timers.recorded("tick"))
    assert all(1.0 < b - a < 3.0 for a, b in itertools.pairwise(ran))


def test_a_disabled_timer_never_fires(timers: HostHarness) -> None:
    elapsed = time.time() - timers.started  # type: ignore[attr-defined]
    time.sleep(max(0.0, 3.0 - elapsed))
    assert timers.recorded("never") == []
    assert timers.host is not None
    assert timers.host.trigger("never", TimerTrigger).fired == []


def test_a_slow_function_does_not_delay_the_next_tick(timers: HostHarness) -> None:
    # slow-tick fires every second and each run sleeps 2.5 s: the runs overlap.
    elapsed = time.time() - timers.started  # type: ignore[attr-defined]
    time.sleep(max(0.0, 4.5 - elapsed))
    runs = timers.wait_recorded("slow-tick", 3)
    starts = sorted(r["at"] for r in runs)
    # Ticks 1 s apart on a 2.5 s function: run one after the other, the third would start
    # 5 s after the first; fired asynchronously it starts ~2 s after.
    assert starts[2] - starts[0] < 4.0
    assert len({r["pid"] for r in runs}) >= 2  # on separate instances, as FC would scale


# --- HTTP triggers ------------------------------------------------------------------------------
def test_a_post_only_trigger_answers_get_with_405(timers: HostHarness) -> None:
    assert timers.host is not None
    url = timers.host.trigger("post-only", HttpTrigger).url
    status, headers, body = _request(url, "GET")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert json.loads(body)["ErrorCode"] == "MethodNotAllowed"
    assert headers["x-fc-request-id"]


def test_http_event_and_response_mapping(timers: HostHarness) -> None:
    assert timers.host is not None
    url = timers.host.trigger("post-only", HttpTrigger).url + "hooks/a%20b?x=1&x=2&y=3"
    status, headers, body = _request(url, "POST", b'{"hello": "world"}',
                                     {"Content-Type": "application/json", "X-Multi": "v1"})
    assert status == 201  # the handler's statusCode
    assert headers["X-Echo"] == "yes"
    event: dict[str, Any] = json.loads(body)  # the handler answers with the event it got
    assert event["version"] == "v1"
    assert event["rawPath"] == "/hooks/a%20b"
    assert event["requestContext"]["http"]["path"] == "/hooks/a b"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["body"] == '{"hello": "world"}' and event["isBase64Encoded"] is False
    assert event["queryParameters"] == {"x": "1,2", "y": "3"}
    assert event["headers"]["X-Multi"] == "v1"
    assert event["requestContext"]["requestId"] == headers["x-fc-request-id"]
    assert event["requestContext"]["domainName"].endswith(".cn-hangzhou.fcapp.run")


def test_binary_bodies_arrive_base64_encoded(timers: HostHarness) -> None:
    assert timers.host is not None
    url = timers.host.trigger("post-only", HttpTrigger).url
    status, _, body = _request(url, "POST", b"\xff\x00\xfe")
    assert status == 201
    event = json.loads(body)
    assert event["isBase64Encoded"] is True and event["body"] == "/wD+"


def test_auth_type_function_needs_an_authorization_header(timers: HostHarness) -> None:
    assert timers.host is not None
    url = timers.host.trigger("signed", HttpTrigger).url
    status, _, body = _request(url, "GET")
    assert status == 401 and json.loads(body)["ErrorCode"] == "MissingRequiredHeader"
    status, _, _ = _request(url, "GET", headers={"Authorization": "FC whatever"})
    assert status == 201


def test_async_http_invocation_answers_202_and_runs_later(timers: HostHarness) -> None:
    assert timers.host is not None
    url = timers.host.trigger("post-only", HttpTrigger).url
    before = len(timers.recorded("http"))
    status, headers, body = _request(url, "POST", b"{}", {"X-Fc-Invocation-Type": "Async"})
    assert status == 202 and body == b""
    runs = timers.wait_recorded("http", before + 1)
    assert headers["x-fc-request-id"] in {r["request_id"] for r in runs}
