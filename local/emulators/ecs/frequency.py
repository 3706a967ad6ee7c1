"""``Frequency`` of scheduled invocations: ``rate()``, ``at()`` and Cloud Assistant cron.

Sources: the ``Frequency`` parameter of InvokeCommand
(https://help.aliyun.com/zh/ecs/developer-reference/api-ecs-2014-05-26-invokecommand, and its
docstring in ``alibabacloud-ecs20140526`` 7.11.8) and Cloud Assistant's cron reference
(https://www.alibabacloud.com/help/en/ecs/user-guide/cron-expressions).

``rate(<n><s|m|h|d>)`` runs every interval (60 s … 7 days, longer than the Timeout), first one
interval after creation; ``at(yyyy-MM-dd HH:mm:ss [tz])`` runs once (UTC by default); cron is
``<sec> <min> <hour> <dom> <month> <dow> [<year>] [<tz>]`` where day-of-week 1–7 means
**Monday–Sunday** (unlike Quartz) and ``? L W #`` are supported. Time zones: IANA names,
``GMT+8:00`` (no leading zero on the hour) or ``UTC``.

Every recurrence answers one question: the first run time strictly after a given instant.
"""

from __future__ import annotations

import calendar
import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from local.emulators.ecs.errors import InvalidParamFrequency

MIN_RATE = 60
MAX_RATE = 7 * 86400
MIN_CRON_INTERVAL = 10
MAX_YEAR = 2099
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {d: i + 1 for i, d in enumerate(("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"))}


class Recurrence(Protocol):
    """When an invocation runs next by the clock: a rate, an at() time or a cron expression."""

    def next_after(self, ts: float) -> float | None:
        """The first run time strictly after ``ts`` (epoch seconds), None when none is left."""


def parse_timezone(text: str) -> tzinfo:
    if text == "UTC":
        return timezone.utc
    gmt = re.fullmatch(r"GMT([+-])([1-9]|1[0-4]|0):([0-5][0-9])", text)
    if gmt:
        sign = 1 if gmt.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(gmt.group(2)), minutes=int(gmt.group(3))))
    if "/" in text:
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise InvalidParamFrequency(
        detail=f"unknown time zone {text!r} (use an IANA name, GMT+8:00 or UTC)")


class Never:
    """No run by the clock: reboot-triggered invocations."""

    def next_after(self, ts: float) -> float | None:
        return None


