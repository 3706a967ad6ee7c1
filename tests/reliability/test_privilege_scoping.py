"""Issue 13 item 9, least privilege: a request's RegionId may name only the deployment's regions
(AllowedRegions; by default its own), refused up front with nothing created; and with
InstanceTagKey / InstanceTagValue the role may run commands only on instances carrying that
tag — RAM refuses any other with Forbidden.RAM, locally as on Alibaba Cloud.

The default session cloud (``cloud``) has neither setting: today's behaviour. ``scoped`` is a
cloud with both, whose first local instance is tagged ``team=ops`` and the others untagged.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

import pytest
from aliyunsdkecs.request.v20140526.DescribeInvocationsRequest import DescribeInvocationsRequest

from local.cloud import LocalCloud
from local.emulators.ecs.inventory import default_fleet
from shared.clients import Clients
from shared.config import Settings
from shared.errors import CloudCallError
from tests.localcloud import Endpoints, get_object, wait_for

TAGGED, UNTAGGED = "i-local00000000000001", "i-local00000000000002"
RUNS = ("RunCommand", "CreateCommand", "InvokeCommand")


def request(instance: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "RunShellScript", "CommandContent": "echo scoped",
            "Name": f"assistflow-priv-{uuid.uuid4().hex[:8]}", "InstanceIds": [instance], **extra}


def role_clients(cloud: LocalCloud) -> Clients:
    """The clients a function holds: its own STS key, bound to the template's role."""
    assert cloud.host is not None
    return Clients(Settings.from_env(cloud.host.runtimes["assistflow-submit-http"].environment))


def runs(cloud: LocalCloud) -> dict[str, int]:
    calls = cloud._ecs_app().calls.snapshot()
    return {action: calls.get(action, 0) for action in RUNS}


def invocations_named(endpoints: Endpoints, name: str) -> int:
    page = endpoints.call(_describe(name))
    return int(page["TotalCount"])


def _describe(name: str) -> DescribeInvocationsRequest:
    req = DescribeInvocationsRequest()
    req.set_CommandName(name)
    return req


def stored_output(endpoints: Endpoints, invoke_id: str, instance: str) -> bytes:
    return wait_for(lambda: get_object(endpoints.bucket(),
                                       f"results/{invoke_id}/{instance}/output.txt"), timeout=20)


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state = tmp_path_factory.mktemp("scoped")
    fleet = [replace(i, Tags={"team": "ops"}) if i.InstanceId == TAGGED else i
             for i in default_fleet()]
    (state / "instances.json").write_text(json.dumps({"instances": [asdict(i) for i in fleet]}))
    local = LocalCloud(state, parameters={
        "MaintenanceEnabled": False, "AllowedRegions": "cn-hangzhou,cn-shanghai",
        "InstanceTagKey": "team", "InstanceTagValue": "ops"})
    local.start()
    yield local
    local.stop()


# --- AllowedRegions ------------------------------------------------------------------------

def test_a_region_outside_the_deployment_is_refused_up_front_and_nothing_is_created(
        cloud: LocalCloud, endpoints: Endpoints) -> None:
    body = request(TAGGED, RegionId="cn-shanghai")
    before = runs(cloud)
    status, answer = endpoints.post(body)
    assert status == 403, answer
    assert [(e["path"], e["rule"], e["value"]) for e in answer["Errors"]] == \
        [("$.RegionId", "allowList", "cn-shanghai")]
    assert runs(cloud) == before
    assert invocations_named(endpoints, body["Name"]) == 0


def test_by_default_the_role_itself_acts_only_in_its_own_region(cloud: LocalCloud) -> None:
    """Defence in depth: past the intake, RAM refuses another region's ECS resources."""
    clients = role_clients(cloud)
    assert clients.ecs_in("cn-hangzhou").describe_instances((TAGGED,))[TAGGED]["Status"] == \
        "Running"
    with pytest.raises(CloudCallError) as info:
        clients.ecs_in("cn-shanghai").describe_instances((TAGGED,))
    assert info.value.error_code == "Forbidden.RAM"


def test_a_listed_region_is_accepted(scoped: LocalCloud) -> None:
    endpoints = Endpoints(scoped.endpoints)
    status, answer = endpoints.post(request(TAGGED, RegionId="cn-shanghai"))
    assert status == 202, answer
    assert stored_output(endpoints, answer["InvokeId"], TAGGED) == b"scoped\n"
    status, answer = endpoints.post(request(TAGGED, RegionId="cn-beijing"))
    assert (status, answer["Errors"][0]["path"]) == (403, "$.RegionId")


# --- InstanceTagKey / InstanceTagValue -------------------------------------------------------

def test_with_tag_scoping_the_role_may_not_run_on_an_untagged_instance(scoped: LocalCloud) -> None:
    ecs = role_clients(scoped).ecs_in("")
    content = base64.b64encode(b"echo hi").decode()
    with pytest.raises(CloudCallError) as info:
        ecs.run_command(name="assistflow-priv", type_="RunShellScript", content_b64=content,
                        instance_ids=[UNTAGGED], client_token=uuid.uuid4().hex)
    assert (info.value.api, info.value.error_code) == ("RunCommand", "Forbidden.RAM")
    _, invoke_id = ecs.run_command(
        name="assistflow-priv", type_="RunShellScript", content_b64=content,
        instance_ids=[TAGGED], client_token=uuid.uuid4().hex)
    assert invoke_id.startswith("t-")
    assert ecs.describe_instances((UNTAGGED,))[UNTAGGED]["Status"] == "Running"  # reads stay


def test_a_request_for_an_untagged_instance_is_refused_and_runs_nothing(
        scoped: LocalCloud) -> None:
    endpoints = Endpoints(scoped.endpoints)
    body = request(UNTAGGED)
    status, answer = endpoints.post(body)
    assert status == 422, answer
    assert (answer["Api"], answer["CloudCode"]) == ("RunCommand", "Forbidden.RAM")
    assert invocations_named(endpoints, body["Name"]) == 0
    status, answer = endpoints.post(request(TAGGED))
    assert status == 202, answer
    assert stored_output(endpoints, answer["InvokeId"], TAGGED) == b"scoped\n"


def test_without_tag_scoping_an_untagged_instance_runs_as_before(endpoints: Endpoints) -> None:
    status, answer = endpoints.post(request(UNTAGGED))
    assert status == 202, answer
    assert stored_output(endpoints, answer["InvokeId"], UNTAGGED) == b"scoped\n"


def test_the_scoped_role_is_what_the_template_says(scoped: LocalCloud) -> None:
    identity = scoped._ecs_app().keyring.identity(
        role_clients(scoped).settings.credentials.access_key_id)
    assert identity is not None
    conditions = [c for p in identity.policies for s in p.statements for c in s.conditions]
    assert [(c.operator, c.tag_key, c.values) for c in conditions] == \
        [("StringEquals", "team", ("ops",))]
