"""Settings of a deployed function, read from its environment.

On Function Compute the template sets the ``ASSISTFLOW_*`` variables and FC injects the
function role's STS credentials (``ALIBABA_CLOUD_ACCESS_KEY_ID``/``_SECRET``/``_SECURITY_TOKEN``)
and ``FC_REGION`` / ``FC_ACCOUNT_ID``. The local function host sets exactly the same names, plus
the ``ASSISTFLOW_*_ENDPOINT`` overrides that point the SDKs at the emulators. Nothing here knows
which cloud it is talking to.

Credentials are per invocation: FC hands every invocation its role's current STS keys in
``context.credentials`` (python3.10: ``access_key_id`` / ``access_key_secret`` /
``security_token``, https://www.alibabacloud.com/help/doc-detail/422182.htm) and refreshes the
``ALIBABA_CLOUD_*`` variables; a warm instance can outlive the token it started with (role keys
are valid for at most 36 h, same page). ``Credentials.current`` takes the context's keys, else
the environment's, on every invocation (the python3.12 context has no ``credentials`` at all:
https://www.alibabacloud.com/help/en/functioncompute/fc/context-1).

Endpoints, when not overridden, are the region's documented ones:

* ECS: the regional HTTPS endpoint (``shared.clients.cloud_assistant``).
* MNS (Simple Message Queue): the public endpoint ``https://<account>.mns.<region>.aliyuncs.com``
  takes HTTPS; the internal ``…-internal.aliyuncs.com`` one is HTTP only, and the VPC endpoint
  ``http://<account>.mns.<region>-internal-vpc.aliyuncs.com`` is reachable only from a VPC
  (https://www.alibabacloud.com/help/en/mns/product-overview/regions-and-endpoints;
  https://www.alibabacloud.com/help/doc-detail/175569.htm).
* OSS: ``https://oss-<region>.aliyuncs.com`` (public), or ``oss-<region>-internal.aliyuncs.com``
  for clients inside Alibaba Cloud's network, "for example an application deployed in a VPC"
  (https://www.alibabacloud.com/help/en/oss/user-guide/regions-and-endpoints;
  https://www.alibabacloud.com/help/en/oss/developer-reference/v2-domain).

A function reaches the Internet by default and a VPC only once it is configured with one
(https://www.alibabacloud.com/help/en/functioncompute/fc/user-guide/configure-network-settings),
so the default network is ``public``: public HTTPS endpoints, which every function can reach.
``ASSISTFLOW_NETWORK=vpc`` (the template's ``Network`` parameter, for functions given a
``VpcConfig``) switches MNS to its VPC endpoint and OSS to its internal one (still HTTPS: OSS
serves HTTPS on every endpoint).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.errors import ConfigError

# The deployment's own records in its bucket (``invocations/{InvokeId}.json`` and markers).
RECORDS_PREFIX = "invocations"

NETWORKS = ("public", "vpc")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(default="", repr=False)

    @classmethod
    def from_context(cls, context: Any) -> Credentials | None:
        """The keys FC handed this invocation (``context.credentials``), None if it has none.

        Read in both spellings FC's Python runtimes have used (``access_key_id`` and
        ``accessKeyId``)."""
        creds = getattr(context, "credentials", None)
        if creds is None:
            return None

        def read(*names: str) -> str:
            for name in names:
                value = getattr(creds, name, None)
                if value is None and isinstance(creds, Mapping):
                    value = creds.get(name)
                if value:
                    return str(value)
            return ""

        key_id = read("access_key_id", "accessKeyId")
        secret = read("access_key_secret", "accessKeySecret")
        if not key_id or not secret:
            return None
        return cls(key_id, secret, read("security_token", "securityToken"))

    @classmethod
    def current(cls, context: Any = None, env: Mapping[str, str] | None = None
                ) -> Credentials | None:
        """This invocation's keys: the context's, else the environment's (None if neither)."""
        found = cls.from_context(context) if context is not None else None
        if found is not None:
            return found
        env = os.environ if env is None else env
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
        secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
        if not key_id or not secret:
            return None
        return cls(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""))


