"""RAM in the local cloud, end to end: the functions act as the role template.yml gives them.

Each function gets its own STS key pair bound to its role's policies; a call the policy does
not grant is refused by the emulator with the service's real error, so a mistake in the
template's policy fails here, before anyone deploys. And the intake refuses results and
notifications the role could not write, before anything is created.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import oss2
import pytest
import yaml

from local.cloud import DEFAULT_TEMPLATE, LocalCloud
from local.host.template import TemplateError
from shared.clients import Clients
from shared.config import Settings
from shared.errors import CloudCallError
from tests.functional.test_submit import ECHO, LINUX, created
from tests.localcloud import Endpoints, get_object, wait_for

ROLE_ARN = "acs:ram::1234567890123456:role/assistflow-functions"
# The reconciler has a role of its own, which can never run a command.
RECONCILE_ROLE_ARN = "acs:ram::1234567890123456:role/assistflow-reconcile"


def function_settings(cloud: LocalCloud, name: str = "assistflow-submit-http") -> Settings:
    assert cloud.host is not None
    return Settings.from_env(cloud.host.runtimes[name].environment)


def test_each_function_acts_as_its_template_role_with_its_own_sts_key(cloud: LocalCloud) -> None:
    assert cloud.host is not None and cloud.keys is not None
    keyring = cloud._ecs_app().keyring
    key_ids = set()
    for name, runtime in cloud.host.runtimes.items():
        env = runtime.environment
        key_id = env["ALIBABA_CLOUD_ACCESS_KEY_ID"]
        assert key_id.startswith("STS.LOCAL") and env["ALIBABA_CLOUD_SECURITY_TOKEN"], name
        identity = keyring.identity(key_id)
        role = RECONCILE_ROLE_ARN if name == "assistflow-reconcile" else ROLE_ARN
        assert identity is not None and identity.arn == role, name
        key_ids.add(key_id)
    assert len(key_ids) == len(cloud.host.runtimes)  # one pair per function
    assert keyring.identity(cloud.keys.access_key_id) is None  # the users' keys: unrestricted
    assert cloud.keys.sts_access_key_id not in key_ids


def test_the_role_writes_only_where_its_policy_allows(cloud: LocalCloud) -> None:
    clients = Clients(function_settings(cloud))
    clients.results.put("results/ram-check/ok.txt", b"allowed", "text/plain")
    for write in (lambda: clients.results.named("someone-elses-bucket").put(
                      "results/x", b"x", "text/plain"),
                  lambda: clients.results.put("elsewhere/x", b"x", "text/plain")):
        with pytest.raises(CloudCallError) as info:
            write()
        assert (info.value.api, info.value.error_code) == ("PutObject", "AccessDenied")
        assert not info.value.transient
    with pytest.raises(CloudCallError) as sent:
        clients.queues.send("assistflow-requests", "{}")  # only the DLQs and follow-ups are writable
    assert sent.value.error_code == "AccessDenied"
    assert clients.ecs.describe_instances((LINUX,))[LINUX]["Status"] == "Running"


def test_the_reconciler_reads_and_cleans_up_but_can_never_run_a_command(cloud: LocalCloud
                                                                        ) -> None:
    clients = Clients(function_settings(cloud, "assistflow-reconcile"))
    clients.ecs.describe_invocations(command_name="assistflow", limit=1)
    clients.results.list_page("invocations/open/")
    clients.results.put("invocations/open/r-ramcheck/submit.1.0", b"", "text/plain")
    clients.results.delete("invocations/open/r-ramcheck/submit.1.0")
    for call in (lambda: clients.ecs.run_command(
                     name="x", type_="RunShellScript", content_b64="ZWNobw==",
                     instance_ids=[LINUX], client_token="ram-reconcile"),
                 lambda: clients.ecs.create_command(name="x", type_="RunShellScript",
                                                    content_b64="ZWNobw=="),
                 lambda: clients.ecs.invoke_command(command_id="c-x", instance_ids=[LINUX])):
        with pytest.raises(CloudCallError) as info:
            call()
        assert info.value.error_code == "Forbidden.RAM", info.value


def test_a_functions_key_may_not_invoke_functions_through_fc(cloud: LocalCloud,
                                                             endpoints: Endpoints) -> None:
    import fc2
    from fc2.fc_exceptions import FcError

    settings = function_settings(cloud)
    creds = settings.credentials
    client = fc2.Client(endpoint=endpoints["fc"], accessKeyID=creds.access_key_id,
                        accessKeySecret=creds.access_key_secret,
                        securityToken=creds.security_token, Timeout=30)
    with pytest.raises(FcError) as info:  # the role has no fc:InvokeFunction
        client.invoke_function("svc", "assistflow-submit-timer", payload=b"{}")
    assert (info.value.status_code, info.value.err_code) == (403, "AccessDenied")
    assert "fc:InvokeFunction" in str(info.value.message)


def test_the_hosts_own_pollers_use_the_owners_key(cloud: LocalCloud) -> None:
    assert cloud.host is not None
    keyring = cloud._ecs_app().keyring
    assert keyring.identity(cloud.host.mns.access_key_id) is None  # the platform's, not a role


# --- the intake refuses what the role could not write, up front (through the webhook) ---------

REFUSED: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("someone else's bucket", {"Output": {"Bucket": "someone-elses-bucket"}}, 403,
     "$.Output.Bucket", "notWritable"),
    ("a way out of the folder", {"Output": {"Prefix": "../escape"}}, 400,
     "$.Output.Prefix", "keyPath"),
    ("the deployment's records", {"Output": {"Prefix": "invocations"}}, 403,
     "$.Output.Prefix", "reservedPrefix"),
    ("the webhook's markers", {"Output": {"Prefix": "webhook-deliveries/x"}}, 403,
     "$.Output.Prefix", "reservedPrefix"),
    ("outside the results prefix", {"Output": {"Prefix": "elsewhere"}}, 403,
     "$.Output.Prefix", "notWritable"),
    ("an empty segment", {"Output": {"Prefix": "results//a"}}, 400, "$.Output.Prefix", "keyPath"),
    ("a control character", {"Output": {"Prefix": "results/a\u0007"}}, 400,
     "$.Output.Prefix", "keyPath"),
    ("the follow-up queue", {"Notify": {"Queue": "assistflow-followups"}}, 403,
     "$.Notify.Queue", "notWritable"),
    ("a foreign topic", {"Notify": {"Topic": "payments"}}, 403, "$.Notify.Topic", "notWritable"),
]


@pytest.mark.parametrize(("name", "extra", "status", "path", "rule"), REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_targets_the_role_cannot_write_are_refused_and_nothing_is_invoked(
        endpoints: Endpoints, name: str, extra: dict[str, Any], status: int, path: str,
        rule: str) -> None:
    before = created(endpoints)
    markers = _keys(endpoints.bucket(), "webhook-deliveries/")
    got, body = endpoints.post({**ECHO, **extra, "CommandContent": f"echo {name}"})
    assert got == status, body
    assert body["Code"] == ("InvalidRequest" if status == 400 else "NotAllowed")
    assert [(e["path"], e["rule"]) for e in body["Errors"]] == [(path, rule)]
    assert body["Errors"][0]["message"] and body["RequestId"].startswith("r-")
    assert created(endpoints) == before  # no command, no invocation
    assert _keys(endpoints.bucket(), "webhook-deliveries/") == markers  # not even a claim


def test_a_folder_under_the_results_prefix_is_written(endpoints: Endpoints) -> None:
    status, body = endpoints.post({**ECHO, "CommandContent": "echo team",
                                   "Output": {"Bucket": endpoints["results_bucket"],
                                              "Prefix": "results/team-a"}})
    assert status == 202, body
    key = f"results/team-a/{body['InvokeId']}/{LINUX}/output.txt"
    assert wait_for(lambda: get_object(endpoints.bucket(), key)) == b"team\n"


def _keys(bucket: oss2.Bucket, prefix: str) -> list[str]:
    return [obj.key for obj in oss2.ObjectIterator(bucket, prefix=prefix)]


# --- a mistake in the template's policy fails here, with the service's real error -------------

def template_copy(tmp: Path, change: Callable[[list[dict[str, Any]]], None]) -> Path:
    """template.yml with its function role's statements changed, code folders made absolute."""
    doc = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    for resource in doc["Resources"].values():
        code_dir = (resource.get("Metadata") or {}).get("assistflow", {}).get("CodeDir")
        if code_dir:
            resource["Metadata"]["assistflow"]["CodeDir"] = str(DEFAULT_TEMPLATE.parent / code_dir)
    role = doc["Resources"]["FunctionRole"]["Properties"]
    change(role["Policies"][0]["PolicyDocument"]["Statement"])
    path = tmp / "template.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def without(action: str, resource_part: str = "") -> Callable[[list[dict[str, Any]]], None]:
    """Drop ``action`` (or, with ``resource_part``, the resources containing it) from the
    statements that grant it (both choices of a statement under ``Fn::If``)."""
    def change(statements: list[dict[str, Any]]) -> None:
        for statement in [choice for s in statements
                          for choice in (s["Fn::If"][1:] if "Fn::If" in s else [s])]:
            if action not in statement["Action"]:
                continue
            if resource_part:
                statement["Resource"] = [r for r in statement["Resource"]
                                         if resource_part not in json.dumps(r)]
            else:
                statement["Action"].remove(action)
    return change


