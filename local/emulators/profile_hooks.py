"""The profile's latency and rate limits for one emulator's calls.

Every API call waits for its latency once authenticated, then ``EmulatorApp.hooks`` runs
``[authorize, throttle, inject_fault]`` on it (``local.emulators.base``); the latency and
``throttle`` ask this module's ``CallPacing``, built from the active
``local.profile.Profile``. Under ``fast`` neither does anything.

* ``latency`` draws from the service's latency distribution for that action, and the call
  waits that long for real — a request thread sleeps (``sleep``), the one-thread server sets
  a timer: the caller's SDK timeouts and a function's billed time feel it, as on the cloud.
* ``over_limit`` counts calls per (account, action) in fixed windows aligned to the
  emulator's clock, and names the error to answer once a window's count passes the limit.
  That is ECS's documented rule: per API, per region, per Alibaba Cloud account — the calls of
  every RAM user and role of the account count together — and an API throttled in minute T
  can be called again in minute T+1 ("API throttling",
  https://help.aliyun.com/zh/ecs/developer-reference/api-throttling). An emulator serves one
  region, so the region is implicit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from local.profile import Profile, RateLimits, Sampler

if TYPE_CHECKING:
    from local.emulators.base import Call

LOCAL_ACCOUNT = "local"


@dataclass(frozen=True)
class Refusal:
    """The error a throttled call is answered with."""

    code: str
    status: int
    message: str


class RateWindow:
    """Calls per (account, action) in the current fixed window, against ``RateLimits``."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # -> (window, calls)

    def admit(self, account: str, action: str, now: float) -> bool:
        """Count one call; False if it is over the limit of its window."""
        limit = self.limits.limit_for(action)
        if limit is None:
            return True
        window = int(now // self.limits.window_seconds)
        with self._lock:
            current, calls = self._counts.get((account, action), (window, 0))
            calls = calls + 1 if current == window else 1
            self._counts[(account, action)] = (window, calls)
        return calls <= limit

    def refusal(self) -> Refusal:
        return Refusal(self.limits.error_code, self.limits.error_status,
                       self.limits.error_message)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


class CallPacing:
    """One emulator's latency and rate limits under a profile (default: none at all)."""

    def __init__(self, profile: Profile | None = None, service: str = "",
                 account_of: Callable[[str | None], str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = profile or Profile.fast()
        self.service = service
        self.account_of = account_of or (lambda _key: LOCAL_ACCOUNT)
        self._sleep = sleep
        latency = self.profile.service_latency(service)
        self._samplers: dict[str, Sampler] = {
            action: self.profile.sampler(dist, f"latency:{service}:{action}")
            for action, dist in latency.actions.items()}
        self._default = self.profile.sampler(latency.default, f"latency:{service}")
        limits = self.profile.throttling.get(service)
        self.window = RateWindow(limits) if limits is not None else None

    @property
    def profile_name(self) -> str:
        return self.profile.name

    def latency(self, action: str) -> float:
        """A draw of this action's latency, in seconds."""
        return self._samplers.get(action, self._default)()

    def delay(self, call: Call) -> None:
        self.sleep(self.latency(call.action))

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of latency on this thread (a real sleep)."""
        if seconds > 0:
            self._sleep(seconds)

    def over_limit(self, call: Call, now: float) -> Refusal | None:
        """The error to answer if ``call`` is over its rate, else None (and it is counted)."""
        if self.window is None:
            return None
        if self.window.admit(self.account_of(call.access_key_id), call.action, now):
            return None
        return self.window.refusal()

    def reset(self) -> None:
        """Forget the counts (``/_emulator/reset``)."""
        if self.window is not None:
            self.window.clear()
