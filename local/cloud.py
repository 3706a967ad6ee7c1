"""The local cloud: emulators for ECS (Cloud Assistant), MNS and OSS, plus the function host.

``LocalCloud(...).start()`` brings everything up on 127.0.0.1, provisions what ``template.yml``
declares (queues, buckets), starts the functions and their triggers, and writes
``endpoints.json`` into the state directory — the contract other tools read:

``ecs``, ``mns``, ``oss`` (base URLs), ``webhook_url``, ``region``, ``access_key_id``,
``access_key_secret``, ``webhook_secret``, ``results_bucket``, ``instances`` (ids of the local
Running Linux instances with an agent), plus ``fc`` (the base URL of Function Compute's invoke
API, for ``fc2.Client(endpoint=...)`` and ``assistflow invoke``), ``request_queue``,
``followup_queue``, ``results_prefix``, ``functions``, ``account_id``, ``state_dir``,
``pid``, ``profile`` (the active profile's name) and ``dashboard_url`` (the local dashboard,
``local.dashboard``).

``profile`` (a ``local.profile.Profile``, a name or a file; default: ``ASSISTFLOW_PROFILE``,
else ``fast``) sets how fast and how strict the cloud is: every emulator's per-call latency
and rate limits (``CallPacing``), and the host's cold-start and EventBridge delivery times.

The ECS and MNS emulators and the function host run on threads of this process; the OSS
emulator, where most of a fan-out's emulator CPU goes, runs in child processes of its own
(``local.emulators.process``; two on a machine of two cores or more, ``processes_for``), so it
does not share their GIL. ``servers[name]`` has each one's ``url``, ``host`` and ``port``; the
in-process ones also their ``app``. ECS stays here: its TaskCompleted events reach the host's
event bus through an in-process sink.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulators.ecs import EcsApp
from local.emulators.keyring import KeyRing
from local.emulators.process import EmulatorProcess, processes_for
from local.emulators.serve import build_app
from local.emulators.server import EmulatorServer
from local.host.host import FunctionHost
from local.host.template import Template
from local.host.trigger import MnsAccess
from local.profile import Profile
from local.server import LoopbackServer
from local.state import LocalKeys, load_or_create_keys, write_private_json

log = logging.getLogger("assistflow.cloud")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yml"
ACCOUNT_ID = "1234567890123456"  # the local account; real ids are 16 digits too


@dataclass
class Ports:
    """Fixed ports, or 0 for a free one (the default)."""

    ecs: int = 0
    mns: int = 0
    oss: int = 0
    http: dict[str, int] = field(default_factory=dict)  # HTTP trigger name -> port
    fc: int = 0  # the FC invoke API
    dashboard: int = 0  # the local dashboard (local.dashboard)

    @classmethod
    def from_env(cls) -> Ports:
        def port(name: str) -> int:
            return int(os.environ.get(f"ASSISTFLOW_{name}_PORT", "0") or 0)

        webhook = port("WEBHOOK")
        return cls(port("ECS"), port("MNS"), port("OSS"), {"webhook": webhook} if webhook else {},
                   port("FC"), port("DASHBOARD"))


class LocalCloud:
    def __init__(self, state_dir: Path, template: Path = DEFAULT_TEMPLATE,
                 ports: Ports | None = None, region: str = "cn-hangzhou",
                 parameters: dict[str, Any] | None = None, max_instances: int = 4,
                 profile: Profile | str | Path | None = None) -> None:
        self.state_dir = state_dir
        self.profile = Profile.resolve(profile)
        self.template_path = template
        self.ports = ports or Ports()
        self.region = region
        self.parameters = dict(parameters or {})
        self.max_instances = max_instances
        self.keys: LocalKeys | None = None
        self.servers: dict[str, EmulatorServer | EmulatorProcess] = {}
        self.host: FunctionHost | None = None
        self.template: Template | None = None
        self.endpoints: dict[str, Any] = {}
        self.dashboard: LoopbackServer | None = None

    @property
    def endpoints_path(self) -> Path:
        return self.state_dir / "endpoints.json"

    def start(self) -> dict[str, Any]:
        self.endpoints_path.unlink(missing_ok=True)  # it exists only while we are ready
        keys = self.keys = load_or_create_keys(self.state_dir)
        keyring = keys.keyring()
        try:
            # The child imports while this process goes on (its port listens already).
            oss = self.servers["oss"] = EmulatorProcess(
                "oss", self.state_dir, port=self.ports.oss, region=self.region,
                account_id=ACCOUNT_ID, profile=self.profile,
                processes=processes_for("oss", self.profile)).spawn()
            oss.attach(keyring)  # the functions' STS keys, bound by the host, reach it too
            self._serve("ecs", keyring, self.ports.ecs)
            self._serve("mns", keyring, self.ports.mns)
            template = self.template = self._load_template()
            oss.wait_ready()  # it serves (or could not start: say why) before we call it
            self._provision(template)
            # The functions' ALIBABA_CLOUD_* credentials are their roles' (FunctionHost binds
            # one STS pair per function to its role's policies); the pollers use the owner's.
            system_env = {"FC_REGION": self.region, "FC_ACCOUNT_ID": ACCOUNT_ID}
            host_dir = self.state_dir / "host"
            host_dir.mkdir(exist_ok=True)
            self.host = FunctionHost(
                template, system_env,
                MnsAccess(self.servers["mns"].url, keys.access_key_id, keys.access_key_secret),
                record_dir=host_dir, max_instances=self.max_instances, http_ports=self.ports.http,
                keyring=keyring, api_port=self.ports.fc, profile=self.profile)
            self.host.start()
            # Cloud Assistant publishes TaskCompleted to the default bus, as on Alibaba Cloud.
            self._ecs_app().model.events.sink = self.host.bus.publish
            if self._ecs_app().model.agent.isolated():  # else sandbox.py warns what is not
                log.info("process instances run their scripts in Linux namespaces, in their "
                         "instance roots only")
        except BaseException:
            self.stop()
            raise
        self.endpoints = self._describe(template, keys)
        try:
            self.endpoints["dashboard_url"] = self._dashboard()
        except BaseException:  # e.g. ASSISTFLOW_DASHBOARD_PORT taken: nothing left running
            self.stop()
            raise
        write_private_json(self.endpoints_path, self.endpoints)
        return self.endpoints

    def _serve(self, service: str, keyring: KeyRing, port: int) -> None:
        app = build_app(service, keyring, self.state_dir, region=self.region,
                        account_id=ACCOUNT_ID, profile=self.profile)
        self.servers[service] = EmulatorServer(app, port).start()

    def _load_template(self) -> Template:
        overrides: dict[str, Any] = {
            "WebhookSecret": self.keys.webhook_secret if self.keys else "",
            "EcsEndpoint": self.servers["ecs"].url,
            "MnsEndpoint": self.servers["mns"].url,
            "OssEndpoint": self.servers["oss"].url,
            # Off in the template (a real account must name its own fleet first); on here,
            # where its default payload targets the local instances: `make run` shows it at work.
            "MaintenanceEnabled": True,
            # A developer runs a Notify.Url receiver on 127.0.0.1; nothing else that is not
            # public is allowed, as on Alibaba Cloud by default (shared.notify_url).
            "NotifyAllowedHosts": "127.0.0.1",
        }
        overrides.update(self.parameters)
        import yaml

        declared = (yaml.safe_load(self.template_path.read_text()).get("Parameters") or {})
        overrides = {k: v for k, v in overrides.items()
                     if k in declared or k in self.parameters}
        return Template.load(self.template_path, overrides, self.region, ACCOUNT_ID)

    def _provision(self, template: Template) -> None:
        """Create the queues and buckets the template declares, through the real SDKs."""
        import oss2
        from mns.account import Account
        from mns.queue import QueueMeta

        assert self.keys is not None
        account = Account(self.servers["mns"].url, self.keys.access_key_id,
                          self.keys.access_key_secret)
        for decl in template.queues():
            meta = QueueMeta()
            props = decl.properties
            if "VisibilityTimeout" in props:
                meta.set_visibilitytimeout(int(props["VisibilityTimeout"]))
            if "MessageRetentionPeriod" in props:
                meta.set_message_retention_period(int(props["MessageRetentionPeriod"]))
            if "DelaySeconds" in props:
                meta.set_delay_seconds(int(props["DelaySeconds"]))
            if "MaximumMessageSize" in props:
                meta.set_maximum_message_size(int(props["MaximumMessageSize"]))
            if "PollingWaitSeconds" in props:
                meta.set_polling_wait_seconds(int(props["PollingWaitSeconds"]))
            queue = account.get_queue(decl.name)
            try:
                queue.create(meta)
            except Exception as exc:  # an existing queue keeps its messages and attributes
                if getattr(exc, "type", "") != "QueueAlreadyExist":
                    raise
        auth = oss2.Auth(self.keys.access_key_id, self.keys.access_key_secret)
        for name in template.buckets():
            bucket = oss2.Bucket(auth, self.servers["oss"].url, name)
            try:
                bucket.get_bucket_info()
            except oss2.exceptions.NoSuchBucket:
                bucket.create_bucket(oss2.BUCKET_ACL_PRIVATE)

    def _describe(self, template: Template, keys: LocalKeys) -> dict[str, Any]:
        outputs = template.resolved_outputs()
        assert self.host is not None
        webhook = outputs.get("WebhookUrl") or next(
            (t.attributes()["UrlInternet"] for t in self.host.triggers.values()
             if "UrlInternet" in t.attributes()), "")
        instances = sorted(i.InstanceId for i in self._ecs_app().model.instances.values()
                           if i.ready and i.OSType == "linux")
        queues = template.queues()
        return {
            "ecs": self.servers["ecs"].url,
            "mns": self.servers["mns"].url,
            "oss": self.servers["oss"].url,
            "fc": self.host.api_url,
            "webhook_url": webhook,
            "region": self.region,
            "account_id": ACCOUNT_ID,
            "access_key_id": keys.access_key_id,
            "access_key_secret": keys.access_key_secret,
            "webhook_secret": keys.webhook_secret,
            "results_bucket": outputs.get("ResultsBucket") or template.parameters.get(
                "ResultsBucketName", ""),
            "results_prefix": template.parameters.get("ResultsPrefix", "results"),
            "followup_queue": outputs.get("FollowUpQueue") or (queues[0].name if queues else ""),
            "request_queue": outputs.get("RequestQueue", ""),
            "dispatch_queue": outputs.get("DispatchQueue", ""),
            "instances": instances,
            "functions": sorted(self.host.runtimes),
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "profile": self.profile.name,
        }

    def _dashboard(self) -> str:
        """Serve the dashboard (``local.dashboard``) with the owner's keys, like the CLI."""
        from local.cli.common import local_settings
        from local.dashboard import serve
        from shared.clients import Clients

        self.dashboard = serve(Clients(local_settings(self.endpoints)), self.ports.dashboard)
        return self.dashboard.url + "/"

    def _ecs_app(self) -> EcsApp:
        server = self.servers["ecs"]
        assert isinstance(server, EmulatorServer) and isinstance(server.app, EcsApp)
        return server.app

    def stop(self) -> None:
        self.endpoints_path.unlink(missing_ok=True)
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
        if "ecs" in self.servers:
            self._ecs_app().model.events.sink = None
        if self.host is not None:
            self.host.stop()
            self.host = None
        for name in ("oss", "mns", "ecs"):
            server = self.servers.pop(name, None)
            if server is not None:
                server.stop()
