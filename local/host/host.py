"""The function host: runs the functions and triggers a ``Template`` declares, as FC 3.0 would.

* every ``ALIYUN::FC3::Function`` becomes a ``FunctionRuntime`` (worker processes, Timeout,
  its EnvironmentVariables plus FC's system variables);
* ``http`` triggers are served on their own ports, ``timer`` triggers fire on their cron,
  ``eventbridge`` triggers with an MNS source deliver queue messages, and those on the default
  bus receive the cloud events published to ``bus`` (the ECS emulator's TaskCompleted);
* with a ``KeyRing``, FC's invoke API is served too (``FcApi``, the ``fc`` endpoint).

``stop()`` ends every thread the host started: first nothing new is accepted (timers, pollers,
servers), then the runtimes close — invocations in flight fail, and a queue message whose
invocation was cut short simply comes back later — then the threads are joined.
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path

from local.emulators.base import KeyRing
from local.host.async_invoke import DEFAULT_RETRIES, AsyncInvoker
from local.host.event_bus import BusTrigger, EventBus
from local.host.fc_api import FcApi
from local.host.http_trigger import HttpTrigger
from local.host.queue_trigger import MnsAccess, QueueTrigger
from local.host.runtime import FunctionRuntime, FunctionSpec
from local.host.template import Template, TemplateError
from local.host.timer_trigger import TimerTrigger

log = logging.getLogger("assistflow.host")
_host_ids = itertools.count(1)


class FunctionHost:
    """All functions and triggers of one template, plus (optionally) the FC invoke API.

    ``system_env`` holds the FC system variables the host cannot know (the function's
    ``ALIBABA_CLOUD_*`` STS credentials); ``FC_REGION`` and ``FC_ACCOUNT_ID`` default to the
    template's. ``keyring`` enables the invoke API on ``api_port``. ``async_retries`` and
    ``async_retry_delay`` shape the retries of async invocations (FC: 3).
    """

    def __init__(self, template: Template, system_env: dict[str, str], mns: MnsAccess,
                 record_dir: Path | None = None, max_instances: int = 4,
                 http_ports: dict[str, int] | None = None, *, keyring: KeyRing | None = None,
                 api_port: int = 0, async_retries: int = DEFAULT_RETRIES,
                 async_retry_delay: float = 1.0) -> None:
        self.template = template
        self.system_env = {"FC_REGION": template.region, "FC_ACCOUNT_ID": template.account_id,
                           **system_env}
        self.mns = mns
        self.record = (record_dir / "invocations.jsonl") if record_dir else None
        self.max_instances = max_instances
        self.http_ports = http_ports or {}
        self.keyring = keyring
        self.api_port = api_port
        # Every thread the host starts is named "<label>…", so several hosts in one process
        # (tests) can be told apart and ``threads()`` can prove stop() ended them all.
        self.label = f"host{next(_host_ids)}:"
        self.invoker = AsyncInvoker(async_retries, async_retry_delay, label=self.label)
        self.bus = EventBus(self.invoker)  # the default event bus cloud services publish to
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.http_triggers: dict[str, HttpTrigger] = {}
        self.queue_triggers: dict[str, QueueTrigger] = {}
        self.timer_triggers: dict[str, TimerTrigger] = {}
        self.api: FcApi | None = None

    @property
    def api_url(self) -> str:
        """The invoke API's base URL ('' without a keyring)."""
        return self.api.url if self.api else ""

    def start(self) -> None:
        try:
            self._build()
        except ValueError as exc:  # a bad trigger config is a template problem
            self.stop()
            raise TemplateError(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        for http in self.http_triggers.values():
            http.start()
        for queue in self.queue_triggers.values():
            queue.start()
        for timer in self.timer_triggers.values():
            timer.start()
        if self.api is not None:
            self.api.start()

    def _build(self) -> None:
        tpl = self.template
        decls = tpl.triggers()
        # HTTP triggers bind first: their URLs are attributes other values may refer to.
        pending_http = []
        for decl in decls:
            if decl.type == "http":
                trigger = HttpTrigger(decl.name, decl.function, decl.config, tpl.region,
                                      tpl.account_id, self.http_ports.get(decl.name, 0),
                                      invoker=self.invoker, label=self.label)
                self.http_triggers[decl.name] = trigger  # owned now: stop() closes its port
                tpl.attributes[(decl.logical_id, "UrlInternet")] = trigger.url
                tpl.attributes[(decl.logical_id, "UrlIntranet")] = trigger.url
                tpl.attributes[(decl.logical_id, "TriggerId")] = trigger.trigger_id
                pending_http.append((decl, trigger))
        for fn in tpl.functions():
            spec = FunctionSpec(fn.name, fn.handler, fn.code_dir, fn.timeout, fn.memory,
                                fn.environment, fn.runtime)
            self.runtimes[fn.name] = FunctionRuntime(spec, self.system_env, self.max_instances,
                                                     self.record, label=self.label)
        for decl, trigger in pending_http:
            trigger.runtime = self._runtime(decl.function, decl.logical_id)
        for decl in decls:
            source = ((decl.config.get("eventSourceConfig") or {}).get("eventSourceType")
                      or "Default")
            if decl.type == "eventbridge" and source == "Default":
                self.bus.subscribe(BusTrigger(decl.name, self._runtime(decl.function,
                                                                       decl.logical_id),
                                              decl.config))
            elif decl.type == "eventbridge" and source == "MNS":
                self.queue_triggers[decl.name] = QueueTrigger(
                    decl.name, self._runtime(decl.function, decl.logical_id), decl.config,
                    self.mns, tpl.region, tpl.account_id, label=self.label)
            elif decl.type == "timer":
                self.timer_triggers[decl.name] = TimerTrigger(
                    decl.name, self._runtime(decl.function, decl.logical_id), decl.config,
                    self.invoker, label=self.label)
            elif decl.type != "http":
                log.warning("trigger %s: type %s is not emulated yet", decl.name, decl.type)
        if self.keyring is not None:
            self.api = FcApi(lambda: self.runtimes, self.keyring, self.invoker, self.api_port,
                             label=self.label)

    def threads(self) -> list[threading.Thread]:
        """The live threads this host started (none once ``stop()`` has returned)."""
        return [t for t in threading.enumerate() if t.name.startswith(self.label)]

    def _runtime(self, function: str, trigger: str) -> FunctionRuntime:
        try:
            return self.runtimes[function]
        except KeyError:
            raise TemplateError(f"trigger {trigger}: function {function!r} is not declared") \
                from None

    def stop(self) -> None:
        # 1. accept nothing new
        for timer in self.timer_triggers.values():
            timer.begin_stop()
        for queue in self.queue_triggers.values():
            queue.begin_stop()
        self.invoker.begin_stop()
        if self.api is not None:
            self.api.stop()
        for http in self.http_triggers.values():
            http.stop()
        # 2. end what is running: in-flight invocations fail at once instead of holding stop()
        for runtime in self.runtimes.values():
            runtime.close()
        # 3. join
        for timer in self.timer_triggers.values():
            timer.stop()
        for queue in self.queue_triggers.values():
            queue.stop()
        self.invoker.stop()
