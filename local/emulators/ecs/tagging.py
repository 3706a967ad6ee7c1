"""ListTagResources as the API pages it: the tags of the fleet's instances, found by tag, by
resource group or by id — the listing meant for selections over 1,000 resources.

The API reference, https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-listtagresources
(and the request model ``ListTagResourcesRequest`` of aliyun-python-sdk-ecs 4.24.83 /
alibabacloud-ecs20140526):

* ``ResourceType`` is required (``MissingParameter.ResourceType``), one of the documented types
  (else ``InvalidResourceType.NotFound``); the local cloud has only instances, so every other
  type answers an empty list.
* At least one of ``ResourceId.N`` (N 1–50, else ``NumberExceed.ResourceIds``), ``Tag.N``
  (N 1–20, else ``NumberExceed.Tags``) or ``TagFilter.N`` (else ``MissingParameter.Tags``).
  Given together, a resource must meet all of them. "If you specify only Tag.N.Key, all ECS
  resources whose tags contain the specified tag key are returned. If you specify only
  Tag.N.Value, the InvalidParameter.TagValue error is returned. If you specify multiple tag
  key-value pairs, only the ECS resources that have all these tag key-value pairs added are
  returned." A key twice is ``Duplicate.TagKey``; a key or value over 128 characters
  ``InvalidTagKey.Malformed`` / ``InvalidTagValue.Malformed``.
* ``Tag.1.Key`` = ``acs:rm:rgId`` with a resource group id as its value queries "resource
  information of a non-default resource group"; "you cannot specify other Tag.N parameter
  pairs" with it (the ``Tag.Key`` docstring of ``ListTagResourcesRequest``, alibabacloud-ecs20140526
  / the C# SDK ``AlibabaCloud.SDK.Ecs20140526.Models.ListTagResourcesRequest``). What its rows
  hold is not documented: here one row per instance of the group, ``TagKey`` ``acs:rm:rgId``,
  ``TagValue`` the group.
* ``TagFilter.N`` (fuzzy search, at most 5,000 resources) is not emulated: refused with
  ``InvalidParameter.TagFilter`` rather than answered wrongly.

The answer: ``TagResources.TagResource[{ResourceId, ResourceType, TagKey, TagValue}]``, one row
per (resource, tag) — every tag of each resource that matched, so one resource's rows may span
two pages — and ``NextToken`` ("" on the last page). The API takes no page size; how many rows
a page holds is not documented, so the local cloud answers ``PAGE_SIZE`` (50) and a client must
not count on any. Unlike DescribeInstances' filters, no 1,000-resource limit is documented here
(it is the listing the docs send you to past 1,000), and none is applied.
"""

from __future__ import annotations

import json
from typing import Any

from local.emulators.ecs.errors import (
    DuplicateTagKey,
    InvalidParameter,
    InvalidResourceTypeNotFound,
    InvalidTagKeyMalformed,
    InvalidTagValueMalformed,
    MissingParameterResourceType,
    MissingParameterTags,
    NumberExceedResourceIds,
    NumberExceedTags,
)
from local.emulators.ecs.inventory import Instance
from local.emulators.ecs.listing import carries, next_token, offset_of
from local.emulators.ecs.wire import Params

PAGE_SIZE = 50  # rows a page (undocumented: the module docstring)
MAX_RESOURCE_IDS = 50  # ResourceId.N: "Valid values of N: 1 to 50"
MAX_TAGS = 20  # Tag.N: "Valid values of N: 1 to 20"
MAX_TAG_LENGTH = 128  # "The tag key must be 1 to 128 characters in length" (and the value)
GROUP_KEY = "acs:rm:rgId"  # Tag.N.Key that names a resource group
RESOURCE_TYPES = frozenset((  # ResourceType's valid values
    "instance", "disk", "snapshot", "image", "securitygroup", "volume", "eni", "ddh",
    "ddhcluster", "keypair", "launchtemplate", "reservedinstance", "snapshotpolicy",
    "elasticityassurance", "capacityreservation", "command", "invocation", "activation",
    "managedinstance"))


