"""Profiles (local/profile.py, local/profiles/*.yml) and the emulators' pacing (profile_hooks.py).

Pure tests: loading, validation, the realistic file's documented numbers, seeded sampling, and
the per-account, per-action rate windows on a clock the test moves. The same hooks through the
official SDK against the emulators are in tests/functional/test_realistic.py.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from local.emulators.base import Call
from local.emulators.ecs.operations import OPERATIONS as ECS_OPERATIONS
from local.emulators.profile_hooks import CallPacing
from local.profile import PROFILES_DIR, Distribution, Profile, ProfileError

REALISTIC = PROFILES_DIR / "realistic.yml"


def _call(action: str, key: str | None = "AK1") -> Call:
    return Call(Request(EnvironBuilder().get_environ()), "R", action=action, access_key_id=key)


def _draws(profile: Profile, distribution: Distribution, n: int = 4000) -> list[float]:
    sampler = profile.sampler(distribution, "test")
    return sorted(sampler() for _ in range(n))


# --- choosing a profile -------------------------------------------------------------------------
def test_fast_is_the_default_and_changes_nothing() -> None:
    fast = Profile.from_env({})
    assert fast.name == "fast"
    assert fast.latency == {} and fast.throttling == {}
    assert fast.cold_start.zero and fast.eventbridge_delivery.zero
    pacing = CallPacing(fast, "ecs")
    assert pacing.latency("DescribeInstances") == 0.0
    assert all(pacing.over_limit(_call("InvokeCommand"), 0.0) is None for _ in range(5000))


def test_the_environment_picks_the_profile_and_its_seed() -> None:
    chosen = Profile.from_env({"ASSISTFLOW_PROFILE": "realistic", "ASSISTFLOW_PROFILE_SEED": "7"})
    assert (chosen.name, chosen.seed) == ("realistic", 7)
    assert Profile.available() == ["fast", "realistic"]
    assert Profile.resolve("realistic").name == "realistic"
    assert Profile.resolve(chosen) is chosen


@pytest.mark.parametrize(("environ", "says"), [
    ({"ASSISTFLOW_PROFILE": "turbo"}, "no profile 'turbo'; there are: fast, realistic"),
    ({"ASSISTFLOW_PROFILE": "/nowhere/p.yml"}, "does not exist"),
    ({"ASSISTFLOW_PROFILE_SEED": "abc"}, "ASSISTFLOW_PROFILE_SEED must be an integer"),
])
def test_a_profile_that_cannot_be_loaded_says_why(environ: dict[str, str], says: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(says)):
        Profile.from_env(environ)


@pytest.mark.parametrize(("text", "says"), [
    ("latency: {ecs: {defualt: 0.1}}", "unknown key(s) ['defualt']"),
    ("latency: {ecs: {default: {median: -1}}}", "latency.ecs.default.median"),
    ("latency: {ecs: {default: {median: 0.1, min: 0.5, max: 0.2}}}", "max 0.2 is below min 0.5"),
    ("latency: {ecs: {default: {median: 0.1, tail: {share: 2}}}}", "tail.share: expected 0..1"),
    ("throttling: {ecs: {limits: {A: 1}}}", "error"),
    ("throttling: {ecs: {error: {code: X}, limits: {A: -1}}}", "limits.A"),
    ("throttling: {ecs: {error: {code: X}, window_seconds: 0}}", "window_seconds must be > 0"),
    ("eventbridge: {delay: 1}", "unknown key(s) ['delay']"),
    ("colour: blue", "unknown key(s) ['colour']"),
    ("- a list", "expected a mapping"),
])
def test_a_malformed_profile_names_the_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=re.escape(says)):
        Profile.load(path)


def test_a_profile_can_extend_another_and_override_part_of_it(tmp_path: Path) -> None:
    path = tmp_path / "raised-quota.yml"
    path.write_text("extends: realistic\nname: raised-quota\n"
                    "throttling: {ecs: {limits: {InvokeCommand: 3000}}}\n"
                    "latency: {oss: {default: 0.05}}\n")
    custom = Profile.load(path)
    realistic = Profile.load("realistic")
    assert custom.name == "raised-quota"
    assert custom.throttling["ecs"].limit_for("InvokeCommand") == 3000
    assert custom.throttling["ecs"].limit_for("CreateCommand") == 1000  # inherited
    assert custom.throttling["ecs"].error_code == realistic.throttling["ecs"].error_code
    assert custom.latency["oss"].default == Distribution(median=0.05)
    assert custom.latency["ecs"] == realistic.latency["ecs"]
    loop = tmp_path / "loop.yml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(ProfileError, match="loops back"):
        Profile.load(loop)


# --- the realistic file: its numbers, and a source beside each -----------------------------------
def test_realistic_ecs_calls_take_about_120_ms_with_a_long_tail() -> None:
    profile = Profile.load("realistic", seed=1)
    draws = _draws(profile, profile.latency["ecs"].for_action("DescribeInstances"))
    median, p99 = statistics.median(draws), draws[int(len(draws) * 0.99)]
    assert 0.11 <= median <= 0.13
    assert p99 > 3 * median  # the long tail
    assert draws[-1] <= 3.0  # but never past the cap


@pytest.mark.parametrize("service", ["mns", "oss"])
def test_realistic_mns_and_oss_answer_in_5_to_15_ms(service: str) -> None:
    profile = Profile.load("realistic", seed=2)
    draws = _draws(profile, profile.latency[service].default)
    assert 0.005 <= statistics.median(draws) <= 0.015
    assert draws[int(len(draws) * 0.9)] <= 0.02


def test_realistic_platform_times() -> None:
    profile = Profile.load("realistic", seed=3)
    delivery = statistics.median(_draws(profile, profile.eventbridge_delivery))
    cold = statistics.median(_draws(profile, profile.cold_start))
    assert 0.2 <= delivery <= 0.5  # "a few hundred ms"
    assert cold >= 0.1


def test_realistic_throttles_every_ecs_action_with_the_documented_rule() -> None:
    limits = Profile.load("realistic").throttling["ecs"]
    assert limits.window_seconds == 60  # per minute: throttled in minute T, again in T+1
    assert (limits.error_code, limits.error_status, limits.error_message) == (
        "Throttling.User", 400, "Request was denied due to user flow control.")
    assert limits.limit_for("CreateCommand") == 1000  # the documented row
    assert all(limits.limit_for(action) for action in ECS_OPERATIONS)  # every API is limited


def _sections(text: str) -> list[list[str]]:
    """The file cut before each key of depth 0 or 1, with the comments just above it."""
    lines = text.splitlines()
    starts = []
    for i, line in enumerate(lines):
        if re.match(r"^ {0,2}[a-z_]+:\s*$", line):
            while i > 0 and lines[i - 1].lstrip().startswith("#"):
                i -= 1
            starts.append(i)
    return [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


def test_every_section_of_the_realistic_file_gives_its_source_or_reasoning() -> None:
    with_numbers = [s for s in _sections(REALISTIC.read_text())
                    if any(re.search(r"^\s*[a-zA-Z_]+:\s*[\d{]", line) for line in s)]
    assert len(with_numbers) >= 6  # ecs, mns, oss latency; ecs throttling; cold start; delivery
    for section in with_numbers:
        assert any(re.search(r"ASSUMPTION|https://", line) for line in section), section


# --- sampling -----------------------------------------------------------------------------------
def test_a_seed_makes_every_stream_repeat() -> None:
    dist = Profile.load("realistic").latency["ecs"].default
    one, two = Profile.load("realistic", seed=5), Profile.load("realistic", seed=5)
    assert [one.sampler(dist, "s")() for _ in range(20)] == \
        [two.sampler(dist, "s")() for _ in range(20)]
    assert one.sampler(dist, "s")() != one.sampler(dist, "other")()


def test_a_plain_number_is_a_fixed_duration_and_limits_clamp() -> None:
    profile = Profile.parse({"latency": {"ecs": {"default": 0.25, "actions": {
        "RunCommand": {"median": 10, "sigma": 1, "max": 0.5, "min": 0.4}}}}})
    pacing = CallPacing(profile, "ecs")
    assert pacing.latency("DescribeInstances") == 0.25
    assert all(0.4 <= pacing.latency("RunCommand") <= 0.5 for _ in range(200))


def test_delay_sleeps_for_the_drawn_latency() -> None:
    slept: list[float] = []
    profile = Profile.parse({"latency": {"mns": {"default": 0.012}}})
    CallPacing(profile, "mns", sleep=slept.append).delay(_call("SendMessage"))
    CallPacing(profile, "oss", sleep=slept.append).delay(_call("PutObject"))  # not in profile
    assert slept == [0.012]


# --- rate windows -------------------------------------------------------------------------------
def _limited(limit: int, accounts: dict[str, str] | None = None, **extra: Any) -> CallPacing:
    profile = Profile.parse({"throttling": {"ecs": {
        "window_seconds": 60, "limits": {"DescribeInvocations": limit}, **extra,
        "error": {"code": "Throttling.User", "status": 400,
                  "message": "Request was denied due to user flow control."}}}})
    return CallPacing(profile, "ecs",
                      account_of=lambda key: (accounts or {}).get(key or "", "acct"))


def test_calls_over_the_limit_of_a_minute_are_refused_until_the_next_minute() -> None:
    pacing = _limited(3)
    minute = 60 * 16_667 + 20.0  # 20 s into a minute
    results = [pacing.over_limit(_call("DescribeInvocations"), minute + i) for i in range(5)]
    assert results[:3] == [None, None, None]
    refusal = results[3]
    assert refusal is not None and refusal.code == "Throttling.User" and refusal.status == 400
    assert pacing.over_limit(_call("DescribeInvocations"), minute + 39.9) is not None
    assert pacing.over_limit(_call("DescribeInvocations"), minute + 40.0) is None  # minute T+1


def test_each_action_and_each_account_has_its_own_count() -> None:
    pacing = _limited(2, accounts={"AK-A1": "A", "AK-A2": "A", "AK-B": "B"})
    now = 600.0
    assert [pacing.over_limit(_call("DescribeInvocations", "AK-A1"), now) for _ in range(2)] \
        == [None, None]
    # a second key of the same account shares the account's count ...
    assert pacing.over_limit(_call("DescribeInvocations", "AK-A2"), now) is not None
    # ... another account does not, and neither does another action (no limit listed here)
    assert pacing.over_limit(_call("DescribeInvocations", "AK-B"), now) is None
    assert all(pacing.over_limit(_call("InvokeCommand", "AK-A1"), now) is None
               for _ in range(10))


def test_unlisted_actions_take_the_default_limit_and_reset_forgets() -> None:
    pacing = _limited(5, default_limit=1)
    assert pacing.over_limit(_call("DeleteCommand"), 0.0) is None
    assert pacing.over_limit(_call("DeleteCommand"), 1.0) is not None
    pacing.reset()
    assert pacing.over_limit(_call("DeleteCommand"), 2.0) is None
