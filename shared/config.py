"""Settings of a deployed function, read from its environment.

On Function Compute the template sets the ``ASSISTFLOW_*`` variables and FC injects the
function role's STS credentials (``ALIBABA_CLOUD_ACCESS_KEY_ID``/``_SECRET``/``_SECURITY_TOKEN``)
and ``FC_REGION`` / ``FC_ACCOUNT_ID``. The local function host sets exactly the same names, plus
the ``ASSISTFLOW_*_ENDPOINT`` overrides that point the SDKs at the emulators. Nothing here knows
which cloud it is talking to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from shared.errors import ConfigError

# The deployment's own records in its bucket (``invocations/{InvokeId}.json`` and markers).
RECORDS_PREFIX = "invocations"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    region: str
    credentials: Credentials
    followup_queue: str
    results_bucket: str
    results_prefix: str = "results"
    account_id: str = ""
    webhook_secret: str = field(default="", repr=False)
    # Empty means "the real regional endpoint" (HTTPS); the local host sets loopback URLs.
    ecs_endpoint: str = ""
    mns_endpoint: str = ""
    oss_endpoint: str = ""
    # Allow-lists: empty allows everything. Instance entries ending in "*" are prefixes.
    allowed_instances: tuple[str, ...] = ()
    allowed_types: tuple[str, ...] = ()
    preflight: bool = True
    deliveries_prefix: str = "webhook-deliveries"
    # Queues and topics the function role may notify are named ``{notify_prefix}*`` (the
    # template computes both from its Prefix parameter); empty: none at all.
    notify_prefix: str = ""
    completion_events: bool = False  # TaskCompleted events are subscribed: follow-ups watch
    # Batches larger than this are collected by follow-ups even with events: one look over
    # 100 instances is far cheaper than 100 event invocations, and a fan-out needs no 1 s latency.
    events_max_instances: int = 20
    # The TaskCompleted trigger's filter takes only commands whose name starts with this
    # (template.yml: EventsCommandPrefix); other commands are collected by follow-ups alone.
    events_command_prefix: str = "assistflow"
    # Where a queue function parks a message that can never succeed (shared.deadletter).
    dead_letter_queue: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ConfigError(f"environment variable {name} is not set; the template "
                                  "(or the local host) must set it for this function")
            return value

        return cls(
            region=env.get("ASSISTFLOW_REGION") or need("FC_REGION"),
            credentials=Credentials(
                need("ALIBABA_CLOUD_ACCESS_KEY_ID"),
                need("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
                env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
            ),
            followup_queue=need("ASSISTFLOW_FOLLOWUP_QUEUE"),
            results_bucket=need("ASSISTFLOW_RESULTS_BUCKET"),
            results_prefix=env.get("ASSISTFLOW_RESULTS_PREFIX", "results").strip("/") or "results",
            account_id=env.get("FC_ACCOUNT_ID", ""),
            webhook_secret=env.get("ASSISTFLOW_WEBHOOK_SECRET", ""),
            ecs_endpoint=env.get("ASSISTFLOW_ECS_ENDPOINT", ""),
            mns_endpoint=env.get("ASSISTFLOW_MNS_ENDPOINT", ""),
            oss_endpoint=env.get("ASSISTFLOW_OSS_ENDPOINT", ""),
            allowed_instances=_split(env.get("ASSISTFLOW_ALLOWED_INSTANCES", "")),
            allowed_types=_split(env.get("ASSISTFLOW_ALLOWED_TYPES", "")),
            preflight=env.get("ASSISTFLOW_PREFLIGHT", "on").lower() not in ("off", "false", "0"),
            deliveries_prefix=env.get("ASSISTFLOW_DELIVERIES_PREFIX", "webhook-deliveries").strip("/")
            or "webhook-deliveries",
            notify_prefix=env.get("ASSISTFLOW_NOTIFY_PREFIX", ""),
            completion_events=env.get("ASSISTFLOW_COMPLETION_EVENTS", "off").lower()
            in ("on", "true", "1"),
            events_max_instances=int(env.get("ASSISTFLOW_EVENTS_MAX_INSTANCES", "20") or 20),
            events_command_prefix=env.get("ASSISTFLOW_EVENTS_COMMAND_PREFIX", "assistflow"),
            dead_letter_queue=env.get("ASSISTFLOW_DEAD_LETTER_QUEUE", ""),
        )

    def for_region(self, region: str) -> Settings:
        """The same deployment talking to another region's ECS (a request's ``RegionId``)."""
        return self if not region or region == self.region else replace(self, region=region)

    @property
    def mns_url(self) -> str:
        if self.mns_endpoint:
            return self.mns_endpoint
        if not self.account_id:
            raise ConfigError("FC_ACCOUNT_ID is not set, so the MNS endpoint cannot be derived; "
                              "set ASSISTFLOW_MNS_ENDPOINT")
        return f"https://{self.account_id}.mns.{self.region}-internal.aliyuncs.com"

    @property
    def oss_url(self) -> str:
        return self.oss_endpoint or f"https://oss-{self.region}-internal.aliyuncs.com"


def _split(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.replace(",", " ").split() if item)
