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
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import CloudCallError

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import RpcRequest
    from mns.queue import Queue
    from oss2 import Bucket

TRANSIENT_CODES = {"Throttling", "Throttling.User", "Throttling.Api", "InternalError",
                   "InternalError.Dispatch", "UnknownError", "ServiceUnavailable",
                   "IdempotentProcessing", "SDK.HttpError"}
PAGE_SIZE = 50  # the largest MaxResults the Describe* APIs accept


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
        return self._client

    def call(self, request: RpcRequest) -> dict[str, Any]:
        from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

        endpoint = self._settings.ecs_endpoint
        if endpoint:
            request.set_endpoint(endpoint.split("://", 1)[-1])
            request.set_protocol_type("http")
        else:
            request.set_protocol_type("https")
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

    def create_command(self, *, name: str, type_: str, content_b64: str, description: str,
                       working_dir: str, timeout: int, client_token: str = "") -> str:
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
        if client_token:
            req.set_ClientToken(client_token)
        return str(self.call(req)["CommandId"])

    def invoke_command(self, *, command_id: str, instance_ids: list[str],
                       client_token: str = "") -> str:
        from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

        req = InvokeCommandRequest()
        req.set_CommandId(command_id)
        req.set_InstanceIds(instance_ids)
        if client_token:
            req.set_ClientToken(client_token)
        return str(self.call(req)["InvokeId"])

    def invocation_results(self, invoke_id: str) -> list[dict[str, Any]]:
        """Every per-instance result of ``invoke_id`` (all pages), Output still Base64."""
        from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
            DescribeInvocationResultsRequest,
        )

        results: list[dict[str, Any]] = []
        token = ""
        while True:
            req = DescribeInvocationResultsRequest()
            req.set_InvokeId(invoke_id)
            req.set_ContentEncoding("Base64")
            req.set_MaxResults(PAGE_SIZE)
            if token:
                req.set_NextToken(token)
            page = self.call(req)["Invocation"]
            results.extend(page["InvocationResults"]["InvocationResult"])
            token = page.get("NextToken") or ""
            if not token:
                return results

    def invocations_of(self, command_id: str) -> list[dict[str, Any]]:
        from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
            DescribeInvocationsRequest,
        )

        found: list[dict[str, Any]] = []
        token = ""
        while True:
            req = DescribeInvocationsRequest()
            req.set_CommandId(command_id)
            req.set_MaxResults(PAGE_SIZE)
            if token:
                req.set_NextToken(token)
            page = self.call(req)
            found.extend(page["Invocations"]["Invocation"])
            token = page.get("NextToken") or ""
            if not token:
                return found

    def delete_command(self, command_id: str) -> None:
        from aliyunsdkecs.request.v20140526.DeleteCommandRequest import DeleteCommandRequest

        req = DeleteCommandRequest()
        req.set_CommandId(command_id)
        self.call(req)


class Queues:
    """MNS queues by name. One ``Account`` per instance: the SDK's connection is not
    thread-safe, and an FC instance handles one request at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._queues: dict[str, Queue] = {}

    def get(self, name: str) -> Queue:
        if name not in self._queues:
            from mns.account import Account

            creds = self._settings.credentials
            account = Account(self._settings.mns_url, creds.access_key_id,
                              creds.access_key_secret, creds.security_token)
            queue = account.get_queue(name)
            queue.set_encoding(False)  # our messages are JSON text; no client-side Base64
            self._queues[name] = queue
        return self._queues[name]

    def send(self, name: str, body: str, delay_seconds: int = 0) -> str:
        from mns.mns_exception import MNSExceptionBase
        from mns.queue import Message

        try:
            sent = self.get(name).send_message(Message(body, delay_seconds=delay_seconds))
        except MNSExceptionBase as exc:
            code = getattr(exc, "type", "MNSError")
            transient = code in TRANSIENT_CODES or code.startswith(("NetWork", "Internal"))
            raise CloudCallError("SendMessage", code, str(getattr(exc, "message", exc)),
                                 transient) from exc
        return str(sent.message_id)


class Results:
    """The results bucket."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._bucket: Bucket | None = None

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
            self._bucket = oss2.Bucket(auth, self._settings.oss_url,
                                       self._settings.results_bucket, region=self._settings.region)
        return self._bucket

    def put(self, key: str, data: bytes, content_type: str) -> None:
        import oss2

        try:
            self.bucket.put_object(key, data, headers={"Content-Type": content_type})
        except oss2.exceptions.OssError as exc:
            code = exc.code or str(exc.status)
            transient = exc.status >= 500 or exc.status < 0 or code in TRANSIENT_CODES
            raise CloudCallError("PutObject", code, exc.message or str(exc), transient) from exc


class Clients:
    """Everything a handler talks to, created lazily from one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ecs = CloudAssistant(settings)
        self.queues = Queues(settings)
        self.results = Results(settings)