class TagQuery:
    """The parameters of one ListTagResources call, checked."""

    def __init__(self, p: Params) -> None:
        self.type = p.text("ResourceType")
        if not self.type:
            raise MissingParameterResourceType()
        if self.type not in RESOURCE_TYPES:
            raise InvalidResourceTypeNotFound()
        self.ids = tuple(p.repeated("ResourceId"))
        if len(self.ids) > MAX_RESOURCE_IDS:
            raise NumberExceedResourceIds(limit=str(MAX_RESOURCE_IDS))
        if any(k.startswith("TagFilter.") for k in p.raw):
            raise InvalidParameter(param="TagFilter", detail="TagFilter.N (fuzzy search) is "
                                   "not emulated by the local cloud; use Tag.N")
        self.tags = _tags(p)
        if not self.ids and not self.tags:
            raise MissingParameterTags()
        self.group = self.tags[0][1] or "" if self.tags and self.tags[0][0] == GROUP_KEY else ""

    @property
    def key(self) -> str:
        return json.dumps(["ListTagResources", self.type, self.ids, self.tags])


def _tags(p: Params) -> list[tuple[str, str | None]]:
    numbers = sorted({int(k.split(".")[1]) for k in p.raw
                      if k.startswith("Tag.") and k.count(".") == 2 and k.split(".")[1].isdigit()
                      and k.split(".")[2] in ("Key", "Value")})
    if numbers and (numbers[-1] > MAX_TAGS or numbers[0] < 1):
        raise NumberExceedTags(limit=str(MAX_TAGS))
    tags: list[tuple[str, str | None]] = []
    for n in numbers:
        key, value = p.optional(f"Tag.{n}.Key"), p.optional(f"Tag.{n}.Value")
        if not key:
            raise InvalidParameter(param=f"Tag.{n}.Key", code="InvalidParameter.TagValue",
                                   detail="a tag filter needs its Key (a Value alone is refused)")
        if len(key) > MAX_TAG_LENGTH:
            raise InvalidTagKeyMalformed(detail=f"Tag.{n}.Key is over {MAX_TAG_LENGTH} characters")
        if value is not None and len(value) > MAX_TAG_LENGTH:
            raise InvalidTagValueMalformed(
                detail=f"Tag.{n}.Value is over {MAX_TAG_LENGTH} characters")
        if any(key == k for k, _ in tags):
            raise DuplicateTagKey()
        tags.append((key, value))
    if any(k == GROUP_KEY for k, _ in tags):
        if len(tags) > 1:
            raise InvalidParameter(param="Tag", detail=f"{GROUP_KEY} cannot be combined with "
                                   "other Tag.N pairs")
        if not tags[0][1]:
            raise InvalidTagValueMalformed(detail=f"{GROUP_KEY} needs a resource group id")
    return tags


def rows(fleet: dict[str, Instance], query: TagQuery) -> list[dict[str, Any]]:
    """Every row the query answers, in fleet order."""
    if query.type != "instance":
        return []
    candidates = [fleet[i] for i in dict.fromkeys(query.ids) if i in fleet] if query.ids \
        else fleet.values()
    if query.group:
        return [_row(i, GROUP_KEY, query.group) for i in candidates
                if i.ResourceGroupId == query.group]
    return [_row(i, k, v) for i in candidates if carries(i, query.tags)
            for k, v in i.Tags.items()]


def _row(inst: Instance, key: str, value: str) -> dict[str, Any]:
    return {"ResourceId": inst.InstanceId, "ResourceType": "instance", "TagKey": key,
            "TagValue": value}


def page(found: list[dict[str, Any]], query: TagQuery, p: Params
         ) -> tuple[list[dict[str, Any]], str]:
    """The page the call asks for (``NextToken``) and the token of the next one ("": last)."""
    token = p.text("NextToken")
    start = offset_of(token, query.key) if token else 0
    end = start + PAGE_SIZE
    return found[start:end], next_token(end, query.key) if end < len(found) else ""
