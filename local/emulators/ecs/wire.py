"""The ECS RPC wire format: a signed query in, JSON out.

aliyunsdkcore sends every parameter in the query string of a POST with an empty body
(``RpcRequest`` in aliyun-python-sdk-core 2.16.1); a form body is accepted too. The action is
``Action`` (RPC v1.0) or the ``x-acs-action`` header (ACS3, the Tea SDKs such as
``alibabacloud-ecs20140526``). Parameters are flat (``InstanceId.1``, ``InstanceId.2`` …);
``Params`` reads them typed. Answers are JSON with ``RequestId``; arrays are wrapped in a
singular-named key (``Commands.Command[]``) because the API's JSON is derived from its XML.
Errors are ``{"RequestId", "HostId", "Code", "Message"}`` with the error's HTTP status.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from local.emulators.base import ServiceError, json_response
from local.emulators.ecs.errors import (
    InvalidParameter,
    InvalidParamPageNumber,
    InvalidParamPageSize,
    MissingParameter,
)
from local.emulators.ecs.signing import SignedRequest
from local.emulators.server import raw_headers

HOST_ID = "ecs.aliyuncs.com"

# Parameters the transport adds (signing, format): not part of what a ClientToken protects.
TRANSPORT_PARAMS = frozenset({
    "Action", "Version", "Format", "RegionId", "Timestamp", "SignatureMethod", "SignatureType",
    "SignatureVersion", "SignatureNonce", "AccessKeyId", "SecurityToken", "Signature",
    "ClientToken",
})


class Params:
    """Typed access to the flat RPC parameters (``InstanceId.1``, ``InstanceId.2`` …)."""

    def __init__(self, raw: dict[str, str], signed: SignedRequest | None = None) -> None:
        self.raw = raw
        self.signed = signed  # the request they were read from: its signature is checked on it

    def text(self, name: str, default: str = "") -> str:
        return self.raw.get(name, default)

    def optional(self, name: str) -> str | None:
        return self.raw.get(name)

    def required(self, name: str) -> str:
        value = self.raw.get(name, "")
        if value == "":
            raise MissingParameter(name=name)
        return value

    def number(self, name: str, default: int | None = None) -> int | None:
        value = self.raw.get(name, "")
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(param=name, detail=f"{value!r} is not an integer") from None

    def flag(self, name: str, default: bool = False) -> bool:
        # aliyunsdkcore sends Python's str(True) / str(False): case does not matter.
        value = self.raw.get(name, "")
        if value == "":
            return default
        if value.lower() not in ("true", "false"):
            raise InvalidParameter(param=name, detail=f"{value!r} is not a boolean")
        return value.lower() == "true"

    def repeated(self, name: str) -> list[str]:
        """``Name.1`` … ``Name.N`` in order, or a JSON array given as ``Name``."""
        if name in self.raw and self.raw[name].startswith("["):
            try:
                return [str(x) for x in json.loads(self.raw[name])]
            except ValueError:
                raise InvalidParameter(param=name, detail="it is not a JSON array") from None
        numbered = []
        for key, value in self.raw.items():
            prefix, _, index = key.rpartition(".")
            if prefix == name and index.isdigit():
                numbered.append((int(index), value))
        return [v for _, v in sorted(numbered)]

    def json_map(self, name: str) -> dict[str, str]:
        value = self.raw.get(name, "")
        if not value:
            return {}
        try:
            data = json.loads(value)
        except ValueError:
            raise InvalidParameter(
                param=name, detail="it must be a JSON object (send json.dumps(dict))") from None
        if not isinstance(data, dict):
            raise InvalidParameter(param=name, detail="it must be a JSON object")
        return {str(k): "" if v is None else str(v) for k, v in data.items()}

    def fingerprint(self) -> str:
        """A hash of the business parameters: what makes two ClientToken calls "the same"."""
        business = sorted((k, v) for k, v in self.raw.items() if k not in TRANSPORT_PARAMS)
        return hashlib.sha256(json.dumps(business).encode()).hexdigest()


def page(items: list[Any], p: Params, max_size: int = 50) -> tuple[list[Any], dict[str, Any]]:
    """Apply MaxResults/NextToken (preferred) or the older PageNumber/PageSize paging.

    With MaxResults/NextToken, ``TotalCount`` is still given but PageNumber/PageSize are not
    meaningful (the ``PageSize`` docstring of ``DescribeInvocationsRequest`` in
    ``alibabacloud-ecs20140526`` 7.11.8). ``NextToken`` is empty on the last page.
    """
    max_results = p.number("MaxResults")
    token = p.text("NextToken")
    if max_results is not None or token:
        size = max_results or 10
        if not 1 <= size <= max_size:
            raise InvalidParameter(param="MaxResults", detail=f"it must be between 1 and {max_size}")
        try:
            start = int(token, 16) if token else 0
        except ValueError:
            raise InvalidParameter(param="NextToken",
                                   detail="it is not a token this API returned") from None
        chunk = items[start:start + size]
        more = start + size < len(items)
        return chunk, {"TotalCount": len(items), "PageNumber": 1, "PageSize": size,
                       "NextToken": format(start + size, "x").rjust(8, "0") if more else ""}
    number = p.number("PageNumber", 1) or 0
    size = p.number("PageSize", 10) or 0
    if number < 1:
        raise InvalidParamPageNumber()
    if not 1 <= size <= max_size:
        raise InvalidParamPageSize(limit=str(max_size))
    chunk = items[(number - 1) * size: number * size]
    return chunk, {"TotalCount": len(items), "PageNumber": number, "PageSize": size,
                   "NextToken": ""}


# --- requests --------------------------------------------------------------------------------
def read_request(request: Request) -> SignedRequest:
    """The parts of an RPC request that name its action and parameters and carry its signature.

    The query is parsed keeping blank values: aliyunsdkcore signs ``SignatureType=`` (empty).
    """
    body = request.get_data(cache=True)
    query = parse_qsl(request.environ.get("QUERY_STRING", ""), keep_blank_values=True)
    params = dict(query)
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return SignedRequest(request.method, request.path, query, params,
                         raw_headers(request.environ), body)


def action_of(request: SignedRequest) -> str:
    return request.params.get("Action") or request.headers.get("x-acs-action", "")


def command_content(p: Params, default_encoding: str) -> str:
    """``CommandContent`` as Base64, per ``ContentEncoding``; an unknown encoding counts as the
    action's default: PlainText for RunCommand, Base64 for CreateCommand (the ContentEncoding
    docstrings of their requests in ``alibabacloud-ecs20140526`` 7.11.8)."""
    content = p.required("CommandContent")
    encoding = p.text("ContentEncoding").lower()
    if encoding not in ("plaintext", "base64"):
        encoding = default_encoding.lower()
    if encoding == "plaintext":
        content = base64.b64encode(content.encode()).decode()
    return content


# --- answers ---------------------------------------------------------------------------------
def answer_encoding(p: Params) -> str:
    """Describe*'s ``ContentEncoding``: PlainText, or Base64 (the default, and anything else)."""
    return "PlainText" if p.text("ContentEncoding").lower() == "plaintext" else "Base64"


def content(b64: str, encoding: str) -> str:
    """A command's content (stored as Base64) as the answer's encoding says."""
    if encoding == "PlainText":
        return base64.b64decode(b64).decode("utf-8", errors="replace")
    return b64


def output(raw: bytes, encoding: str) -> str:
    """A run's output as the answer's encoding says."""
    if encoding == "PlainText":
        return raw.decode("utf-8", errors="replace")
    return base64.b64encode(raw).decode()


def answer(body: dict[str, Any], request_id: str) -> Response:
    return json_response({**body, "RequestId": request_id})


def error_answer(error: ServiceError, request_id: str) -> Response:
    return json_response({"RequestId": request_id, "HostId": HOST_ID, "Code": error.code,
                          "Message": error.message}, error.status)
