"""Targets: the instances a request selects by tag and resource group, resolved once and frozen.

A request names its instances by ``InstanceIds``, or by a selector — ``Tags`` (every pair must
match) and/or ``ResourceGroupId``. The intake's ``resolve`` step (``shared.intake``) turns a
selector into a sorted list of instance ids (``select``): DescribeInstances' own ``Tag.N`` /
``ResourceGroupId`` filters cover at most 1,000 resources (the API reference: "If the number of
resources exceeds 1,000, call ListTagResources"), so tags are resolved with ListTagResources
(every page), then the instances by id with DescribeInstances (100 a call, side by side); a
resource group alone with DescribeInstances filtered by it, and like tags (ListTagResources'
``acs:rm:rgId`` key) when that listing comes back full (1,000); a selection still going after
ten ListTagResources pages reads the region's DescribeInstances pages side by side instead (up
to 20,000 instances), which keeps a 10,000-instance selection within the webhook's time. From
then on the request is a list of instances like any other: the allow-list, pre-flight,
``OnIneligible`` and the batches apply to it as to a listed one. The list is recorded with the
request (``shared.ledger.RequestRecord``: ``selector`` and ``targets``), so what ran is always
known, and a redelivery of the request (same idempotency key) runs on the recorded list, never on
a new resolution: a fleet re-tagged in between does not change what one request runs on.

Refused (422, nothing created): a selector that matches no instance (``NoTargets``), or more than
``MAX_TARGETS`` (``TooManyTargets``), the most one request may name, with the count when the
region was read; in a region too large for that, the listing stops past ``MAX_TARGETS``
(ListTagResources gives no total) and the refusal says "more than 10000".

What DescribeInstances answered (``Status``, ``OSType``, ``ResourceGroupId``) is kept beside the
list: pre-flight takes it instead of looking the instances up again (only the agents are asked,
DescribeCloudAssistantStatus). ``target_verdicts`` gives every target's pre-flight verdict — what
``DryRun`` shows.

RAM: ListTagResources on ``instance/*`` (ResourceType instance, no ResourceId), and
DescribeInstances, a "list" action; its RAM authorization names the instance resource
(``acs:ecs:{region}:{account}:instance/*`` for a filtered listing, which names no instance —
https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-ram). The
function role's ``ecs:DescribeInstances`` on ``instance/*`` of its regions covers it; a
listing filtered by tag is not narrowed by an ``acs:ResourceTag`` condition (there is no one
resource to judge), which is why the template's ``InstanceTagKey`` condition is placed on
RunCommand / InvokeCommand only: a selector may *find* instances without that tag, but running on
them is refused by RAM (``Forbidden.RAM``), and the refusal names the call, not the instance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.clients.cloud_assistant import DESCRIBE_INSTANCES_MAX, FILTER_LIMIT
from shared.errors import NotAllowedError, Violation, ViolationsError
from shared.parallel import run_each
from shared.policy import instance_allowed
from shared.preflight import SavedCommand, describe_saved, ineligible_instances

if TYPE_CHECKING:
    from shared.clients import Clients, CloudAssistant
    from shared.ledger import RequestRecord
    from shared.request import CommandRequest

log = logging.getLogger("assistflow.targets")

MAX_TARGETS = 10000  # as many as InstanceIds may list
GROUP_KEY = "acs:rm:rgId"  # ListTagResources' Tag.N.Key for "the resources of a resource group"
# (the Tag.Key docstring of ListTagResourcesRequest, alibabacloud-ecs20140526)
CHAIN_PAGES = 10  # ListTagResources pages followed before a long selection scans the region
SCAN_MAX_PAGES = 200  # the region is scanned only up to 20,000 instances (100 a page)
FACTS = ("Status", "OSType", "ResourceGroupId")  # kept of DescribeInstances' answer


class NoTargetsError(ViolationsError):
    """The selector matches no instance."""

    code = "NoTargets"
    status = 422


class TooManyTargetsError(ViolationsError):
    """The selector matches more instances than one request may run on."""

    code = "TooManyTargets"
    status = 422


@dataclass(frozen=True)
class Resolution:
    """A selector's targets: ``instance_ids`` sorted; ``facts`` what DescribeInstances said of
    each (``Status``, ``OSType``), empty when the list came from the request record."""

    instance_ids: tuple[str, ...]
    facts: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    recorded: bool = False  # read from the request record: a redelivery


@dataclass(frozen=True)
class Verdict:
    """One target's pre-flight verdict: ``eligible``, or why not (``reason``: NotAllowed,
    InstanceNotFound, InstanceNotRunning, AgentNotOnline, OSTypeMismatch)."""

    instance_id: str
    eligible: bool
    reason: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"InstanceId": self.instance_id, "Eligible": self.eligible}
        if not self.eligible:
            body.update(Reason=self.reason, Message=self.message)
        return body


def describe_selector(request: CommandRequest) -> str:
    """``tags team=ops, env=prod in resource group rg-…``, for messages."""
    parts = []
    if request.tags:
        parts.append("tags " + ", ".join(f"{k}={v}" for k, v in request.tags))
    if request.resource_group_id:
        parts.append(f"resource group {request.resource_group_id}")
    return " in ".join(parts)


def resolve(request: CommandRequest, ecs: CloudAssistant,
            record: RequestRecord | None = None) -> Resolution:
    """The selector's targets: the recorded list when the request was recorded before (a
    redelivery), else DescribeInstances' matches. ``NoTargetsError`` / ``TooManyTargetsError``
    (422) when there are none or more than ``MAX_TARGETS``."""
    if record is not None and record.targets:
        return Resolution(record.targets, recorded=True)
    found, total = select(ecs, request.tags, request.resource_group_id, MAX_TARGETS)
    where = describe_selector(request)
    if len(found) > MAX_TARGETS:
        count = f"more than {MAX_TARGETS}" if total is None else str(total)
        raise TooManyTargetsError(
            f"{count} instances match {where}; one request runs on at most {MAX_TARGETS}: add "
            "a tag to narrow the selection, or split the fleet over several requests",
            [Violation(request.selector_path, "maxTargets",
                       f"{count} instances match; at most {MAX_TARGETS}", total)])
    if not found:
        raise NoTargetsError(
            f"no instance in the region matches {where}; check the selector (tag keys and "
            "values are case-sensitive) or tag the instances",
            [Violation(request.selector_path, "noTargets", f"no instance matches {where}")])
    facts = {str(i["InstanceId"]): {k: str(i.get(k, "")) for k in FACTS} for i in found}
    log.info("%s: %d instance(s)", where, len(facts))
    return Resolution(tuple(sorted(facts)), facts)


Tags = tuple[tuple[str, str], ...]


def select(ecs: CloudAssistant, tags: Tags, group: str, limit: int
           ) -> tuple[list[dict[str, Any]], int | None]:
    """The instances carrying every tag of ``tags`` and in ``group`` ("": any), each as
    DescribeInstances describes it, and how many; past ``limit``, the first ``limit`` + 1 and
    the count if known (None: "more than ``limit``").

    DescribeInstances' ``Tag.N`` / ``ResourceGroupId`` filters cover at most 1,000 resources,
    with no error past that, so they decide nothing above 1,000:

    * a group alone: DescribeInstances filtered by it. Fewer than 1,000 is the whole group;
      1,000 exactly is inconclusive, and the group is listed as tags are, with the
      ``acs:rm:rgId`` key;
    * tags: ListTagResources, page after page (NextToken: one call at a time), then the
      instances by id (``describe_instances``: 100 a call, side by side), kept if they still
      carry every tag (and are in the group: ListTagResources cannot combine a group with tags);
    * a selection still going after ``CHAIN_PAGES`` pages is large: the region is read instead
      (``_scan``: DescribeInstances' numbered pages side by side, the selection made here),
      when it holds at most ``SCAN_MAX_PAGES`` pages. The chain costs a round trip per 50-odd
      rows; the scan, a round trip per ``POOL_SIZE`` pages of 100. Above that size, or if the
      region changed while it was read, the chain goes on to its end.
    """
    if not tags:
        found = ecs.group_listing(group)
        if len(found) < FILTER_LIMIT:
            return found, len(found)
    query = tags or ((GROUP_KEY, group),)
    ids: dict[str, None] = {}
    token, pages = "", 0
    while True:
        page, token = ecs.tag_page(query, token)
        ids.update(dict.fromkeys(page))
        pages += 1
        if not token or len(ids) > limit:
            break
        if pages == CHAIN_PAGES:
            scanned = _scan(ecs, tags, group)
            if scanned is not None:
                return scanned[:limit + 1], len(scanned)
    if len(ids) > limit:
        return [{"InstanceId": i} for i in list(ids)[:limit + 1]], None
    described = ecs.describe_instances(tuple(ids))
    found = [described[i] for i in ids if i in described and _holds(described[i], tags, group)]
    return found, len(found)


def _scan(ecs: CloudAssistant, tags: Tags, group: str) -> list[dict[str, Any]] | None:
    """The region's instances that carry ``tags`` and are in ``group``, from every numbered
    page of DescribeInstances, read side by side; None when the region is over
    ``SCAN_MAX_PAGES`` pages, or changed while it was read (a page states another TotalCount,
    or the pages hold other than TotalCount distinct instances: one moved across a page
    boundary), so that no instance is missed silently."""
    first, total = ecs.instance_page(1)
    count = -(-total // DESCRIBE_INSTANCES_MAX)
    if count > SCAN_MAX_PAGES:
        return None
    rest = run_each(ecs.instance_page, range(2, count + 1))
    if any(stated != total for _, stated in rest):
        return None
    every = {str(i["InstanceId"]): i for items in [first, *(p for p, _ in rest)] for i in items}
    if len(every) != total:
        return None
    return [i for i in every.values() if _holds(i, tags, group)]


def _holds(instance: Mapping[str, Any], tags: Tags, group: str) -> bool:
    """``instance`` (as DescribeInstances describes it) carries every tag and is in ``group``
    ("": any)."""
    carried = {t.get("TagKey"): t.get("TagValue")
               for t in (instance.get("Tags") or {}).get("Tag", [])}
    return all(carried.get(key) == value for key, value in tags) and (
        not group or instance.get("ResourceGroupId") == group)


def check_allowed_targets(request: CommandRequest, allowed: tuple[str, ...]) -> None:
    """The allow-list (``AllowedInstances``) on resolved targets, as ``shared.policy`` judges
    listed ones: ``NotAllowedError`` (403) naming every target outside it."""
    outside = [i for i in request.instance_ids if not instance_allowed(i, allowed)]
    if outside:
        raise NotAllowedError(
            f"{len(outside)} of the {len(request.instance_ids)} instance(s) "
            f"{describe_selector(request)} selects are not allowed by this deployment",
            [Violation(request.selector_path, "allowList",
                       f"instance {i} is outside this deployment's allow-list "
                       "(ASSISTFLOW_ALLOWED_INSTANCES)", i) for i in outside])


def target_verdicts(request: CommandRequest, clients: Clients, *,
                    saved: SavedCommand | None = None,
                    known: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Verdict, ...]:
    """Every target of ``request`` (listed, or resolved: ``request.instance_ids``) with its
    pre-flight verdict, in the request's order: NotAllowed (the allow-list), then what
    pre-flight finds (``shared.preflight.ineligible_instances``: InstanceNotFound,
    InstanceNotRunning, OSTypeMismatch, AgentNotOnline). ``saved``: the request's saved
    command if looked up already (its type decides OSTypeMismatch); ``known``: what
    DescribeInstances said of the targets (``Resolution.facts``), so they are not looked up
    again. Creates nothing; makes at most the lookups pre-flight makes."""
    settings = clients.settings
    ecs = clients.ecs_in(request.region)
    command_type = request.type
    if request.command_id:
        command_type = (saved or describe_saved(ecs, request.command_id)).type
    allowed = tuple(i for i in request.instance_ids
                    if instance_allowed(i, settings.allowed_instances))
    found = {i.instance_id: i for i in ineligible_instances(ecs, allowed, command_type,
                                                           known=known)} if allowed else {}
    verdicts = []
    for instance_id in request.instance_ids:
        if not instance_allowed(instance_id, settings.allowed_instances):
            verdicts.append(Verdict(instance_id, False, "NotAllowed",
                                    f"{instance_id} is outside this deployment's allow-list "
                                    "(ASSISTFLOW_ALLOWED_INSTANCES)"))
        elif instance_id in found:
            verdicts.append(Verdict(instance_id, False, found[instance_id].reason,
                                    found[instance_id].message))
        else:
            verdicts.append(Verdict(instance_id, True))
    return tuple(verdicts)

