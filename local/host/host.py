"""The function host: runs the functions and triggers a ``Template`` declares, as FC 3.0 would."""

from __future__ import annotations

import logging
from pathlib import Path

from local.host.http_trigger import HttpTrigger
from local.host.queue_trigger import MnsAccess, QueueTrigger
from local.host.runtime import FunctionRuntime, FunctionSpec
from local.host.template import Template, TemplateError

log = logging.getLogger("assistflow.host")


class FunctionHost:
    def __init__(self, template: Template, system_env: dict[str, str], mns: MnsAccess,
                 record_dir: Path | None = None, max_instances: int = 4,
                 http_ports: dict[str, int] | None = None) -> None:
        self.template = template
        self.system_env = system_env
        self.mns = mns
        self.record = (record_dir / "invocations.jsonl") if record_dir else None
        self.max_instances = max_instances
        self.http_ports = http_ports or {}
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.http_triggers: dict[str, HttpTrigger] = {}
        self.queue_triggers: dict[str, QueueTrigger] = {}

    def start(self) -> None:
        tpl = self.template
        decls = tpl.triggers()
        # HTTP triggers bind first: their URLs are attributes other values may refer to.
        pending_http = []
        for decl in decls:
            if decl.type == "http":
                trigger = HttpTrigger(decl.name, decl.function, decl.config, tpl.region,
                                      tpl.account_id, self.http_ports.get(decl.name, 0))
                tpl.attributes[(decl.logical_id, "UrlInternet")] = trigger.url
                tpl.attributes[(decl.logical_id, "UrlIntranet")] = trigger.url
                tpl.attributes[(decl.logical_id, "TriggerId")] = trigger.trigger_id
                pending_http.append((decl, trigger))
        for fn in tpl.functions():
            spec = FunctionSpec(fn.name, fn.handler, fn.code_dir, fn.timeout, fn.memory,
                                fn.environment, fn.runtime)
            self.runtimes[fn.name] = FunctionRuntime(spec, self.system_env, self.max_instances,
                                                     self.record)
        for decl, trigger in pending_http:
            trigger.runtime = self._runtime(decl.function, decl.logical_id)
            self.http_triggers[decl.name] = trigger
        for decl in decls:
            if decl.type == "eventbridge":
                self.queue_triggers[decl.name] = QueueTrigger(
                    decl.name, self._runtime(decl.function, decl.logical_id), decl.config,
                    self.mns, tpl.region, tpl.account_id)
            elif decl.type != "http":
                log.warning("trigger %s: type %s is not emulated yet", decl.name, decl.type)
        for http in self.http_triggers.values():
            http.start()
        for queue in self.queue_triggers.values():
            queue.start()

    def _runtime(self, function: str, trigger: str) -> FunctionRuntime:
        try:
            return self.runtimes[function]
        except KeyError:
            raise TemplateError(f"trigger {trigger}: function {function!r} is not declared") \
                from None

    def stop(self) -> None:
        for http in self.http_triggers.values():
            http.stop()
        for queue in self.queue_triggers.values():
            queue.stop()
        for runtime in self.runtimes.values():
            runtime.close()