@dataclass(frozen=True)
class Rate:
    interval: int
    anchor: float  # creation time: runs come at anchor + k * interval, k >= 1

    def next_after(self, ts: float) -> float | None:
        k = max(1, int((ts - self.anchor) // self.interval) + 1)
        return self.anchor + k * self.interval


@dataclass(frozen=True)
class At:
    when: float

    def next_after(self, ts: float) -> float | None:
        return self.when if self.when > ts else None


def _number(token: str, names: dict[str, int], lo: int, hi: int) -> int:
    token = token.upper()
    if token in names:
        return names[token]
    if not token.isdigit() or (len(token) > 2 and token.startswith("00")):
        raise InvalidParamFrequency(detail=f"{token!r} is not a value")  # at most one leading zero
    value = int(token)
    if not lo <= value <= hi:
        raise InvalidParamFrequency(detail=f"{value} is outside {lo}-{hi}")
    return value


def _values(field: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int]:
    names = names or {}
    out: set[int] = set()
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = _number(step_text, {}, 1, hi) if step_text else 1
        if body in ("*", "?"):
            start, end = lo, hi
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = _number(a, names, lo, hi), _number(b, names, lo, hi)
        else:
            start = _number(body, names, lo, hi)
            end = hi if step_text else start
        if start > end:
            raise InvalidParamFrequency(detail=f"range {body!r} runs backwards")
        out.update(range(start, end + 1, step))
    return out


@dataclass(frozen=True)
class Cron:
    """A parsed Cloud Assistant cron expression in one time zone."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    dom: str  # the raw day fields: their L / W / # forms depend on the month
    dow: str
    tz: tzinfo

    @classmethod
    def parse(cls, text: str, default_tz: tzinfo, this_year: int) -> Cron:
        tokens = text.split()
        tz = default_tz
        if len(tokens) >= 7 and re.search(r"[A-Za-z]", tokens[-1]):
            tz = parse_timezone(tokens.pop())
        if len(tokens) not in (6, 7):
            raise InvalidParamFrequency(
                detail="a cron expression has 6 or 7 fields plus an optional time zone")
        sec, minute, hour, dom, month, dow = tokens[:6]
        year = tokens[6] if len(tokens) == 7 else "*"
        if dom not in ("*", "?") and dow not in ("*", "?"):
            raise InvalidParamFrequency(detail="give day-of-month or day-of-week, and '?' for the other")
        cron = cls(frozenset(_values(sec, 0, 59)), frozenset(_values(minute, 0, 59)),
                   frozenset(_values(hour, 0, 23)), frozenset(_values(month, 1, 12, _MONTHS)),
                   frozenset(y for y in _values(year, 1970, MAX_YEAR) if y >= this_year),
                   dom.upper(), dow.upper(), tz)
        probe = datetime(2024, 1, 1)
        cron._day_matches(probe)  # validates the day fields once, not at every run
        return cron

    def _day_matches(self, day: datetime) -> bool:
        return self._dom_matches(day) and self._dow_matches(day)

    def _dom_matches(self, day: datetime) -> bool:
        field = self.dom
        if field in ("*", "?"):
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if field == "L":
            return day.day == last
        if field == "LW":
            target = last - max(0, datetime(day.year, day.month, last).weekday() - 4)
            return day.day == target
        if field.endswith("W"):
            wanted = min(_number(field[:-1], {}, 1, 31), last)
            wd = datetime(day.year, day.month, wanted).weekday()
            if wd == 5:  # Saturday: the Friday before, unless that leaves the month
                wanted = wanted - 1 if wanted > 1 else wanted + 2
            elif wd == 6:
                wanted = wanted + 1 if wanted < last else wanted - 2
            return day.day == wanted
        return day.day in _values(field, 1, 31)

    def _dow_matches(self, day: datetime) -> bool:
        field = self.dow
        if field in ("*", "?"):
            return True
        weekday = day.weekday() + 1  # 1 = Monday … 7 = Sunday, as Cloud Assistant counts
        if field == "L":
            return weekday == 7
        if field.endswith("L"):
            wanted = _number(field[:-1], _DAYS, 1, 7)
            return weekday == wanted and day.day + 7 > calendar.monthrange(day.year, day.month)[1]
        if "#" in field:
            d, _, nth = field.partition("#")
            return weekday == _number(d, _DAYS, 1, 7) and (day.day - 1) // 7 + 1 == int(nth)
        return weekday in _values(field, 1, 7, _DAYS)

    def next_after(self, ts: float) -> float | None:
        start = datetime.fromtimestamp(int(ts) + 1, self.tz).replace(tzinfo=None)
        day = start.replace(hour=0, minute=0, second=0)
        times = sorted((h, m, s) for h in self.hours for m in self.minutes for s in self.seconds)
        while day.year <= MAX_YEAR:
            if day.year in self.years and day.month in self.months and self._day_matches(day):
                floor = (start.hour, start.minute, start.second) if day == start.replace(
                    hour=0, minute=0, second=0) else (0, 0, 0)
                for h, m, s in times:
                    if (h, m, s) >= floor:
                        local = day.replace(hour=h, minute=m, second=s, tzinfo=self.tz)
                        return local.timestamp()
            day += timedelta(days=1)
        return None


def parse_frequency(text: str, now: float, timeout: int, default_tz: tzinfo = timezone.utc
                    ) -> Recurrence:
    """The schedule ``text`` describes for an invocation created at ``now``.

    Raises ``InvalidParam.Frequency`` for a malformed expression, an interval outside the
    documented range or not longer than ``timeout``, or an ``at()`` time already past.
    """
    text = text.strip()
    rate = re.fullmatch(r"rate\(\s*(\d+)\s*([smhd])\s*\)", text)
    if rate:
        interval = int(rate.group(1)) * _UNITS[rate.group(2)]
        if not MIN_RATE <= interval <= MAX_RATE:
            raise InvalidParamFrequency(detail="a rate() interval must be between 60 seconds and 7 days")
        if interval <= timeout:
            raise InvalidParamFrequency(detail="a rate() interval must be longer than the Timeout")
        return Rate(interval, now)
    at = re.fullmatch(r"at\(\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\s*([^)]*?)\s*\)", text)
    if at:
        tz = parse_timezone(at.group(2)) if at.group(2) else timezone.utc
        try:
            when = datetime.strptime(at.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
        except ValueError:
            raise InvalidParamFrequency(detail=f"{at.group(1)!r} is not a date and time") from None
        if when.timestamp() <= now:
            raise InvalidParamFrequency(detail="the at() time has already passed")
        return At(when.timestamp())
    if text.startswith(("rate(", "at(")):
        raise InvalidParamFrequency(detail=f"{text!r} is malformed")
    cron = Cron.parse(text, default_tz, datetime.fromtimestamp(now, timezone.utc).year)
    runs, ts = [], now
    for _ in range(4):
        nxt = cron.next_after(ts)
        if nxt is None:
            break
        runs.append(nxt)
        ts = nxt
    if not runs:
        raise InvalidParamFrequency(detail="the cron expression never fires again")
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    if gaps and min(gaps) < max(MIN_CRON_INTERVAL, timeout):
        raise InvalidParamFrequency(detail="cron runs must be at least 10 seconds and the Timeout apart")
    return cron