@pytest.fixture
def broken_cloud(tmp_path: Path, fresh_cloud_dir: Path, request: pytest.FixtureRequest
                 ) -> Iterator[Endpoints]:
    cloud = LocalCloud(fresh_cloud_dir, template=template_copy(tmp_path, request.param),
                       parameters={"MaintenanceEnabled": False})
    try:
        yield Endpoints(cloud.start())
    finally:
        cloud.stop()


# A one-off script on one instance goes out as RunCommand (create, run, delete in one call).
@pytest.mark.parametrize("broken_cloud", [without("ecs:RunCommand")], indirect=True,
                         ids=["no ecs:RunCommand"])
def test_a_function_calling_an_action_its_role_lacks_gets_forbidden_ram(
        broken_cloud: Endpoints) -> None:
    status, body = broken_cloud.post({**ECHO, "CommandContent": "echo never"})
    assert status == 422, body
    assert (body["Api"], body["CloudCode"]) == ("RunCommand", "Forbidden.RAM")
    assert "User not authorized to operate on the specified resource" in body["Message"]
    assert created(broken_cloud)[1] == set()  # nothing ran


@pytest.mark.parametrize("broken_cloud", [without("oss:PutObject", "webhook-deliveries")],
                         indirect=True, ids=["no oss:PutObject on webhook-deliveries/*"])
def test_a_resource_missing_from_the_role_gets_oss_access_denied(broken_cloud: Endpoints
                                                                 ) -> None:
    status, body = broken_cloud.post({**ECHO, "CommandContent": "echo never"})
    assert status == 422, body  # the webhook's replay claim is an OSS PutObject
    assert (body["Api"], body["CloudCode"]) == ("PutObject", "AccessDenied")
    assert created(broken_cloud) == (set(), set())


def test_a_policy_with_a_condition_is_refused_rather_than_ignored(tmp_path: Path,
                                                                 fresh_cloud_dir: Path) -> None:
    def add_condition(statements: list[dict[str, Any]]) -> None:
        statements[0]["Condition"] = {"IpAddress": {"acs:SourceIp": ["10.0.0.0/8"]}}

    cloud = LocalCloud(fresh_cloud_dir, template=template_copy(tmp_path, add_condition),
                       parameters={"MaintenanceEnabled": False})
    with pytest.raises(TemplateError, match=r"FunctionRole.*Statement\[0\].*Condition"):
        cloud.start()
    assert not cloud.endpoints_path.exists()
