"""Typed access to flat RPC parameters, and the two paging schemes of the Describe* APIs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from local.emulators.ecs.errors import (
    InvalidParameter,
    InvalidParamPageNumber,
    InvalidParamPageSize,
    MissingParameter,
)

# Parameters the transport adds (signing, format): not part of what a ClientToken protects.
TRANSPORT_PARAMS = frozenset({
    "Action", "Version", "Format", "RegionId", "Timestamp", "SignatureMethod", "SignatureType",
    "SignatureVersion", "SignatureNonce", "AccessKeyId", "SecurityToken", "Signature",
    "ClientToken",
})


class Params:
    """Typed access to the flat RPC parameters (``InstanceId.1``, ``InstanceId.2`` …)."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw

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
        # aliyunsdkcore sends Python's "True"/"False" (research §8): case does not matter.
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
    meaningful (research §3.4). ``NextToken`` is empty on the last page.
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
