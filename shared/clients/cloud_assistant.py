"""Cloud Assistant through the ECS RPC API (aliyun-python-sdk-ecs on aliyunsdkcore).

Calls to the real cloud use HTTPS: aliyunsdkcore defaults to plain HTTP
(aliyun-python-sdk-core 2.16.1, ``aliyunsdkcore/request.py``: ``_default_protocol_type =
protocol_type.HTTP``), so the protocol is set on every request. Only an explicit
``ASSISTFLOW_ECS_ENDPOINT`` (the local cloud on loopback) is plain HTTP.

The SDK's own retries are off (``auto_retry=False``): it would retry the Describe* calls up to
three times with ``time.sleep`` between them (``aliyunsdkcore/client.py``
``_handle_retry_and_timeout``), billed and outside any budget. ``shared.retry`` retries every
call instead, within the invocation's patience.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.errors import TRANSIENT_CODES, CloudCallError
from shared.parallel import run_each
from shared.retry import retrying

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import RpcRequest

PAGE_SIZE = 50  # the largest MaxResults the Describe* APIs accept
DESCRIBE_INSTANCES_MAX = 100  # InstanceIds per DescribeInstances call
STATUS_MAX = 50  # InstanceId.N per DescribeCloudAssistantStatus call
# Pre-flight of 10,000 instances is 100 DescribeInstances and 200 DescribeCloudAssistantStatus
# calls before the webhook can answer, one DescribeInstances then its two status calls per
# 100 instances: these lookups run 50 side by side (the connection pool sized to match), not
# the invocation's default 8. Measured under the local ``realistic`` profile (ECS ~120 ms, 5 %
# of calls ~0.5 s): 3.4 s of lookups with 20 side by side, 1.8-2.0 s with 50. The 300 calls
# stay far inside the per-minute quota of each action (1000/60 s), however fast they go.
LOOKUP_WORKERS = 50
FILTER_LIMIT = 1000  # resources a Tag.N / ResourceGroupId filter of DescribeInstances covers


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

            from shared.clients.rpc_signing import install

            install()  # the same signed URLs, without the SDK's per-byte encoding

            creds = self._settings.credentials
            credential: Any = (
                StsTokenCredential(creds.access_key_id, creds.access_key_secret,
                                   creds.security_token)
                if creds.security_token
                else AccessKeyCredential(creds.access_key_id, creds.access_key_secret)
            )
            # On loopback, a proxy from the environment would break every call: with
            # proxy=None aliyunsdkcore hands HTTP(S)_PROXY to requests itself, so NO_PROXY is
            # not honoured (aliyun-python-sdk-core 2.16.1, ``aliyunsdkcore/http/http_response.py``).
            proxy = {"http": None, "https": None} if self._settings.ecs_endpoint else None
            self._client = AcsClient(region_id=self._settings.region, credential=credential,
                                     proxy=proxy, auto_retry=False, pool_size=LOOKUP_WORKERS)
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
        # Reads are harmless to repeat and every write carries a ClientToken (or is a delete,
        # whose repeat answers NotFound), so a transient failure may be retried.
        return retrying(lambda: self._call_once(request))

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

    def _pages(self, make: Callable[[], RpcRequest], wrapper: str, item: str,
               within: str = "", limit: int | None = None) -> list[dict[str, Any]]:
        """The items of a MaxResults/NextToken listing — every page, or the first ``limit``
        items: ``[within][wrapper][item]`` of each page, whose ``NextToken`` sits beside
        ``wrapper``."""
        items: list[dict[str, Any]] = []
        for page in self._page_by_page(make, wrapper, item, within, limit):
            items.extend(page)
        return items if limit is None else items[:limit]

    def _page_by_page(self, make: Callable[[], RpcRequest], wrapper: str, item: str,
                      within: str = "", limit: int | None = None
                      ) -> Iterator[list[dict[str, Any]]]:
        """The pages of a MaxResults/NextToken listing, each fetched when the one before was
        taken (``_pages``)."""
        taken = 0
        token = ""
        while limit is None or taken < limit:
            req = make()
            req.set_MaxResults(PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - taken))
            if token:
                req.set_NextToken(token)
            page: Any = self.call(req)
            if within:
                page = page[within]
            items = page[wrapper][item]
            taken += len(items)
            yield items
            token = page.get("NextToken") or ""
            if not token:
                break

    # -- commands --------------------------------------------------------------------------

    def run_command(self, *, name: str, type_: str, content_b64: str, instance_ids: list[str],
                    client_token: str, description: str = "", working_dir: str = "",
                    timeout: int = 60, enable_parameter: bool = False,
                    parameters: dict[str, str] | None = None, username: str = "",
                    repeat_mode: str = "", frequency: str = "") -> tuple[str, str]:
        """RunCommand: create the command, invoke it and let Cloud Assistant delete it when
        the invocation is over (``KeepCommand`` false: it counts against no command quota) —
        one call instead of CreateCommand + InvokeCommand + DeleteCommand. (CommandId,
        InvokeId). The content is sent Base64 (RunCommand's default encoding is PlainText:
        https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-runcommand).
        """
        from aliyunsdkecs.request.v20140526.RunCommandRequest import RunCommandRequest

        req = _given(RunCommandRequest(), Name=name, Type=type_, CommandContent=content_b64,
                     ContentEncoding="Base64", Timeout=timeout, Description=description,
                     WorkingDir=working_dir, EnableParameter=enable_parameter,
                     Parameters=json.dumps(parameters) if parameters else "",
                     InstanceIds=instance_ids, Username=username,
                     RepeatMode="" if repeat_mode == "Once" else repeat_mode,
                     Frequency=frequency, KeepCommand=False, ClientToken=client_token)
        answer = self.call(req)
        return str(answer["CommandId"]), str(answer["InvokeId"])

    def create_command(self, *, name: str, type_: str, content_b64: str, description: str = "",
                       working_dir: str = "", timeout: int = 60, enable_parameter: bool = False,
                       client_token: str = "") -> str:
        from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest

        req = _given(CreateCommandRequest(), Name=name, Type=type_, CommandContent=content_b64,
                     ContentEncoding="Base64", Timeout=timeout, Description=description,
                     WorkingDir=working_dir, EnableParameter=enable_parameter,
                     ClientToken=client_token)
        return str(self.call(req)["CommandId"])

    def describe_commands(self, *, command_id: str = "", name: str = "", type_: str = "",
                          limit: int | None = None) -> list[dict[str, Any]]:
        """Saved commands, newest first as the API returns them (every page, or ``limit``)."""
        from aliyunsdkecs.request.v20140526.DescribeCommandsRequest import DescribeCommandsRequest

        def page() -> RpcRequest:
            return _given(DescribeCommandsRequest(), CommandId=command_id, Name=name, Type=type_)

        return self._pages(page, "Commands", "Command", limit=limit)

    def describe_command(self, command_id: str) -> dict[str, Any]:
        """The saved command ``command_id`` (Type, Timeout, …); ``InvalidCmdId.NotFound`` if none."""
        found = self.describe_commands(command_id=command_id, limit=1)
        if not found:
            raise CloudCallError("DescribeCommands", "InvalidCmdId.NotFound",
                                 f"command {command_id} does not exist in this region")
        return dict(found[0])

    def modify_command(self, command_id: str, *, name: str | None = None,
                       description: str | None = None, timeout: int | None = None,
                       working_dir: str | None = None) -> None:
        """Change what is given (None leaves a field as it is)."""
        from aliyunsdkecs.request.v20140526.ModifyCommandRequest import ModifyCommandRequest

        req = ModifyCommandRequest()
        req.set_CommandId(command_id)
        for field, value in (("Name", name), ("Description", description),
                             ("Timeout", timeout), ("WorkingDir", working_dir)):
            if value is not None:  # "" is a value here: it clears the field
                getattr(req, f"set_{field}")(value)
        self.call(req)

    def delete_command(self, command_id: str) -> None:
        from aliyunsdkecs.request.v20140526.DeleteCommandRequest import DeleteCommandRequest

        self.call(_given(DeleteCommandRequest(), CommandId=command_id))

    # -- instances -------------------------------------------------------------------------

    def describe_instances(self, instance_ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Status and OS of each existing instance among ``instance_ids`` (100 per call, the
        calls side by side)."""
        from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import (
            DescribeInstancesRequest,
        )

        def chunk(ids: tuple[str, ...]) -> list[dict[str, Any]]:
            req = DescribeInstancesRequest()
            req.set_InstanceIds(json.dumps(list(ids)))
            req.set_MaxResults(DESCRIBE_INSTANCES_MAX)
            return list(self.call(req)["Instances"]["Instance"])

        pages = run_each(chunk, _chunks(instance_ids, DESCRIBE_INSTANCES_MAX), LOOKUP_WORKERS)
        return {item["InstanceId"]: item for page in pages for item in page}

    def group_listing(self, resource_group_id: str) -> list[dict[str, Any]]:
        """DescribeInstances filtered by ``resource_group_id``, every page via NextToken, 100 a
        page (its largest MaxResults: alibabacloud-ecs20140526 7.11.8). The filter covers at
        most 1,000 instances ("the number of resources cannot exceed 1,000"), so a listing of
        ``FILTER_LIMIT`` is inconclusive (``shared.targets``)."""
        from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import (
            DescribeInstancesRequest,
        )

        found: list[dict[str, Any]] = []
        token = ""
        while True:
            req = _given(DescribeInstancesRequest(), ResourceGroupId=resource_group_id,
                         MaxResults=DESCRIBE_INSTANCES_MAX, NextToken=token)
            page = self.call(req)
            found.extend(page["Instances"]["Instance"])
            token = page.get("NextToken") or ""
            if not token:
                return found

    def instance_page(self, number: int) -> tuple[list[dict[str, Any]], int]:
        """Page ``number`` of every instance of the region, 100 a page (PageSize's largest),
        and the TotalCount the page states (valid with PageNumber / PageSize paging, unlike a
        NextToken listing's: the API reference,
        https://www.alibabacloud.com/help/en/ecs/developer-reference/api-describeinstances).
        Pages are independent, so they can be read side by side."""
        from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import (
            DescribeInstancesRequest,
        )

        page = self.call(_given(DescribeInstancesRequest(), PageNumber=number,
                                PageSize=DESCRIBE_INSTANCES_MAX))
        return list(page["Instances"]["Instance"]), int(page.get("TotalCount") or 0)

    def tag_page(self, tags: tuple[tuple[str, str], ...], token: str = ""
                 ) -> tuple[list[str], str]:
        """One page of ListTagResources for instances carrying every tag of ``tags`` (or, with
        the one key ``acs:rm:rgId``, in that resource group): the ResourceIds of its rows, in
        order, and the next page's token ("": the last). The API answers one row per
        (resource, tag), so a resource may come on several rows and pages, and it takes no page
        size (https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-listtagresources;
        ``ListTagResourcesRequest``, aliyun-python-sdk-ecs 4.24.83)."""
        from aliyunsdkecs.request.v20140526.ListTagResourcesRequest import (
            ListTagResourcesRequest,
        )

        page = self.call(_given(ListTagResourcesRequest(), ResourceType="instance",
                                NextToken=token,
                                Tags=[{"Key": key, "Value": value} for key, value in tags]))
        return ([str(row["ResourceId"]) for row in page["TagResources"]["TagResource"]],
                str(page.get("NextToken") or ""))

    def cloud_assistant_status(self, instance_ids: tuple[str, ...]) -> dict[str, str]:
        """``"true"`` for each instance whose agent sent a heartbeat recently (50 per call, the
        calls side by side)."""
        from aliyunsdkecs.request.v20140526.DescribeCloudAssistantStatusRequest import (
            DescribeCloudAssistantStatusRequest,
        )

        def chunk(ids: tuple[str, ...]) -> list[dict[str, Any]]:
            req = DescribeCloudAssistantStatusRequest()
            req.set_InstanceIds(list(ids))
            body = self.call(req)["InstanceCloudAssistantStatusSet"]
            return list(body["InstanceCloudAssistantStatus"])

        pages = run_each(chunk, _chunks(instance_ids, STATUS_MAX), LOOKUP_WORKERS)
        return {item["InstanceId"]: str(item.get("CloudAssistantStatus", "false")).lower()
                for page in pages for item in page}

    # -- invocations -----------------------------------------------------------------------

    def invoke_command(self, *, command_id: str, instance_ids: list[str], client_token: str = "",
                       parameters: dict[str, str] | None = None, timeout: int | None = None,
                       working_dir: str = "", username: str = "", repeat_mode: str = "",
                       frequency: str = "") -> str:
        from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

        req = _given(InvokeCommandRequest(), CommandId=command_id, InstanceIds=instance_ids,
                     # a dict would be sent as its repr
                     Parameters=json.dumps(parameters) if parameters else "",
                     Timeout=timeout, WorkingDir=working_dir, Username=username,
                     RepeatMode="" if repeat_mode == "Once" else repeat_mode,
                     Frequency=frequency, ClientToken=client_token)
        return str(self.call(req)["InvokeId"])

    def describe_invocations(self, *, invoke_id: str = "", command_id: str = "",
                             instance_id: str = "", command_name: str = "", status: str = "",
                             include_output: bool = False, limit: int | None = None
                             ) -> list[dict[str, Any]]:
        """Invocations, newest first as the API returns them (every page, or ``limit``)."""
        from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
            DescribeInvocationsRequest,
        )

        def page() -> RpcRequest:
            return _given(DescribeInvocationsRequest(), InvokeId=invoke_id,
                          CommandId=command_id, InstanceId=instance_id,
                          CommandName=command_name, InvokeStatus=status,
                          IncludeOutput=include_output)

        return self._pages(page, "Invocations", "Invocation", limit=limit)

    def invocation(self, invoke_id: str, include_output: bool = False) -> dict[str, Any]:
        """One invocation with its per-instance records; ``InvalidInvokeId.NotFound`` if none."""
        found = self.describe_invocations(invoke_id=invoke_id, include_output=include_output,
                                          limit=1)
        if not found:
            raise CloudCallError("DescribeInvocations", "InvalidInvokeId.NotFound",
                                 f"invocation {invoke_id} does not exist in this region")
        return dict(found[0])

    def invocation_status(self, invoke_id: str) -> str:
        """The overall ``InvocationStatus`` of ``invoke_id`` (Running, Success, Stopped, …)."""
        return str(self.invocation(invoke_id).get("InvocationStatus", ""))

    def invocation_results(self, invoke_id: str, include_history: bool = False,
                           instance_id: str = "") -> list[dict[str, Any]]:
        """Every per-instance result of ``invoke_id`` (all pages), Output still Base64.

        ``include_history`` returns every run of a periodic invocation, not just the latest.
        """
        return [result for page in self.invocation_result_pages(invoke_id, include_history,
                                                                instance_id)
                for result in page]

    def invocation_result_pages(self, invoke_id: str, include_history: bool = False,
                                instance_id: str = "") -> Iterator[list[dict[str, Any]]]:
        """``invocation_results`` a page (up to 50 results) at a time: each page is asked for
        when the one before was taken, so a caller can work on one page while the next is on
        its way."""
        from aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest import (
            DescribeInvocationResultsRequest,
        )

        def page() -> RpcRequest:
            return _given(DescribeInvocationResultsRequest(), InvokeId=invoke_id,
                          ContentEncoding="Base64", IncludeHistory=include_history,
                          InstanceId=instance_id)

        return self._page_by_page(page, "InvocationResults", "InvocationResult",
                                  within="Invocation")

    def stop_invocation(self, invoke_id: str, instance_ids: list[str] | None = None) -> None:
        """Stop ``invoke_id`` on ``instance_ids`` (default: every instance)."""
        from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

        self.call(_given(StopInvocationRequest(), InvokeId=invoke_id,
                         InstanceIds=instance_ids or []))


def _chunks(items: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _given(req: RpcRequest, **fields: Any) -> RpcRequest:
    """``req`` with ``set_<Field>(value)`` called for each field that has a value; None, "",
    False and [] leave the API's default (the field is not sent)."""
    for field, value in fields.items():
        if value is not None and value is not False and value != "" and value != []:
            getattr(req, f"set_{field}")(value)
    return req
