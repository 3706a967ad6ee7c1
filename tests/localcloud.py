"""Test helpers: official SDK clients pointed at a running local cloud, and signed webhook calls.

Everything goes through the same SDKs and wire protocols a user's code would use; the only
thing that differs from Alibaba Cloud is the endpoint.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import oss2
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from mns.account import Account

from shared import webhook

T = TypeVar("T")


def interruptible() -> None:
    """``Popen(preexec_fn=interruptible)``: the child starts with SIGINT at its default, so
    Python turns a SIGINT into KeyboardInterrupt as it does in a terminal. A test run started
    as a background job of a non-interactive shell (``make test &``) ignores SIGINT, a child
    inherits that, and Python keeps an inherited SIG_IGN: the child would never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Endpoints(dict[str, Any]):
    """``endpoints.json`` with SDK clients built from it."""

    def acs(self) -> AcsClient:
        client = AcsClient(self["access_key_id"], self["access_key_secret"], self["region"],
                           proxy={"http": None, "https": None})
        client.add_endpoint(self["region"], "Ecs", self["ecs"].split("://", 1)[1])
        return client

    def call(self, request: RpcRequest) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.acs().do_action_with_exception(request))
        return result

    def bucket(self, name: str | None = None) -> oss2.Bucket:
        auth = oss2.Auth(self["access_key_id"], self["access_key_secret"])
        return oss2.Bucket(auth, self["oss"], name or self["results_bucket"])

    def invocations(self, **filters: str) -> list[dict[str, Any]]:
        """DescribeInvocations with these filters (``CommandId="c-…"``), the first 50."""
        from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import (
            DescribeInvocationsRequest,
        )

        req = DescribeInvocationsRequest()
        for name, value in filters.items():
            getattr(req, f"set_{name}")(value)
        req.set_PageSize(50)
        found: list[dict[str, Any]] = self.call(req)["Invocations"]["Invocation"]
        return found

    def control(self, service: str, name: str, body: Any = None, method: str = "GET") -> Any:
        """An emulator's control API, ``/_emulator/<name>`` (a body: POSTed as JSON)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self[service]}/_emulator/{name}", data=data,
                                     method="POST" if data is not None else method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    def mns(self) -> Account:
        return Account(self["mns"], self["access_key_id"], self["access_key_secret"])

    def post(self, body: bytes | dict[str, Any], *, secret: str | None = None,
             timestamp: int | None = None, headers: dict[str, str] | None = None,
             sign: bool = True) -> tuple[int, dict[str, Any]]:
        """POST to the webhook; returns (status, JSON body)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, raw = webhook.post(self["webhook_url"], secret or self["webhook_secret"], data,
                                   timestamp=timestamp, headers=headers, signed=sign,
                                   timeout=30, use_env_proxy=False)
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"raw": raw.decode("utf-8", "replace")}


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something other than None (or raise TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing after {timeout} s")
        time.sleep(interval)


def get_object(bucket: oss2.Bucket, key: str) -> bytes | None:
    try:
        return bytes(bucket.get_object(key).read())
    except oss2.exceptions.NoSuchKey:
        return None


def request_summary(endpoints: Endpoints, body: dict[str, Any], timeout: float = 60
                    ) -> dict[str, Any]:
    """The request summary an accepted request's 202 points at (``Summary``), once written."""
    key = str(body["Summary"]).split("/", 3)[3]
    raw = wait_for(lambda: get_object(endpoints.bucket(), key), timeout=timeout, interval=0.2)
    summary: dict[str, Any] = json.loads(raw)
    return summary


def invoke_ids(endpoints: Endpoints, body: dict[str, Any], timeout: float = 60) -> list[str]:
    """Every InvokeId of an accepted request: the 202's for a request of one batch; for one
    fanned out through the dispatch queue (its 202 has a ``Plan``), the request summary's."""
    if "Plan" not in body:
        return list(body["InvokeIds"])
    return list(request_summary(endpoints, body, timeout)["InvokeIds"])
