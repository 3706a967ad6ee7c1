"""Calls side by side on a bounded pool, and retries within an invocation's patience."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from shared import parallel, retry
from shared.errors import CloudCallError
from shared.parallel import POOL_SIZE, run_all, run_each, settle


class Gauge:
    """How many calls run at once, at most."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, value: Any, seconds: float = 0.02) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)  # the test's stand-in for a call waiting on the network
        with self.lock:
            self.now -= 1
        return value


def test_results_come_back_in_order_from_at_most_the_pool_size_at_once() -> None:
    gauge = Gauge()
    assert run_each(gauge, range(40)) == list(range(40))
    assert 1 < gauge.most <= POOL_SIZE


def test_calls_made_from_a_pooled_call_run_inline_so_nesting_never_widens_the_pool() -> None:
    gauge = Gauge()
    threads: set[str] = set()

    def outer(n: int) -> list[int]:
        threads.add(threading.current_thread().name)
        return run_each(lambda m: gauge(n * 10 + m), range(5))

    assert run_each(outer, range(12)) == [[n * 10 + m for m in range(5)] for n in range(12)]
    assert gauge.most <= POOL_SIZE
    assert len(threads) <= POOL_SIZE


def test_the_first_failure_is_raised_and_calls_not_started_yet_never_start() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        with lock:
            started.append(n)
        if n == 0:
            raise CloudCallError("InvokeCommand", "InvalidInstance.NotMatch", "no")
        time.sleep(0.05)
        return n

    with pytest.raises(CloudCallError, match="NotMatch"):
        run_each(call, range(100))
    assert len(started) < 100  # the rest was cancelled


def test_settle_without_stopping_runs_every_call_and_hands_back_each_outcome() -> None:
    def call(n: int) -> int:
        if n % 3 == 0:
            raise ValueError(n)
        return n

    outcomes = settle([lambda n=n: call(n) for n in range(9)], stop_on_error=False)
    assert [o if isinstance(o, int) else "x" for o in outcomes] == \
        ["x", 1, 2, "x", 4, 5, "x", 7, 8]
    inline = settle([lambda: call(0), lambda: call(1)], workers=1, stop_on_error=False)
    assert isinstance(inline[0], ValueError) and inline[1] == 1


def test_pooled_calls_share_the_callers_patience() -> None:
    with retry.patience(0.3) as budget:
        seen = run_all([lambda: retry.current(), lambda: retry.current()])
    assert all(p is not budget and p.left == pytest.approx(budget.left, abs=0.01) for p in seen)


# --- retries -------------------------------------------------------------------------------

def flaky(errors: list[CloudCallError]) -> Any:
    """A call that fails with ``errors`` in turn, then answers "ok"; it counts its calls."""
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return "ok"

    call.calls = calls  # type: ignore[attr-defined]
    return call


def blip() -> CloudCallError:
    return CloudCallError("PutObject", "InternalError", "try again", transient=True)


def throttled() -> CloudCallError:
    return CloudCallError("RunCommand", "Throttling", "slow down", transient=True)


def test_a_blip_is_retried_within_the_patience_and_a_refusal_never() -> None:
    with retry.patience(1.0):
        call = flaky([blip(), blip()])
        assert retry.retrying(call) == "ok" and call.calls["n"] == 3
        refusal = flaky([CloudCallError("RunCommand", "InvalidInstance.NotMatch", "no")])
        with pytest.raises(CloudCallError, match="NotMatch"):
            retry.retrying(refusal)
        assert refusal.calls["n"] == 1


def test_an_attempt_that_failed_elsewhere_counts_as_the_first_of_the_retries() -> None:
    """``failed``: a write that failed on the collectors' one writing thread goes on through
    ``retrying`` as its second attempt — never a fourth, never retried when permanent."""
    with retry.patience(1.0):
        call = flaky([blip()])
        assert retry.retrying(call, failed=blip()) == "ok" and call.calls["n"] == 2
        exhausted = flaky([blip(), blip()])
        with pytest.raises(CloudCallError, match="InternalError"):
            retry.retrying(exhausted, failed=blip())
        assert exhausted.calls["n"] == 2  # 3 attempts in all
        untouched = flaky([])
        with pytest.raises(CloudCallError, match="NotMatch"):
            retry.retrying(untouched, failed=CloudCallError("PutObject", "InvalidInstance.NotMatch",
                                                            "no"))
        assert untouched.calls["n"] == 0


def test_the_collector_never_waits_on_throttling_and_no_patience_means_no_retry() -> None:
    with retry.patience(1.0, throttling=False):
        call = flaky([throttled()])
        with pytest.raises(CloudCallError, match="Throttling"):
            retry.retrying(call)
        assert call.calls["n"] == 1
    with retry.patience(0.0):
        call = flaky([blip()])
        with pytest.raises(CloudCallError):
            retry.retrying(call)
        assert call.calls["n"] == 1


def test_the_budget_bounds_the_waiting_of_all_calls_together() -> None:
    started = time.monotonic()
    with retry.patience(0.2) as budget:
        outcomes = settle([lambda: retry.retrying(flaky([throttled()] * 2))
                           for _ in range(16)], stop_on_error=False)
    waited = time.monotonic() - started
    assert waited < 1.0, waited  # throttling backoff alone could be 16 × 1.5 s
    gave_up = [o for o in outcomes if isinstance(o, CloudCallError)]
    assert budget.left < 0.05 and gave_up  # the budget ran out, and the rest failed at once
    assert all(o == "ok" or isinstance(o, CloudCallError) for o in outcomes)


def test_a_waiting_retry_gives_up_at_once_when_a_sibling_failed_for_good() -> None:
    waited: list[bool] = []

    def waits() -> str:
        waited.append(retry.current().wait(5.0))  # what a retry's backoff does
        return "done"

    def fails() -> str:
        time.sleep(0.05)
        raise CloudCallError("RunCommand", "InvalidInstance.NotMatch", "no")

    started = time.monotonic()
    with retry.patience(30.0), pytest.raises(CloudCallError, match="NotMatch"):
        run_all([fails, waits])
    assert waited == [False]
    assert time.monotonic() - started < 1.0


def test_waits_of_side_by_side_calls_count_once_against_the_budget() -> None:
    with retry.patience(0.3) as budget:
        run_all([lambda: budget.wait(0.2) for _ in range(4)])
        assert 0.05 < budget.left < 0.15  # four overlapping 0.2 s waits cost about 0.2 s


def test_backoff_is_exponential_with_full_jitter_and_throttling_starts_higher() -> None:
    rng = random.Random(7)
    plain = [retry.backoff(a, False, rng) for a in range(3) for _ in range(200)]
    assert max(plain[:200]) <= 0.1 and max(plain[400:]) <= 0.4 and min(plain) >= 0
    assert max(retry.backoff(0, True, rng) for _ in range(200)) > 0.3


def test_retry_after_a_throttling_points_past_the_next_minute() -> None:
    rng = random.Random(1)
    now = 1_764_129_650.0  # 50 s into a minute
    after = retry.retry_after(throttled(), now, rng)
    assert 10 < after <= 10 + retry.MINUTE_JITTER[1] + 1
    assert retry.retry_after(blip(), now, rng) == 1


def test_pool_size_is_small() -> None:
    assert 2 <= parallel.POOL_SIZE <= 16
