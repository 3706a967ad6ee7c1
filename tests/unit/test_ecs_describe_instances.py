"""DescribeInstances' tag and resource-group filters and its paging, through aliyun-python-sdk-ecs
(``DescribeInstancesRequest``) and the Tea SDK (alibabacloud-ecs20140526)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest

from tests.unit.test_ecs_emulator import AK, SECRET, Ecs, make, start_ecs

FLEET: list[dict[str, Any]] = [
    {"InstanceId": "i-web1", "Tags": {"app": "web", "env": "prod"}, "ResourceGroupId": "rg-web"},
    {"InstanceId": "i-web2", "Tags": {"app": "web", "env": "test"}, "ResourceGroupId": "rg-web"},
    {"InstanceId": "i-web3", "Tags": {"app": "web", "env": "prod"}, "Status": "Stopped"},
    {"InstanceId": "i-db1", "Tags": {"app": "db", "env": "prod"}, "ResourceGroupId": "rg-db"},
    {"InstanceId": "i-bare"},
    {"InstanceId": "i-many", "Count": 250, "Mode": "simulated", "Tags": {"fleet": "many"},
     "ResourceGroupId": "rg-many"},
]


@pytest.fixture
def ecs(tmp_path: Path) -> Iterator[Ecs]:
    with start_ecs(tmp_path, FLEET) as driver:
        yield driver


def ids(page: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for i in page["Instances"]["Instance"]]


def every_page(ecs: Ecs, **params: Any) -> tuple[list[str], int]:
    """Every instance the filters select, following NextToken; (ids, calls made)."""
    found, token, calls = [], "", 0
    while True:
        page = ecs.call(make(DescribeInstancesRequest, MaxResults=100, **params,
                             **({"NextToken": token} if token else {})))
        calls += 1
        found += ids(page)
        token = page["NextToken"]
        if not token:
            return found, calls


def test_tags_filter_every_pair_must_match(ecs: Ecs) -> None:
    assert ids(ecs.call(make(DescribeInstancesRequest, Tags=[
        {"Key": "app", "Value": "web"}]))) == ["i-web1", "i-web2", "i-web3"]
    assert ids(ecs.call(make(DescribeInstancesRequest, Tags=[
        {"Key": "app", "Value": "web"}, {"Key": "env", "Value": "prod"}]))) == [
        "i-web1", "i-web3"]
    assert ids(ecs.call(make(DescribeInstancesRequest, Tags=[
        {"Key": "app", "Value": "web"}, {"Key": "env", "Value": "staging"}]))) == []
    assert ids(ecs.call(make(DescribeInstancesRequest, Tags=[
        {"Key": "App", "Value": "web"}]))) == []  # keys are case-sensitive


def test_a_tag_key_without_a_value_matches_any_value_and_a_value_alone_is_refused(
        ecs: Ecs) -> None:
    assert ids(ecs.call(make(DescribeInstancesRequest, Tags=[{"Key": "env"}]))) == [
        "i-web1", "i-web2", "i-web3", "i-db1"]
    err = ecs.fails(make(DescribeInstancesRequest, Tags=[{"Value": "web"}]))
    assert err.get_error_code() == "InvalidParameter.TagValue"
    assert "Tag.1.Key" in err.get_error_msg()


def test_more_than_twenty_tag_filters_are_refused(ecs: Ecs) -> None:
    tags = [{"Key": f"k{n}", "Value": "v"} for n in range(21)]
    assert ecs.fails(make(DescribeInstancesRequest, Tags=tags)).get_error_code() == \
        "InvalidParameter.Tag.21"


def test_resource_group_filter_and_its_combination_with_tags_and_status(ecs: Ecs) -> None:
    assert ids(ecs.call(make(DescribeInstancesRequest, ResourceGroupId="rg-web"))) == [
        "i-web1", "i-web2"]
    assert ids(ecs.call(make(DescribeInstancesRequest, ResourceGroupId="rg-web",
                             Tags=[{"Key": "env", "Value": "prod"}]))) == ["i-web1"]
    assert ids(ecs.call(make(DescribeInstancesRequest, Status="Stopped",
                             Tags=[{"Key": "app", "Value": "web"}]))) == ["i-web3"]
    assert ids(ecs.call(make(DescribeInstancesRequest, ResourceGroupId="rg-none"))) == []


def test_each_instance_carries_its_tags_and_resource_group_as_the_api_names_them(
        ecs: Ecs) -> None:
    page = ecs.call(make(DescribeInstancesRequest, InstanceIds=json.dumps(["i-web1", "i-bare"])))
    found = {i["InstanceId"]: i for i in page["Instances"]["Instance"]}
    assert found["i-web1"]["ResourceGroupId"] == "rg-web"
    assert sorted((t["TagKey"], t["TagValue"]) for t in found["i-web1"]["Tags"]["Tag"]) == [
        ("app", "web"), ("env", "prod")]
    assert found["i-bare"]["Tags"] == {"Tag": []} and found["i-bare"]["ResourceGroupId"] == ""


def test_an_empty_instance_ids_array_is_a_filter_that_matches_nothing(ecs: Ecs) -> None:
    assert ids(ecs.call(make(DescribeInstancesRequest, InstanceIds="[]"))) == []


def test_next_token_pages_through_every_match_once(ecs: Ecs) -> None:
    found, calls = every_page(ecs, Tags=[{"Key": "fleet", "Value": "many"}])
    assert len(found) == len(set(found)) == 250 and calls == 3
    page = ecs.call(make(DescribeInstancesRequest, MaxResults=100,
                         ResourceGroupId="rg-many"))
    assert "TotalCount" not in page  # "invalid" when MaxResults / NextToken page
    assert len(ids(page)) == 100 and page["NextToken"]


def test_max_results_is_clamped_to_10_and_100_as_documented(ecs: Ecs) -> None:
    tags = [{"Key": "fleet", "Value": "many"}]
    assert len(ids(ecs.call(make(DescribeInstancesRequest, MaxResults=3, Tags=tags)))) == 10
    assert len(ids(ecs.call(make(DescribeInstancesRequest, MaxResults=500, Tags=tags)))) == 100


def test_a_token_of_another_query_or_made_up_is_refused(ecs: Ecs) -> None:
    tags = [{"Key": "fleet", "Value": "many"}]
    token = ecs.call(make(DescribeInstancesRequest, MaxResults=100, Tags=tags))["NextToken"]
    for bad in ("garbage", token[:-1] + "x", "00000064" + "0" * 16):
        err = ecs.fails(make(DescribeInstancesRequest, MaxResults=100, Tags=tags, NextToken=bad))
        assert err.get_error_code() == "InvalidParameter.NextToken", bad
    err = ecs.fails(make(DescribeInstancesRequest, MaxResults=100, ResourceGroupId="rg-many",
                         NextToken=token))
    assert err.get_error_code() == "InvalidParameter.NextToken"


def test_page_number_and_page_size_page_too(ecs: Ecs) -> None:
    page = ecs.call(make(DescribeInstancesRequest, ResourceGroupId="rg-many", PageSize=100,
                         PageNumber=3))
    assert (len(ids(page)), page["TotalCount"], page["PageNumber"]) == (50, 250, 3)
    err = ecs.fails(make(DescribeInstancesRequest, PageSize=101))
    assert err.get_error_code() == "InvalidParam.PageSize"


def test_the_tea_sdk_filters_by_tag_too(ecs: Ecs) -> None:
    from alibabacloud_ecs20140526 import models
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import models as open_api

    client = Client(open_api.Config(access_key_id=AK, access_key_secret=SECRET,
                                    region_id="cn-hangzhou", endpoint=ecs.host, protocol="http"))
    answer = client.describe_instances(models.DescribeInstancesRequest(
        region_id="cn-hangzhou", max_results=100,
        tag=[models.DescribeInstancesRequestTag(key="app", value="web")]))
    assert [i.instance_id for i in answer.body.instances.instance] == [
        "i-web1", "i-web2", "i-web3"]
    assert {(t.tag_key, t.tag_value) for t in answer.body.instances.instance[0].tags.tag} == {
        ("app", "web"), ("env", "prod")}

