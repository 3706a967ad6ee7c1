"""The local ECS's tag index: DescribeInstances' Tag.N / ResourceGroupId filters cover at most
1,000 instances, as the API reference documents, and ListTagResources lists every one, paged by
NextToken — through aliyun-python-sdk-ecs (``ListTagResourcesRequest``,
``DescribeInstancesRequest``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.ListTagResourcesRequest import ListTagResourcesRequest

from tests.unit.test_ecs_describe_instances import every_page
from tests.unit.test_ecs_emulator import Ecs, make, start_ecs

FLEET: list[dict[str, Any]] = [
    {"InstanceId": "i-web1", "Tags": {"app": "web", "env": "prod"}, "ResourceGroupId": "rg-web"},
    {"InstanceId": "i-web2", "Tags": {"app": "web", "env": "test"}, "ResourceGroupId": "rg-web"},
    {"InstanceId": "i-db1", "Tags": {"app": "db", "env": "prod"}},
    {"InstanceId": "i-bare", "ResourceGroupId": "rg-web"},
    {"InstanceId": "i-wide", "Count": 1500, "Mode": "simulated", "Tags": {"fleet": "wide"},
     "ResourceGroupId": "rg-wide"},
]
WIDE = [f"i-wide{n:05d}" for n in range(1, 1501)]


def listing(ecs: Ecs, **params: Any) -> tuple[list[tuple[str, str, str]], int]:
    """Every row ListTagResources answers, following NextToken: ((id, key, value), calls)."""
    rows: list[tuple[str, str, str]] = []
    token, calls = "", 0
    while True:
        page = ecs.call(make(ListTagResourcesRequest, ResourceType="instance", **params,
                             **({"NextToken": token} if token else {})))
        calls += 1
        rows += [(r["ResourceId"], r["TagKey"], r["TagValue"])
                 for r in page["TagResources"]["TagResource"]]
        assert all(r["ResourceType"] == "instance" for r in page["TagResources"]["TagResource"])
        token = page["NextToken"]
        if not token:
            return rows, calls


def test_describe_instances_filters_cover_at_most_the_first_thousand(tmp_path: Path) -> None:
    with start_ecs(tmp_path, FLEET) as ecs:
        for selector in ({"Tags": [{"Key": "fleet", "Value": "wide"}]},
                         {"Tags": [{"Key": "fleet"}]}, {"ResourceGroupId": "rg-wide"}):
            found, calls = every_page(ecs, **selector)
            assert (found, calls) == (WIDE[:1000], 10), selector
            total = ecs.call(make(DescribeInstancesRequest, PageSize=1, **selector))
            assert total["TotalCount"] == 1000
        # the other filters apply to the first 1,000 of the tag index
        beyond = ecs.call(make(DescribeInstancesRequest, InstanceIds=json.dumps(WIDE[1400:1410]),
                               Tags=[{"Key": "fleet", "Value": "wide"}]))
        assert beyond["Instances"]["Instance"] == []
        # unfiltered by tag, every instance is there
        assert len(every_page(ecs)[0]) == 1504


def test_list_tag_resources_lists_every_tagged_instance_past_a_thousand(tmp_path: Path) -> None:
    with start_ecs(tmp_path, FLEET) as ecs:
        rows, calls = listing(ecs, Tags=[{"Key": "fleet", "Value": "wide"}])
        assert rows == [(i, "fleet", "wide") for i in WIDE] and calls == 30  # 50 rows a page
        # a resource group through the acs:rm:rgId key, one row per instance
        rows, _ = listing(ecs, Tags=[{"Key": "acs:rm:rgId", "Value": "rg-wide"}])
        assert [r[0] for r in rows] == WIDE and {r[1:] for r in rows} == {
            ("acs:rm:rgId", "rg-wide")}
        rows, _ = listing(ecs, Tags=[{"Key": "acs:rm:rgId", "Value": "rg-web"}])
        assert [r[0] for r in rows] == ["i-web1", "i-web2", "i-bare"]


def test_every_tag_must_match_and_each_match_has_a_row_per_tag(tmp_path: Path) -> None:
    with start_ecs(tmp_path, FLEET) as ecs:
        rows, _ = listing(ecs, Tags=[{"Key": "app", "Value": "web"},
                                     {"Key": "env", "Value": "prod"}])
        assert rows == [("i-web1", "app", "web"), ("i-web1", "env", "prod")]
        rows, _ = listing(ecs, Tags=[{"Key": "env"}])  # a key alone: any value
        assert sorted({r[0] for r in rows}) == ["i-db1", "i-web1", "i-web2"]
        assert listing(ecs, Tags=[{"Key": "App", "Value": "web"}])[0] == []  # case-sensitive
        rows, _ = listing(ecs, ResourceIds=["i-web2", "i-nosuch"])
        assert rows == [("i-web2", "app", "web"), ("i-web2", "env", "test")]
        rows, _ = listing(ecs, ResourceIds=["i-web1", "i-web2"], Tags=[{"Key": "env",
                                                                         "Value": "test"}])
        assert {r[0] for r in rows} == {"i-web2"}
        page = ecs.call(make(ListTagResourcesRequest, ResourceType="disk",
                             Tags=[{"Key": "app", "Value": "web"}]))
        assert page["TagResources"]["TagResource"] == [] and page["NextToken"] == ""


def test_list_tag_resources_refuses_what_the_api_refuses(tmp_path: Path) -> None:
    with start_ecs(tmp_path, FLEET) as ecs:
        def code(**params: Any) -> tuple[str, int]:
            err = ecs.fails(make(ListTagResourcesRequest, **params))
            return err.get_error_code(), err.get_http_status()

        tag = [{"Key": "app", "Value": "web"}]
        assert code(Tags=tag) == ("MissingParameter.ResourceType", 404)
        assert code(ResourceType="server", Tags=tag) == ("InvalidResourceType.NotFound", 404)
        assert code(ResourceType="instance") == ("MissingParameter.Tags", 404)
        assert code(ResourceType="instance", ResourceIds=[f"i-{n}" for n in range(51)]) == (
            "NumberExceed.ResourceIds", 400)
        assert code(ResourceType="instance", Tags=[{"Key": f"k{n}", "Value": "v"}
                                                   for n in range(21)]) == (
            "NumberExceed.Tags", 400)
        assert code(ResourceType="instance", Tags=[{"Value": "web"}]) == (
            "InvalidParameter.TagValue", 400)
        assert code(ResourceType="instance", Tags=tag + tag) == ("Duplicate.TagKey", 400)
        assert code(ResourceType="instance", Tags=[{"Key": "k" * 129, "Value": "v"}]) == (
            "InvalidTagKey.Malformed", 400)
        group = {"Key": "acs:rm:rgId", "Value": "rg-web"}
        assert code(ResourceType="instance", Tags=[group, *tag]) == ("InvalidParameter.Tag", 400)
        assert code(ResourceType="instance", TagFilters=[{"TagKey": "app"}]) == (
            "InvalidParameter.TagFilter", 400)
        first = ecs.call(make(ListTagResourcesRequest, ResourceType="instance",
                              Tags=[{"Key": "fleet", "Value": "wide"}]))
        # a token is bound to the query that returned it
        assert code(ResourceType="instance", Tags=tag, NextToken=first["NextToken"]) == (
            "InvalidParameter.NextToken", 400)
        assert code(ResourceType="instance", Tags=tag, NextToken="made-up") == (
            "InvalidParameter.NextToken", 400)


def test_a_ten_thousand_instance_tagged_fleet_pages_in_linear_time(tmp_path: Path) -> None:
    fleet = [{"InstanceId": "i-big", "Count": 10000, "Mode": "simulated",
              "Tags": {"fleet": "big"}, "ResourceGroupId": "rg-big"},
             {"InstanceId": "i-other", "Count": 500, "Mode": "simulated"}]
    with start_ecs(tmp_path, fleet) as ecs:
        started = time.monotonic()
        rows, calls = listing(ecs, Tags=[{"Key": "fleet", "Value": "big"}])
        elapsed = time.monotonic() - started
        assert (len({r[0] for r in rows}), calls) == (10000, 200)
        assert elapsed < 20, elapsed  # a few seconds; filtering the fleet per page took longer
        # DescribeInstances filtered by the same tag: the first 1,000 only
        assert every_page(ecs, Tags=[{"Key": "fleet", "Value": "big"}])[1] == 10