@dataclass(frozen=True)
class Settings:
    region: str
    credentials: Credentials
    followup_queue: str
    results_bucket: str
    results_prefix: str = "results"
    account_id: str = ""
    webhook_secret: str = field(default="", repr=False)
    # Empty means "the region's documented endpoint" (see the module docstring); the local
    # host sets loopback URLs.
    ecs_endpoint: str = ""
    mns_endpoint: str = ""
    oss_endpoint: str = ""
    network: str = "public"  # public | vpc: which documented MNS and OSS endpoints to use
    # Allow-lists: empty allows everything. Instance entries ending in "*" are prefixes.
    allowed_instances: tuple[str, ...] = ()
    allowed_types: tuple[str, ...] = ()
    # Saved commands a request may name (CommandId): ids, names, or name prefixes ending in *.
    allowed_commands: tuple[str, ...] = ()
    # Regions a request's RegionId may name; empty: only ``region`` (template: AllowedRegions).
    allowed_regions: tuple[str, ...] = ()
    preflight: bool = True
    deliveries_prefix: str = "webhook-deliveries"
    # Queues and topics the function role may notify are named ``{notify_prefix}*`` (the
    # template computes both from its Prefix parameter); empty: none at all.
    notify_prefix: str = ""
    # Notify.Url hosts, addresses and CIDRs that may be non-public (shared.notify_url), and how
    # long a failing notification is retried (shared.notify).
    notify_allowed_hosts: tuple[str, ...] = ()
    notify_retry_seconds: int = 86400
    completion_events: bool = False  # TaskCompleted events are subscribed: follow-ups watch
    # Batches larger than this are collected by follow-ups even with events: one look over
    # 100 instances is far cheaper than 100 event invocations, and a fan-out needs no 1 s latency.
    events_max_instances: int = 20
    # The TaskCompleted trigger's filter takes only commands whose name starts with this
    # (template.yml: EventsCommandPrefix); other commands are collected by follow-ups alone.
    events_command_prefix: str = "assistflow"
    # Where a queue function parks a message that can never succeed (shared.deadletter).
    dead_letter_queue: str = ""
    # The dispatch queue (shared.fanout): a request of several batches is invoked one batch
    # per dispatch invocation; empty (no such queue): the submit invokes them itself.
    dispatch_queue: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, context: Any = None) -> Settings:
        """The settings of this invocation: ``env`` (default ``os.environ``), with the keys of
        ``context.credentials`` when FC passed them (see ``Credentials.current``)."""
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ConfigError(f"environment variable {name} is not set; the template "
                                  "(or the local host) must set it for this function")
            return value

        network = (env.get("ASSISTFLOW_NETWORK") or "public").strip().lower()
        if network not in NETWORKS:
            raise ConfigError(f"ASSISTFLOW_NETWORK is {network!r}; use one of "
                              f"{', '.join(NETWORKS)}")
        # Neither the context nor the environment has keys: say which variable is missing.
        credentials = Credentials.current(context, env) or Credentials(
            need("ALIBABA_CLOUD_ACCESS_KEY_ID"), need("ALIBABA_CLOUD_ACCESS_KEY_SECRET"))
        return cls(
            region=env.get("ASSISTFLOW_REGION") or need("FC_REGION"),
            credentials=credentials,
            followup_queue=need("ASSISTFLOW_FOLLOWUP_QUEUE"),
            results_bucket=need("ASSISTFLOW_RESULTS_BUCKET"),
            results_prefix=env.get("ASSISTFLOW_RESULTS_PREFIX", "results").strip("/") or "results",
            account_id=env.get("FC_ACCOUNT_ID", ""),
            webhook_secret=env.get("ASSISTFLOW_WEBHOOK_SECRET", ""),
            ecs_endpoint=env.get("ASSISTFLOW_ECS_ENDPOINT", ""),
            mns_endpoint=env.get("ASSISTFLOW_MNS_ENDPOINT", ""),
            oss_endpoint=env.get("ASSISTFLOW_OSS_ENDPOINT", ""),
            network=network,
            allowed_instances=_split(env.get("ASSISTFLOW_ALLOWED_INSTANCES", "")),
            allowed_types=_split(env.get("ASSISTFLOW_ALLOWED_TYPES", "")),
            allowed_commands=_split(env.get("ASSISTFLOW_ALLOWED_COMMANDS", "")),
            allowed_regions=_split(env.get("ASSISTFLOW_ALLOWED_REGIONS", "")),
            preflight=env.get("ASSISTFLOW_PREFLIGHT", "on").lower() not in ("off", "false", "0"),
            deliveries_prefix=env.get("ASSISTFLOW_DELIVERIES_PREFIX", "webhook-deliveries").strip("/")
            or "webhook-deliveries",
            notify_prefix=env.get("ASSISTFLOW_NOTIFY_PREFIX", ""),
            notify_allowed_hosts=_split(env.get("ASSISTFLOW_NOTIFY_ALLOWED_HOSTS", "")),
            notify_retry_seconds=int(env.get("ASSISTFLOW_NOTIFY_RETRY_SECONDS", "") or 86400),
            completion_events=env.get("ASSISTFLOW_COMPLETION_EVENTS", "off").lower()
            in ("on", "true", "1"),
            events_max_instances=int(env.get("ASSISTFLOW_EVENTS_MAX_INSTANCES", "20") or 20),
            events_command_prefix=env.get("ASSISTFLOW_EVENTS_COMMAND_PREFIX", "assistflow"),
            dead_letter_queue=env.get("ASSISTFLOW_DEAD_LETTER_QUEUE", ""),
            dispatch_queue=env.get("ASSISTFLOW_DISPATCH_QUEUE", ""),
        )

    def for_region(self, region: str) -> Settings:
        """The same deployment talking to another region's ECS (a request's ``RegionId``)."""
        return self if not region or region == self.region else replace(self, region=region)

    @property
    def mns_url(self) -> str:
        if self.mns_endpoint:
            return self.mns_endpoint
        if not self.account_id:
            raise ConfigError("the account id is not known (FC_ACCOUNT_ID in a function; "
                              "--account-id or ALIBABA_CLOUD_ACCOUNT_ID for the assistflow "
                              "command), so the MNS endpoint cannot be derived; or set "
                              "ASSISTFLOW_MNS_ENDPOINT")
        if self.network == "vpc":  # HTTP only, and only from a VPC (module docstring)
            return f"http://{self.account_id}.mns.{self.region}-internal-vpc.aliyuncs.com"
        return f"https://{self.account_id}.mns.{self.region}.aliyuncs.com"

    @property
    def oss_url(self) -> str:
        if self.oss_endpoint:
            return self.oss_endpoint
        internal = "-internal" if self.network == "vpc" else ""
        return f"https://oss-{self.region}{internal}.aliyuncs.com"


def _split(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.replace(",", " ").split() if item)
