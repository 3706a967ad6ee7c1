"""Profiles: how fast, and how strict, the local cloud is — one data file each.

A profile is ``local/profiles/<name>.yml`` (or any YAML file given by path): per-service call
latency distributions, per-action request rates above which a service throttles, the platform
time a function cold start adds, and how long EventBridge takes to deliver an event to a
function. Two ship with the project:

* ``fast`` (the default): no added latency, no rate limits — what the local cloud always did;
* ``realistic``: Alibaba Cloud's timing and ECS's API rate limits, each number with its source
  or reasoning beside it in the file.

``ASSISTFLOW_PROFILE`` picks one (a name or a path; ``assistflow up --profile`` too) and
``ASSISTFLOW_PROFILE_SEED`` seeds every random draw, so a test sees the same latencies on every
run. A file may start from another with ``extends: <name>`` and override any part of it (a
quota raised in Quota Center, a lower rate for a test).

Who uses what: the emulators' ``delay`` and ``throttle`` hooks (``local.emulators.profile_hooks``,
from ``latency`` and ``throttling``), the function host's runtimes (``cold_start``) and its
EventBridge triggers (``eventbridge_delivery``). Everything here is data and sampling; nothing
sleeps.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT = "fast"
ENV_PROFILE = "ASSISTFLOW_PROFILE"
ENV_SEED = "ASSISTFLOW_PROFILE_SEED"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ProfileError(ValueError):
    """A profile that does not exist or does not parse; the message names the file and key."""


def _keys(data: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return data


def _mapping(data: Any, where: str) -> dict[str, Any]:
    """A mapping with free keys (service or action names)."""
    return _keys(data, set(data) if isinstance(data, dict) else set(), where)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or not math.isfinite(value):
        raise ProfileError(f"{where}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


# --- distributions -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Distribution:
    """Seconds drawn from a log-normal body (``median``, ``sigma``) plus an optional tail.

    With probability ``tail_share`` a draw comes from a second log-normal (``tail_median``,
    ``tail_sigma``) instead: the rare slow call. Every draw is clamped to
    [``minimum``, ``maximum``]. A plain number in the file is a fixed value (sigma 0).
    """

    median: float = 0.0
    sigma: float = 0.0
    minimum: float = 0.0
    maximum: float | None = None
    tail_share: float = 0.0
    tail_median: float = 0.0
    tail_sigma: float = 0.0

    @property
    def zero(self) -> bool:
        return self.median == 0 and (self.tail_share == 0 or self.tail_median == 0) \
            and self.minimum == 0

    def sample(self, rng: random.Random) -> float:
        if self.zero:
            return 0.0
        if self.tail_share and rng.random() < self.tail_share:
            value = self.tail_median * math.exp(self.tail_sigma * rng.gauss(0.0, 1.0))
        else:
            value = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        value = max(self.minimum, value)
        return min(self.maximum, value) if self.maximum is not None else value

    @classmethod
    def parse(cls, data: Any, where: str) -> Distribution:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return cls(median=_seconds(data, where))
        data = _keys(data, {"median", "sigma", "min", "max", "tail"}, where)
        tail = _keys(data.get("tail") or {}, {"share", "median", "sigma"}, f"{where}.tail")
        share = float(tail.get("share", 0.0))
        if not 0 <= share <= 1:
            raise ProfileError(f"{where}.tail.share: expected 0..1, got {share}")
        dist = cls(median=_seconds(data.get("median", 0), f"{where}.median"),
                   sigma=_seconds(data.get("sigma", 0), f"{where}.sigma"),
                   minimum=_seconds(data.get("min", 0), f"{where}.min"),
                   maximum=_seconds(data["max"], f"{where}.max") if "max" in data else None,
                   tail_share=share,
                   tail_median=_seconds(tail.get("median", 0), f"{where}.tail.median"),
                   tail_sigma=_seconds(tail.get("sigma", 0), f"{where}.tail.sigma"))
        if dist.maximum is not None and dist.maximum < dist.minimum:
            raise ProfileError(f"{where}: max {dist.maximum} is below min {dist.minimum}")
        return dist


class Sampler:
    """Draws from one distribution with its own random stream; safe across threads."""

    def __init__(self, distribution: Distribution, rng: random.Random) -> None:
        self.distribution = distribution
        self._rng = rng
        self._lock = threading.Lock()

    @property
    def zero(self) -> bool:
        """Every draw is 0 (no delay at all)."""
        return self.distribution.zero

    def __call__(self) -> float:
        if self.distribution.zero:
            return 0.0
        with self._lock:  # Random.gauss keeps state between calls
            return self.distribution.sample(self._rng)


NO_DELAY = Distribution()


# --- per-service latency and rate limits -------------------------------------------------------
@dataclass(frozen=True)
class ServiceLatency:
    """One service's call latency: ``default``, or the action's own distribution."""

    default: Distribution = NO_DELAY
    actions: Mapping[str, Distribution] = field(default_factory=dict)

    def for_action(self, action: str) -> Distribution:
        return self.actions.get(action, self.default)

    @classmethod
    def parse(cls, data: Any, where: str) -> ServiceLatency:
        data = _keys(data, {"default", "actions"}, where)
        actions = _mapping(data.get("actions") or {}, f"{where}.actions")
        return cls(Distribution.parse(data.get("default", 0), f"{where}.default"),
                   {str(a): Distribution.parse(d, f"{where}.actions.{a}")
                    for a, d in actions.items()})


@dataclass(frozen=True)
class RateLimits:
    """Calls per ``window_seconds`` per account and action; over it, the service's error.

    Windows are fixed and aligned (minute T, then minute T+1), as ECS documents: an action
    throttled in minute T can be called again in minute T+1. ``default_limit`` covers actions
    not listed (None: unlisted actions are not limited).
    """

    window_seconds: float
    limits: Mapping[str, int]
    default_limit: int | None
    error_code: str
    error_status: int
    error_message: str

    def limit_for(self, action: str) -> int | None:
        return self.limits.get(action, self.default_limit)

    @classmethod
    def parse(cls, data: Any, where: str) -> RateLimits:
        data = _keys(data, {"window_seconds", "limits", "default_limit", "error"}, where)
        error = _keys(data.get("error"), {"code", "status", "message"}, f"{where}.error")
        if not error.get("code"):
            raise ProfileError(f"{where}.error.code is required")
        window = _seconds(data.get("window_seconds", 60), f"{where}.window_seconds")
        if window <= 0:
            raise ProfileError(f"{where}.window_seconds must be > 0")
        limits: dict[str, int] = {}
        for action, limit in _mapping(data.get("limits") or {}, f"{where}.limits").items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ProfileError(f"{where}.limits.{action}: expected a count >= 0, got "
                                   f"{limit!r}")
            limits[str(action)] = limit
        default = data.get("default_limit")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int)
                                    or default < 0):
            raise ProfileError(f"{where}.default_limit: expected a count >= 0, got {default!r}")
        return cls(window, limits, default, str(error["code"]), int(error.get("status", 400)),
                   str(error.get("message") or error["code"]))


# --- the profile -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """One profile, loaded; ``Profile.fast()`` is the default, and changes nothing."""

    name: str = DEFAULT
    description: str = ""
    latency: Mapping[str, ServiceLatency] = field(default_factory=dict)
    throttling: Mapping[str, RateLimits] = field(default_factory=dict)
    cold_start: Distribution = NO_DELAY
    eventbridge_delivery: Distribution = NO_DELAY
    seed: int | None = None
    source: Path | None = None

    @classmethod
    def fast(cls) -> Profile:
        return cls()

    @classmethod
    def available(cls) -> list[str]:
        return sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))

    @classmethod
    def load(cls, name_or_path: str | Path, seed: int | None = None) -> Profile:
        """The profile called ``name_or_path`` (in ``local/profiles/``) or in that file."""
        data, path = _read(name_or_path, set())
        return cls.parse(data, path, seed)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Profile:
        """``ASSISTFLOW_PROFILE`` (default ``fast``), seeded by ``ASSISTFLOW_PROFILE_SEED``."""
        raw_seed = environ.get(ENV_SEED, "").strip()
        try:
            seed = int(raw_seed) if raw_seed else None
        except ValueError:
            raise ProfileError(f"{ENV_SEED} must be an integer, not {raw_seed!r}") from None
        return cls.load(environ.get(ENV_PROFILE, "").strip() or DEFAULT, seed)

    @classmethod
    def resolve(cls, value: Profile | str | Path | None) -> Profile:
        """A profile as given: itself, a name or path, or (None) the environment's choice."""
        if isinstance(value, Profile):
            return value
        return cls.from_env() if value is None else cls.load(value)

    @classmethod
    def parse(cls, data: dict[str, Any], path: Path | None = None,
              seed: int | None = None) -> Profile:
        where = str(path) if path else "profile"
        data = _keys(data, {"name", "description", "seed", "latency", "throttling",
                            "function_compute", "eventbridge"}, where)
        latency = _mapping(data.get("latency") or {}, f"{where}: latency")
        throttling = _mapping(data.get("throttling") or {}, f"{where}: throttling")
        fc = _keys(data.get("function_compute") or {}, {"cold_start"},
                   f"{where}: function_compute")
        eb = _keys(data.get("eventbridge") or {}, {"delivery"}, f"{where}: eventbridge")
        file_seed = data.get("seed")
        return cls(
            name=str(data.get("name") or (path.stem if path else DEFAULT)),
            description=str(data.get("description") or "").strip(),
            latency={str(s): ServiceLatency.parse(v, f"{where}: latency.{s}")
                     for s, v in latency.items()},
            throttling={str(s): RateLimits.parse(v, f"{where}: throttling.{s}")
                        for s, v in throttling.items()},
            cold_start=Distribution.parse(fc.get("cold_start", 0),
                                          f"{where}: function_compute.cold_start"),
            eventbridge_delivery=Distribution.parse(eb.get("delivery", 0),
                                                    f"{where}: eventbridge.delivery"),
            seed=seed if seed is not None else (int(file_seed) if file_seed is not None
                                                else None),
            source=path)

    def with_seed(self, seed: int | None) -> Profile:
        return replace(self, seed=seed)

    def rng(self, stream: str) -> random.Random:
        """A random stream of its own per user: seeded, every stream repeats run after run."""
        return random.Random(f"{self.seed}:{stream}") if self.seed is not None \
            else random.Random()

    def sampler(self, distribution: Distribution, stream: str) -> Sampler:
        return Sampler(distribution, self.rng(stream))

    def service_latency(self, service: str) -> ServiceLatency:
        return self.latency.get(service) or ServiceLatency()

    def summary(self) -> dict[str, Any]:
        """What ``/_emulator/health`` and ``endpoints.json`` say about it."""
        return {"name": self.name, "source": str(self.source) if self.source else None,
                "seed": self.seed}


def _read(name_or_path: str | Path, seen: set[Path]) -> tuple[dict[str, Any], Path]:
    """The file's mapping with its ``extends`` chain merged in (the file's own keys win)."""
    import yaml

    text = str(name_or_path)
    if _NAME.match(text) and not text.endswith((".yml", ".yaml")):
        path = PROFILES_DIR / f"{text}.yml"
        if not path.is_file():
            raise ProfileError(f"no profile {text!r}; there are: "
                               f"{', '.join(Profile.available())} (or give a file path)")
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileError(f"profile file {path} does not exist")
    path = path.resolve()
    if path in seen:
        raise ProfileError(f"{path}: 'extends' loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, path
    base, _ = _read(str(base_name), seen | {path})
    base.pop("name", None)
    return _merge(base, data), path


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
