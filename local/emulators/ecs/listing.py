"""DescribeInstances as the API filters and pages it: by ids, status, tags and resource group.

Filters (the request model ``DescribeInstancesRequest`` of ``alibabacloud-ecs20140526`` 7.11.8,
and the API reference, https://www.alibabacloud.com/help/en/ecs/developer-reference/api-describeinstances):

* every filter given must hold ("Specified request parameters have logical AND relations");
* ``Tag.N.Key`` / ``Tag.N.Value``, N 1–20: the instance carries every tag named. A ``Key``
  without a ``Value`` matches whatever the value (the tag APIs' reading: "If only Tag.N.Key is
  specified, all tag values associated with the key are returned", ListTagResources,
  https://www.alibabacloud.com/help/ja/ecs/api-listtagresources); a ``Value`` without its
  ``Key`` is refused, as ListTagResources refuses it (``InvalidParameter.TagValue``);
* ``ResourceGroupId``: the instances of that group. "Filtering by the default resource group
  is not supported": an instance without a group never matches.

Both filters cover at most 1,000 resources: "If you use a single tag to filter resources, the
number of resources with this tag cannot exceed 1,000. If you use multiple tags …, the number of
resources with all specified tags attached cannot exceed 1,000. If the number of resources
exceeds 1,000, call ListTagResources" (the ``Tag.N.Key`` docstrings of the Cloud Assistant
requests, e.g. ``DescribeInvocationsRequestTag``, alibabacloud-ecs20140526; the same sentence
on DescribeInstances' ``Tag.N.Key``), and "When you use this parameter [ResourceGroupId] to
filter resources, the number of resources cannot exceed 1,000" — read by another ECS listing of
the same family as "up to 1,000 resources that belong to the specified resource group can be
returned in the response" (``DescribePortRangeListsRequest.resource_group_id``, ibid.). No error
is documented, so the local cloud answers the worst plausible way, silently: such a filter
selects at most the first ``INDEX_LIMIT`` (1,000) resources of the tag index — the instances
carrying the tags (and in the group), in fleet order — and the other filters apply to those.
A listing that returns exactly 1,000 is therefore inconclusive; fewer is complete. A client
that must see more uses ListTagResources (``tagging.py``).

Paging: ``MaxResults`` + ``NextToken`` (MaxResults below 10 counts as 10, above 100 as 100 —
the ``max_results`` docstring), or the older ``PageNumber`` / ``PageSize`` (default 1 and 10,
at most 100). "When MaxResults or NextToken is specified, the PageSize and PageNumber request
parameters do not take effect and the TotalCount response parameter is invalid": the token
answer carries no ``TotalCount``. A token is opaque and bound to the query that returned it;
one that is not, is ``InvalidParameter``.

A selection is computed once per (fleet, filters) and kept, so paging through a 10,000-instance
match costs one pass over the fleet, not one per page.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from local.emulators.ecs.errors import (
    InstanceIdsExceedLimit,
    InvalidParameter,
    InvalidParamPageNumber,
    InvalidParamPageSize,
)
from local.emulators.ecs.inventory import Instance
from local.emulators.ecs.wire import Params

MAX_IDS = 100  # InstanceIds: "a JSON array that consists of up to 100 instance IDs"
MAX_TAG_FILTERS = 20  # Tag.N: "Valid values of N: 1 to 20"
INDEX_LIMIT = 1000  # what a Tag.N / ResourceGroupId filter covers (the module docstring)
PAGE_MIN, PAGE_MAX, PAGE_DEFAULT = 10, 100, 10
T = TypeVar("T")


class Query:
    """The filters of one DescribeInstances call."""

    def __init__(self, p: Params) -> None:
        wanted = p.repeated("InstanceIds")
        if len(wanted) > MAX_IDS:
            raise InstanceIdsExceedLimit(limit=str(MAX_IDS), what="InstanceIds may be given")
        self.ids = tuple(wanted)
        self.given_ids = bool(wanted) or "InstanceIds" in p.raw  # "[]" is a filter that matches nothing
        self.status = p.text("Status")
        self.resource_group = p.text("ResourceGroupId")
        self.tags = _tag_filters(p)

    @property
    def key(self) -> str:
        return json.dumps([self.ids, self.given_ids, self.status, self.resource_group,
                           self.tags])

    @property
    def indexed(self) -> bool:
        """Whether the tag index decides (a Tag.N or ResourceGroupId filter): at most
        ``INDEX_LIMIT`` resources."""
        return bool(self.tags or self.resource_group)

    def in_index(self, inst: Instance) -> bool:
        return ((not self.resource_group or inst.ResourceGroupId == self.resource_group)
                and carries(inst, self.tags))

    def matches(self, inst: Instance) -> bool:
        return (not self.status or inst.Status == self.status) and self.in_index(inst)


def carries(inst: Instance, tags: list[tuple[str, str | None]]) -> bool:
    """Every tag of ``tags`` on ``inst`` (a None value: any value of that key)."""
    return all(key in inst.Tags and (value is None or inst.Tags[key] == value)
               for key, value in tags)


def _tag_filters(p: Params) -> list[tuple[str, str | None]]:
    numbers = sorted({int(k.split(".")[1]) for k in p.raw
                      if k.startswith("Tag.") and k.count(".") == 2 and k.split(".")[1].isdigit()
                      and k.split(".")[2] in ("Key", "Value")})
    filters: list[tuple[str, str | None]] = []
    for n in numbers:
        if not 1 <= n <= MAX_TAG_FILTERS:
            raise InvalidParameter(param=f"Tag.{n}", detail=f"N must be 1 to {MAX_TAG_FILTERS}")
        key, value = p.optional(f"Tag.{n}.Key"), p.optional(f"Tag.{n}.Value")
        if not key:
            raise InvalidParameter(param=f"Tag.{n}.Key", code="InvalidParameter.TagValue",
                                   detail="a tag filter needs its Key (a Value alone is refused)")
        filters.append((key, value))
    return filters


class Kept(Generic[T]):
    """What each recent query computed from the fleet (a selection, a tag listing), kept while
    the fleet stands: paging through a 10,000-instance answer costs one pass, not one a page."""

    def __init__(self, size: int = 32) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[dict[str, Instance], list[T]]] = OrderedDict()
        self._size = size

    def get(self, fleet: dict[str, Instance], key: str,
            compute: Callable[[], list[T]]) -> list[T]:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] is fleet:
                self._kept.move_to_end(key)
                return kept[1]
        found = compute()
        with self._lock:
            self._kept[key] = (fleet, found)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return found


def select(fleet: dict[str, Instance], query: Query) -> list[Instance]:
    """The instances ``query`` selects, in fleet order."""
    if query.indexed:  # the tag index's first INDEX_LIMIT, then the other filters
        indexed = [i for i in fleet.values() if query.in_index(i)][:INDEX_LIMIT]
        wanted = set(query.ids)
        return [i for i in indexed if (not query.given_ids or i.InstanceId in wanted)
                and (not query.status or i.Status == query.status)]
    candidates = [fleet[i] for i in dict.fromkeys(query.ids) if i in fleet] \
        if query.given_ids else list(fleet.values())
    return [i for i in candidates if query.matches(i)]


def page(found: list[Instance], query: Query, p: Params) -> tuple[list[Instance], dict[str, Any]]:
    """The page the call asks for, and the paging fields of the answer."""
    max_results, token = p.number("MaxResults"), p.text("NextToken")
    if max_results is not None or token:
        size = min(max(max_results or PAGE_DEFAULT, PAGE_MIN), PAGE_MAX)
        start = offset_of(token, query.key) if token else 0
        chunk = found[start:start + size]
        more = start + size < len(found)
        return chunk, {"NextToken": next_token(start + size, query.key) if more else ""}
    number = p.number("PageNumber", 1) or 0
    size = p.number("PageSize", PAGE_DEFAULT) or 0
    if number < 1:
        raise InvalidParamPageNumber()
    if not 1 <= size <= PAGE_MAX:
        raise InvalidParamPageSize(limit=str(PAGE_MAX))
    return found[(number - 1) * size:number * size], {
        "TotalCount": len(found), "PageNumber": number, "PageSize": size, "NextToken": ""}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def next_token(offset: int, key: str) -> str:
    """An opaque NextToken: where the next page starts, bound to the query (``key``)."""
    return f"{offset:08x}{_digest(key)}"


def offset_of(token: str, key: str) -> int:
    """Where the page of ``token`` starts; ``InvalidParameter.NextToken`` for a token this
    query (``key``) did not return."""
    head, tail = token[:8], token[8:]
    try:
        offset = int(head, 16)
    except ValueError:
        offset = -1
    if len(token) != 24 or offset < 0 or tail != _digest(key):
        raise InvalidParameter(param="NextToken",
                               detail="it is not a token this query returned")
    return offset
