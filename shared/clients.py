"""Clients for Cloud Assistant (ECS RPC), MNS and OSS, built from ``Settings``.

The SDKs are imported only when a client is first used, so a handler pays only for the SDKs it
needs (oss2 alone costs ~0.3 s of import). Calls to the real cloud use HTTPS: aliyunsdkcore
defaults to plain HTTP (research cloud-assistant-api.md §2.2), so the protocol is set
explicitly. Only an explicit ``ASSISTFLOW_*_ENDPOINT`` (the local cloud on loopback) is plain
HTTP.

Every SDK error becomes a ``CloudCallError`` whose ``transient`` flag says whether trying again
later may help (throttling, 5xx, network) or not (bad instance id, bad parameter).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import CloudCallError
from shared.retry import ATTEMPTS, retrying

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import RpcRequest
    from mns.queue import Queue
    from oss2 import Bucket

TRANSIENT_CODES = {"Throttling", "Throttling.User", "Throttling.Api", "InternalError",
                   "InternalError.Dispatch", "UnknownError", "ServiceUnavailable",
                   "IdempotentProcessing", "SDK.HttpError"}
PAGE_SIZE = 50  # the largest MaxResults the Describe* APIs accept
SDK_RETRIED = {"DescribeInstances", "DescribeInvocations", "DescribeInvocationResults",
               "DescribeCommands", "DescribeCloudAssistantStatus"}


class CloudAssistant:
    """The Cloud Assistant calls assistflow makes, typed, with errors normalised."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AcsClient | None = None

    @property
    def client(self) -> AcsClient:
        if self._client is None:
            from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
            from aliyunsdkcore.client import AcsClient

            creds = self._settings.credentials
            credential: Any = (
                StsTokenCredential(creds.access_key_id, creds.access_key_secret,
                                   creds.security_token)
                if creds.security_token
                else AccessKeyCredential(creds.access_key_id, creds.access_key_secret)
            )
            # On loopback, a proxy from the environment would break every call (aliyunsdkcore
            # ignores NO_PROXY; research local-emulation.md §3.5).
            proxy = {"http": None, "https": None} if self._settings.ecs_endpoint else None
            self._client = AcsClient(region_id=self._settings.region, credential=credential,
                                     proxy=proxy)
            # aliyunsdkcore logs every refused call at ERROR (expected ones too, like deleting
            # a command another collector already deleted); CloudCallError reports them here.
            logging.getLogger("aliyunsdkcore.client").setLevel(logging.CRITICAL)
        return self._client

    def call(self, request: RpcRequest) -> dict[str, Any]:
        endpoint = self._settings.ecs_endpoint
        if endpoint:
            request.set_endpoint(endpoint.split("://", 1)[-1])
            request.set_protocol_type("http")
        else:
            request.set_protocol_type("https")
        # aliyunsdkcore already retries its read APIs (3 times, with backoff); the others carry
        # a ClientToken or are harmless to repeat, so a short retry here is safe.
        sdk_retries = request.get_action_name() in SDK_RETRIED
        return retrying(lambda: self._call_once(request), attempts=1 if sdk_retries else ATTEMPTS)

    def _call_once(self, request: RpcRequest) -> dict[str, Any]:
        from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

        action = request.get_action_name()
        try:
            body = self.client.do_action_with_exception(request)
        except ServerException as exc:
            code = exc.get_error_code()
            transient = code in TRANSIENT_CODES or (exc.get_http_status() or 0) >= 500
            raise CloudCallError(action, code, exc.get_error_msg(), transient) from exc
        except ClientException as exc:
            code = exc.get_error_code()
            raise CloudCallError(action, code, exc.get_error_msg(),
                                 code in TRANSIENT_CODES) from exc
        result: dict[str, Any] = json.loads(body)
        return result

    def create_command(self, *, name: str, type_: str, content_b64: str, description: str = "",
                       working_dir: str = "", timeout: int = 60, enable_parameter: bool = False,
                       client_token: str = "") -> str:
        from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest

        req = CreateCommandRequest()
        req.set_Name(name)
        req.set_Type(type_)
        req.set_CommandContent(content_b64)
        req.set_ContentEncoding("Base64")
        req.set_Timeout(timeout)
        if description:
            req.set_Description(description)
        if working_dir:
            req.set_WorkingDir(working_dir)
        if enable_parameter:
            req.set_EnableParameter(True)
        if client_token:
            req.set_ClientToken(client_token)
        return str(self.call(req)["CommandId"])

    def invoke_command(self, *, command_id: str, instance_ids: list[str], client_token: str = "",
                       parameters: dict[str, str] | None = None, timeout: int | None = None,
                       working_dir: str = "", username: str = "", repeat_mode: str = "",
                       frequency: str = "") -> str:
        from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

        req = InvokeCommandRequest()
        req.set_CommandId(command_id)
        req.set_InstanceIds(instance_ids)
        if parameters:
            req.set_Parameters(json.dumps(parameters))  # a dict would be sent as its repr
        if timeout is not None:
            req.set_Timeout(timeout)
        if working_dir:
            req.set_WorkingDir(working_dir)
        if username:
            req.set_Username(username)
        if repeat_mode and repeat_mode != "Once":
            req.set_RepeatMode(repeat_mode)
        if frequency:
            req.set_Frequency(frequency)
        if client_token:
            req.set_ClientToken(client_token)
        return str(self.call(req)["InvokeId"])

    def describe_command(self, command_id: str) -> dict[str, Any]:
        """The saved command ``command_id`` (Type, Timeout, …); ``InvalidCmdId.NotFound`` if none."""
        from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest

        req = DescribeCommandsRequest()
        req.set_CommandId(command_id)
        commands = self.call(req)["Commands"]["Command"]
        if not commands:
            raise CloudCallError("DescribeCommands", "InvalidCmdId.NotFound",
                                 f"command {command_id} does not exist in this region")
        return dict(commands[0])

    def describe_instances(self, instance_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Status and OS of each existing instance among ``instance_ids`` (100 per call)."""
        from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import (
            DescribeInstancesRequest,
        )

        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(instance_ids), 100):
            chunk = instance_ids[start:start + 100]
            req = DescribeInstancesRequest()
            req.set_InstanceIds(json.dumps(list(chunk)))
            req.set_MaxResults(100)
            for item in self.call(req)["Instances"]["Instance"]:
                found[item["InstanceId"]] = item
        return found

    def cloud_assistant_status(self, instance_ids: tuple[str, ...]) -> dict[str, str]:
        """``"true"`` for each instance whose agent sent a heartbeat recently (50 per call)."""
        from aliyunsdkecs.request.v20140526.DescribeCloudAssistantStatusRequest import (
            DescribeCloudAssistantStatusRequest,
        )

        status: dict[str, str] = {}
        for start in range(0, len(instance_ids), 50):
            req = DescribeCloudAssistantStatusRequest()
            req.set_InstanceIds(list(instance_ids[start:start + 50]))
            body = self.call(req)["InstanceCloudAssistantStatusSet"]
            for item in body["InstanceCloudAssistantStatus"]:
                status[item["InstanceId"]] = str(item.get("CloudAssistantStatus", "false")).lower()
        return status

    def invocation_results(self, invoke_id: str, include_history: bool = False,
                           instance_id: str = "") -> list[dict[str, Any]]:
        """Every per-instance result of ``invoke_id`` (all pages), Output still Base64.

        ``include_history`` returns every run of a periodic invocation, not just the latest.
        """
        from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
            DescribeInvocationResultsRequest,
        )

        def page() -> RpcRequest:
            req = DescribeInvocationResultsRequest()
            req.set_InvokeId(invoke_id)
            req.set_ContentEncoding("Base64")
            if include_history:
                req.set_IncludeHistory(True)
            if instance_id:
                req.set_InstanceId(instance_id)
            return req

        return self._all_pages(page, "InvocationResults", "InvocationResult", within="Invocation")

    def _all_pages(self, make: Callable[[], RpcRequest], wrapper: str, item: str,
                   within: str = "") -> list[dict[str, Any]]:
        """Every item of a MaxResults/NextToken listing: ``[within][wrapper][item]`` of each
        page, whose ``NextToken`` sits beside ``wrapper``."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            req = make()
            req.set_MaxResults(PAGE_SIZE)
            if token:
                req.set_NextToken(token)
            page: Any = self.call(req)
            if within:
                page = page[within]
            items.extend(page[wrapper][item])
            token = page.get("NextToken") or ""
            if not token:
                return items

    def invocation_status(self, invoke_id: str) -> str:
        """The overall ``InvocationStatus`` of ``invoke_id`` (Running, Success, Stopped, …)."""
        from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
            DescribeInvocationsRequest,
        )

        req = DescribeInvocationsRequest()
        req.set_InvokeId(invoke_id)
        found = self.call(req)["Invocations"]["Invocation"]
        if not found:
            raise CloudCallError("DescribeInvocations", "InvalidInvokeId.NotFound",
                                 f"invocation {invoke_id} does not exist")
        return str(found[0].get("InvocationStatus", ""))

    def invocations_of(self, command_id: str) -> list[dict[str, Any]]:
        from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
            DescribeInvocationsRequest,
        )

        def page() -> RpcRequest:
            req = DescribeInvocationsRequest()
            req.set_CommandId(command_id)
            return req

        return self._all_pages(page, "Invocations", "Invocation")

    def delete_command(self, command_id: str) -> None:
        from aliyunsdkecs.request.v20140526.DeleteCommandRequest import DeleteCommandRequest

        req = DeleteCommandRequest()
        req.set_CommandId(command_id)
        self.call(req)


