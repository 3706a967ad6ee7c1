"""The function host: runs the functions and triggers a ``Template`` declares, as FC 3.0 would.

* every ``ALIYUN::FC3::Function`` becomes a ``FunctionRuntime`` (worker processes, Timeout,
  its EnvironmentVariables plus FC's system variables);
* every ``ALIYUN::FC3::Trigger`` of a kind in ``TRIGGER_KINDS`` becomes a ``Trigger``
  (``local.host.trigger``): ``http`` triggers are served on their own ports, ``timer`` triggers
  fire on their cron, ``eventbridge`` triggers with an MNS source deliver queue messages, and
  those on the default bus receive the cloud events published to ``bus`` (the ECS emulator's
  TaskCompleted); a kind not listed there is skipped with a warning;
* with a ``KeyRing``, FC's invoke API is served too (``FcApi``, the ``fc`` endpoint);
* every ``ALIYUN::FC3::AsyncInvokeConfig`` shapes its function's asynchronous invocations
  (retries, event age, an MNS-queue ``OnFailure`` / ``OnSuccess`` destination);
* with a ``Profile`` (``local.profile``), cold starts take its platform time and EventBridge
  triggers deliver after its delivery time (``fast``, the default: neither).

To run a new kind of trigger: write its ``Trigger`` subclass in a module of its own and add one
line to ``TRIGGER_KINDS``.

``stop()`` ends every thread the host started: first nothing new is accepted (timers, pollers,
servers), then the runtimes close — invocations in flight fail, and a queue message whose
invocation was cut short simply comes back later — then the threads are joined.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from local.emulators.base import KeyRing
from local.host.async_invoke import DEFAULT_MAX_AGE, DEFAULT_RETRIES, AsyncInvoker, AsyncPolicy
from local.host.event_bus import BusTrigger, EventBus
from local.host.fc_api import FcApi
from local.host.http_trigger import HttpTrigger
from local.host.queue_trigger import QueueHandles, QueueTrigger
from local.host.runtime import FunctionRuntime, FunctionSpec
from local.host.template import FunctionDecl, Template, TemplateError, TriggerDecl
from local.host.timer_trigger import TimerTrigger
from local.host.trigger import MnsAccess, Trigger, TriggerContext, TriggerFactory
from local.profile import Profile
from local.ram import Identity
from local.state import issue_sts

log = logging.getLogger("assistflow.host")
_host_ids = itertools.count(1)

# TriggerDecl.kind -> how to build a trigger of that kind.
TRIGGER_KINDS: dict[str, TriggerFactory] = {
    "http": HttpTrigger.create,
    "timer": TimerTrigger.create,
    "eventbridge:MNS": QueueTrigger.create,
    "eventbridge:Default": BusTrigger.create,
}

T = TypeVar("T", bound=Trigger)


class FunctionHost:
    """All functions and triggers of one template, plus (optionally) the FC invoke API.

    ``system_env`` holds FC system variables for every function; ``FC_REGION`` and
    ``FC_ACCOUNT_ID`` default to the template's. With a ``keyring``, a function with a
    ``Role`` gets its own ``ALIBABA_CLOUD_*`` STS credentials bound to that role's policies
    (one without a role gets none, as on FC, unless ``system_env`` has them), and the invoke
    API is served on ``api_port``. ``async_retries`` (FC: 3) is the retries of a function
    without an ``AsyncInvokeConfig``, ``async_retry_delay`` the first pause between them
    (doubling). ``profile`` adds
    the platform's own time (default ``fast``: none).
    """

    def __init__(self, template: Template, system_env: dict[str, str], mns: MnsAccess,
                 record_dir: Path | None = None, max_instances: int = 4,
                 http_ports: dict[str, int] | None = None, *, keyring: KeyRing | None = None,
                 api_port: int = 0, async_retries: int = DEFAULT_RETRIES,
                 async_retry_delay: float = 1.0, profile: Profile | None = None) -> None:
        self.template = template
        self.profile = profile or Profile.fast()
        self.system_env = {"FC_REGION": template.region, "FC_ACCOUNT_ID": template.account_id,
                           **system_env}
        self.mns = mns
        self.record = (record_dir / "invocations.jsonl") if record_dir else None
        self.max_instances = max_instances
        self.keyring = keyring
        self.api_port = api_port
        # Every thread the host starts is named "<label>…", so several hosts in one process
        # (tests) can be told apart and ``threads()`` can prove stop() ended them all.
        self.label = f"host{next(_host_ids)}:"
        self.invoker = AsyncInvoker(async_retries, async_retry_delay, label=self.label,
                                    policies=self._async_policies(async_retries),
                                    send=self._sender(mns), region=template.region,
                                    account_id=template.account_id)
        self.bus = EventBus()  # the default event bus cloud services publish to
        self.context = TriggerContext(
            template.region, template.account_id, self.label, self.invoker, self.bus, mns,
            dict(http_ports or {}),
            self.profile.sampler(self.profile.eventbridge_delivery, "eventbridge:delivery"))
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.triggers: dict[str, Trigger] = {}  # by logical id
        self.api: FcApi | None = None

    def _async_policies(self, default_retries: int) -> dict[str, AsyncPolicy]:
        policies = {}
        for function, decl in self.template.async_configs().items():
            targets = {}
            for kind, arn in (("OnFailure", decl.on_failure), ("OnSuccess", decl.on_success)):
                queue = decl.queue_of(arn) if arn else None
                if arn and queue is None:
                    log.warning("async config %s: %s destination %s is not an MNS queue; only "
                                "MNS-queue destinations are emulated, so it is ignored",
                                decl.logical_id, kind, arn)
                targets[kind] = queue
            policies[function] = AsyncPolicy(
                retries=default_retries if decl.max_retries is None else decl.max_retries,
                max_age=DEFAULT_MAX_AGE if decl.max_age is None else decl.max_age,
                on_failure=targets["OnFailure"], on_success=targets["OnSuccess"])
        return policies

    @staticmethod
    def _sender(mns: MnsAccess) -> Callable[[str, bytes], None]:
        handles = QueueHandles(mns)

        def send(queue: str, body: bytes) -> None:
            from mns.queue import Message

            handles.get(queue).send_message(Message(body.decode()))

        return send

    @property
    def api_url(self) -> str:
        """The invoke API's base URL ('' without a keyring)."""
        return self.api.url if self.api else ""

    def trigger(self, name: str, kind: type[T]) -> T:
        """The running trigger called ``name`` (its TriggerName), which must be a ``kind``."""
        found = [t for t in self.triggers.values() if t.name == name]
        if len(found) != 1 or not isinstance(found[0], kind):
            raise KeyError(f"no single {kind.__name__} named {name!r}")
        return found[0]

    def start(self) -> None:
        try:
            self._build()
        except ValueError as exc:  # a bad trigger config is a template problem
            self.stop()
            raise TemplateError(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        for trigger in self.triggers.values():
            trigger.start()
        if self.api is not None:
            self.api.start()

    def _build(self) -> None:
        tpl = self.template
        # Triggers first: what they publish (an HTTP trigger's URL) may be referred to by the
        # functions' environment.
        for decl in tpl.triggers():
            trigger = self._create_trigger(decl)
            if trigger is None:
                continue
            self.triggers[decl.logical_id] = trigger  # owned now: stop() releases it
            for attribute, value in trigger.attributes().items():
                tpl.attributes[(decl.logical_id, attribute)] = value
        for fn in tpl.functions():
            spec = FunctionSpec(fn.name, fn.handler, fn.code_dir, fn.timeout, fn.memory,
                                fn.environment, fn.runtime)
            self.runtimes[fn.name] = FunctionRuntime(
                spec, {**self.system_env, **self._role_credentials(fn)}, self.max_instances,
                self.record, label=self.label,
                platform_delay=self.profile.sampler(self.profile.cold_start,
                                                    f"fc:cold_start:{fn.name}"))
        for logical_id, trigger in self.triggers.items():
            runtime = self.runtimes.get(trigger.function)
            if runtime is None:
                raise TemplateError(f"trigger {logical_id}: function {trigger.function!r} is "
                                    "not declared")
            trigger.attach(runtime)
        if self.keyring is not None:
            self.api = FcApi(lambda: self.runtimes, self.keyring, self.invoker, self.api_port,
                             label=self.label, region=tpl.region, account_id=tpl.account_id)

    def _role_credentials(self, fn: FunctionDecl) -> dict[str, str]:
        """FC's ``ALIBABA_CLOUD_*`` for a function with a ``Role``: its own STS key pair, bound
        in the keyring to the role's policies in the template, so every emulator allows it only
        what they allow (``local.ram``)."""
        if not fn.role or self.keyring is None:
            return {}
        identity = Identity(fn.role, self.template.role_policies(fn.role))
        return issue_sts(self.keyring, identity).environment()

    def _create_trigger(self, decl: TriggerDecl) -> Trigger | None:
        factory = TRIGGER_KINDS.get(decl.kind)
        if factory is None:
            log.warning("trigger %s: type %s is not emulated yet", decl.name, decl.kind)
            return None
        return factory(decl, self.context)

    def threads(self) -> list[threading.Thread]:
        """The live threads this host started (none once ``stop()`` has returned)."""
        return [t for t in threading.enumerate() if t.name.startswith(self.label)]

    def stop(self) -> None:
        # 1. accept nothing new
        for trigger in self.triggers.values():
            trigger.begin_stop()
        self.invoker.begin_stop()
        if self.api is not None:
            self.api.stop()
        # 2. end what is running: in-flight invocations fail at once instead of holding stop()
        for runtime in self.runtimes.values():
            runtime.close()
        # 3. join
        for trigger in self.triggers.values():
            trigger.stop()
        self.invoker.stop()