class Queues:
    """MNS queues and topics by name. One ``Account`` per function instance: the SDK's
    connection is not thread-safe, and an FC instance handles one request at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._account: Any = None
        self._queues: dict[str, Queue] = {}

    @property
    def account(self) -> Any:
        if self._account is None:
            from mns.account import Account

            creds = self._settings.credentials
            self._account = Account(self._settings.mns_url, creds.access_key_id,
                                    creds.access_key_secret, creds.security_token)
        return self._account

    def get(self, name: str) -> Queue:
        if name not in self._queues:
            queue = self.account.get_queue(name)
            queue.set_encoding(False)  # our messages are JSON text; no client-side Base64
            self._queues[name] = queue
        return self._queues[name]

    def send(self, name: str, body: str, delay_seconds: int = 0) -> str:
        from mns.queue import Message

        sent = self._call("SendMessage",
                          lambda: self.get(name).send_message(Message(body, delay_seconds)))
        return str(sent.message_id)

    def publish(self, topic: str, body: str) -> str:
        from mns.topic import TopicMessage

        sent = self._call("PublishMessage",
                          lambda: self.account.get_topic(topic).publish_message(TopicMessage(body)))
        return str(sent.message_id)

    @staticmethod
    def _call(api: str, operation: Any) -> Any:
        """``operation`` with MNS errors as ``CloudCallError``, retried when transient (a
        repeated send at worst duplicates a message, which every consumer here tolerates)."""
        from mns.mns_exception import MNSExceptionBase

        def once() -> Any:
            try:
                return operation()
            except MNSExceptionBase as exc:
                code = getattr(exc, "type", "MNSError")
                transient = code in TRANSIENT_CODES or code.startswith(("NetWork", "Internal"))
                raise CloudCallError(api, code, str(getattr(exc, "message", exc)),
                                     transient) from exc

        return retrying(once)


class Results:
    """A results bucket (the deployment's, unless a request's ``Output`` names another)."""

    def __init__(self, settings: Settings, bucket_name: str = "") -> None:
        self._settings = settings
        self.name = bucket_name or settings.results_bucket
        self._bucket: Bucket | None = None
        self._others: dict[str, Results] = {}

    def named(self, bucket_name: str) -> Results:
        if not bucket_name or bucket_name == self.name:
            return self
        if bucket_name not in self._others:
            self._others[bucket_name] = Results(self._settings, bucket_name)
        return self._others[bucket_name]

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            import oss2

            creds = self._settings.credentials
            auth: Any = (
                oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token,
                             auth_version=oss2.AUTH_VERSION_4)
                if creds.security_token
                else oss2.AuthV4(creds.access_key_id, creds.access_key_secret)
            )
            session = oss2.Session()
            if self._settings.oss_endpoint:
                # The local cloud on loopback: no proxy applies, so spare requests its per-call
                # look through the proxy environment (13 % of a collector look, measured).
                session.session.trust_env = False
            self._bucket = oss2.Bucket(auth, self._settings.oss_url, self.name,
                                       region=self._settings.region, session=session)
            # oss2 logs every refused call at INFO (a 409 on a claim is an answer, not news).
            logging.getLogger("oss2").setLevel(logging.WARNING)
        return self._bucket

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write an object (retried when transient: the same bytes again are harmless)."""
        self._call("PutObject", lambda: self.bucket.put_object(
            key, data, headers={"Content-Type": content_type}))

    def claim(self, key: str) -> bool:
        """Create the empty object ``key`` only if it is absent: True if this call created it,
        False if it was already there (claimed before, by this or any other function instance).

        With ``x-oss-forbid-overwrite: true`` OSS refuses to replace an existing object and
        answers 409 ``FileAlreadyExists``
        (https://help.aliyun.com/en/oss/user-guide/0026-00000002). A failed claim is not
        retried: had the first attempt landed, the retry would see its own claim as another's.
        """
        headers = {"Content-Type": "application/octet-stream", "x-oss-forbid-overwrite": "true"}
        try:
            self._call("PutObject", lambda: self.bucket.put_object(key, b"", headers=headers),
                       attempts=1)
        except CloudCallError as exc:
            if exc.error_code == "FileAlreadyExists":
                return False
            raise
        return True

    def release(self, key: str) -> None:
        """Give up a claim (its work was not done), so the next attempt can claim it again."""
        self.delete(key)

    def delete(self, key: str) -> None:
        self._call("DeleteObject", lambda: self.bucket.delete_object(key))

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        try:
            return bytes(self._call("GetObject", lambda: self.bucket.get_object(key).read()))
        except CloudCallError as exc:
            if exc.error_code == "NoSuchKey":
                return None
            raise

    def exists(self, key: str) -> bool:
        return bool(self._call("HeadObject", lambda: self.bucket.object_exists(key)))

    @staticmethod
    def _call(api: str, operation: Any, attempts: int = ATTEMPTS) -> Any:
        """``operation`` with OSS errors as ``CloudCallError``, retried when transient."""
        import oss2

        def once() -> Any:
            try:
                return operation()
            except oss2.exceptions.OssError as exc:
                code = exc.code or str(exc.status)
                transient = exc.status >= 500 or exc.status < 0 or code in TRANSIENT_CODES
                raise CloudCallError(api, code, exc.message or str(exc), transient) from exc

        return retrying(once, attempts)


class Clients:
    """Everything a handler talks to, created lazily from one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ecs = CloudAssistant(settings)
        self.queues = Queues(settings)
        self.results = Results(settings)
        self._regions: dict[str, CloudAssistant] = {settings.region: self.ecs}

    def ecs_in(self, region: str) -> CloudAssistant:
        """Cloud Assistant of ``region`` (a request's ``RegionId``); the default otherwise."""
        region = region or self.settings.region
        if region not in self._regions:
            self._regions[region] = CloudAssistant(self.settings.for_region(region))
        return self._regions[region]


_cached: Clients | None = None


def default_clients() -> Clients:
    """Clients for this function instance's environment, built once and reused while warm."""
    global _cached
    settings = Settings.from_env()
    if _cached is None or _cached.settings != settings:
        _cached = Clients(settings)
    return _cached
